//! `warpgrid braid run` (SPEC §3, §5): the CLI runs exactly the braid its config describes
//! (digests and counters equal the heap-ordered reference braid's), prints the JSON fields of
//! SPEC §5, and refuses bad configs with an error naming the file and the field.

mod common;

use warpgrid::engine::braid::reference::ReferenceBraid;
use warpgrid::host::braidfile::parse_braid_config;

const SMALL: &str = r#"
dims = [8, 6, 4]
tori = 3
max_delay = 16
max_pending = 3000
instants = 400
[braid]
interval = 40
adaptive = true
min_interval = 10
max_interval = 200
tol_boundary = 3
[processes]
kind = "fraction"
p = 0.7
seed = 11
[edges]
kind = "random"
per_cell = 2
seed = 5
[inject]
kind = "random"
count = 500
seed = 7
"#;

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

#[test]
fn braid_run_json_matches_the_reference_braid() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "small.toml", SMALL);
    let o = common::warpgrid_with_stdin(&["braid", "run", &path, "--json"], "");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut reference =
        ReferenceBraid::new(&parse_braid_config(SMALL, "small.toml").unwrap()).unwrap();
    reference.run_until(400).unwrap();
    let r = reference.stats();
    assert_eq!(v["now"], 400);
    assert_eq!(v["interval"], r.interval);
    assert_eq!(v["exchanges"], r.exchanges);
    assert_eq!(v["boundary_violations"], r.boundary_violations);
    assert_eq!(v["global_violations"], r.global_violations);
    assert_eq!(v["corrective_events"], r.corrective_events);
    assert_eq!(v["critical"], r.critical);
    assert_eq!(v["interval_history"], serde_json::json!(r.interval_history));
    assert!(r.exchanges > 0, "the test braid must exchange");
    let tori = v["tori"].as_array().unwrap();
    assert_eq!(tori.len(), 3);
    for (i, t) in tori.iter().enumerate() {
        assert_eq!(t["digest"], format!("{:016x}", r.digests[i]), "torus {i}");
        assert_eq!(t["events_processed"], r.events_processed[i]);
        assert_eq!(t["events_dropped"], r.events_dropped[i]);
        assert_eq!(t["pending"], r.pending[i]);
        assert_eq!(t["processes"], reference.tori()[i].processes());
        assert_eq!(t["edges"], reference.tori()[i].edges());
    }
    assert!(v["latency"]["ns_per_event"].as_f64().is_some());
    // --instants overrides the config, and the text form names every torus's digest.
    let o = common::warpgrid_with_stdin(&["braid", "run", &path, "--instants", "100"], "");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("at instant 100"), "{text}");
    assert_eq!(text.matches(" digest ").count(), 3, "{text}");
}

#[test]
fn the_example_config_parses() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/braid.toml"))
        .unwrap();
    let c = parse_braid_config(&text, "examples/braid.toml").unwrap();
    assert_eq!((c.tori, c.torus.dims), (3, [32, 32, 32]));
}

#[test]
fn bad_braid_configs_are_errors_naming_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("dims = [1, 8, 8]\n", "dims"),
        ("tori = 3\nspeed = 2\n", "unknown field `speed`"),
        ("[edges]\nkind = \"neighbors\"\ndelay = 0\n", "edges.delay"),
        (
            "dims = [4, 4, 4]\n[inject]\nkind = \"list\"\nevents = [[0, 0, 0, 0, 0, 0, 1, 5]]\ninstants = 3\n",
            "line",
        ),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let path = write(dir.path(), &format!("bad{i}.toml"), text);
        let o = common::warpgrid_with_stdin(&["braid", "run", &path], "");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{text}");
        assert!(
            err.contains(&path) && err.contains(want),
            "{text}: want {want:?} in {err}"
        );
    }
    let o = common::warpgrid_with_stdin(&["braid", "run", "/nonexistent/b.toml"], "");
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/b.toml: cannot read"));
    // Braids run on CUDA where it is present; elsewhere asking for it fails with the reason.
    let path = write(dir.path(), "ok.toml", SMALL);
    let o = common::warpgrid_with_stdin(&["braid", "run", &path, "--backend", "cuda"], "");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() || err.to_lowercase().contains("cuda"),
        "{err}"
    );
}

/// `braid run --backend wgpu` (and `cuda`) prints the same digests and counters as
/// `--backend cpu` (SPEC §0: bit-identical integer work). Skips a backend that cannot run
/// here unless WARPGRID_REQUIRE_WGPU=1 (WARPGRID_REQUIRE_CUDA=1).
#[test]
fn braid_run_on_wgpu_matches_the_cpu() {
    braid_run_matches_the_cpu("wgpu", "WARPGRID_REQUIRE_WGPU");
}

#[test]
fn braid_run_on_cuda_matches_the_cpu() {
    braid_run_matches_the_cpu("cuda", "WARPGRID_REQUIRE_CUDA");
}

fn braid_run_matches_the_cpu(backend: &str, require: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "small.toml", SMALL);
    let run = |backend: &str| {
        let o = common::warpgrid_with_stdin(
            &[
                "braid",
                "run",
                &path,
                "--json",
                "--instants",
                "150",
                "--backend",
                backend,
            ],
            "",
        );
        (
            o.status.success(),
            o.stdout,
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (ok, gpu, err) = run(backend);
    if !ok && err.contains("unavailable") {
        assert!(
            std::env::var(require).as_deref() != Ok("1"),
            "{require}=1 but: {err}"
        );
        eprintln!("skipped: no {backend} backend here ({err})");
        return;
    }
    assert!(ok, "{err}");
    let (ok, cpu, err) = run("cpu");
    assert!(ok, "{err}");
    let strip = |bytes: &[u8]| {
        let mut v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        v.as_object_mut().unwrap().remove("latency");
        v
    };
    let (w, c) = (strip(&gpu), strip(&cpu));
    assert_eq!(w, c);
    assert!(c["exchanges"].as_u64().unwrap() > 0);
}
