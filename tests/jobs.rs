//! `warpgrid run JOB.toml` (SPEC §5, issues 3 and 6): job files run every YCSB workload
//! through the submission queue with every read checked, report throughput and latency,
//! refuse what they cannot run (range scans unless emulation is asked for) with a message
//! naming the file and step, and `/metrics` serves valid Prometheus text. Braid steps run
//! exactly the braid `warpgrid braid run` runs on the same config (same digests and
//! counters, equal to the engine's and the reference braid's), and a bad braid config or
//! step is refused naming the job file, the step and the config's file, line or field.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};

fn warpgrid() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_warpgrid"));
    c.env_remove("WARPGRID_BACKEND");
    c
}

fn job(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

fn ycsb_job(workload: &str, extra: &str) -> String {
    format!(
        "name = \"t-{workload}\"\nreport = \"report-{workload}.json\"\n\
         [[steps]]\nkind = \"create_table\"\ntable = \"u\"\nshards = 4\n\
         [[steps]]\nkind = \"ycsb_load\"\ntable = \"u\"\nworkload = \"{workload}\"\nrecords = 2000\n\
         [[steps]]\nkind = \"ycsb_run\"\ntable = \"u\"\nworkload = \"{workload}\"\nrecords = 2000\n\
         operations = 8000\nclients = 4\nwindow = 16\n{extra}\n"
    )
}

fn run(args: &[&str]) -> Output {
    warpgrid().args(args).output().unwrap()
}

/// A braid that exchanges (interval 40) and drops at max_pending within 300 instants.
const BRAID: &str = r#"
dims = [8, 6, 4]
tori = 3
max_delay = 16
max_pending = 3000
instants = 300
[braid]
interval = 40
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

fn braid_job(config: &str, extra: &str) -> String {
    format!(
        "name = \"braids\"\nreport = \"braids.json\"\n\
         [[steps]]\nkind = \"braid_run\"\nconfig = \"{config}\"\n{extra}\n"
    )
}

#[test]
fn braid_steps_give_the_digests_of_braid_run_and_the_engine() {
    use warpgrid::engine::braid::Braid;
    use warpgrid::engine::braid::reference::ReferenceBraid;
    use warpgrid::host::braidfile::parse_braid_config;

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("conf")).unwrap();
    let config = dir.path().join("conf/small.toml");
    std::fs::write(&config, BRAID).unwrap();
    // Two braid steps beside a table step: the config's own `instants`, then an override.
    let text = format!(
        "{}[[steps]]\nkind = \"create_table\"\ntable = \"t\"\nshards = 2\n\
         [[steps]]\nkind = \"braid_run\"\nconfig = \"conf/small.toml\"\ninstants = 120\n",
        braid_job("conf/small.toml", "")
    );
    let path = job(dir.path(), "braids.toml", &text);
    let o = run(&["--json", "run", &path]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("braids.json")).unwrap()).unwrap();
    assert_eq!(report["steps"], written["steps"]);
    assert!(
        report["steps"][1].get("braid").is_none(),
        "only braid steps carry braid statistics"
    );
    let config_str = config.to_str().unwrap();
    for (step, instants) in [(0, 300u32), (2, 120)] {
        let st = &report["steps"][step];
        assert_eq!(st["kind"], "braid_run");
        let b = &st["braid"];
        assert_eq!(b["now"], instants);
        assert_eq!(b["config"], config_str);
        // The same config through `warpgrid braid run`.
        let cli = run(&[
            "--json",
            "braid",
            "run",
            config_str,
            "--instants",
            &instants.to_string(),
        ]);
        assert!(
            cli.status.success(),
            "{}",
            String::from_utf8_lossy(&cli.stderr)
        );
        let cli: serde_json::Value = serde_json::from_slice(&cli.stdout).unwrap();
        for field in [
            "now",
            "interval",
            "exchanges",
            "boundary_violations",
            "global_violations",
            "hash_mismatches",
            "corrective_events",
            "corrective_dropped",
            "critical",
        ] {
            assert_eq!(b[field], cli[field], "step {step}: {field}");
        }
        let tori = b["tori"].as_array().unwrap();
        assert_eq!(tori.len(), 3);
        for (i, t) in tori.iter().enumerate() {
            for field in [
                "digest",
                "events_processed",
                "events_dropped",
                "pending",
                "processes",
                "edges",
            ] {
                assert_eq!(
                    t[field], cli["tori"][i][field],
                    "step {step} torus {i}: {field}"
                );
            }
        }
        // And the engine's braid and the reference braid, driven directly.
        let cfg = parse_braid_config(BRAID, "small.toml").unwrap();
        let mut engine = Braid::new(&cfg).unwrap();
        engine.run_until(instants).unwrap();
        let mut reference = ReferenceBraid::new(&cfg).unwrap();
        reference.run_until(instants).unwrap();
        let r = reference.stats();
        assert!(r.exchanges > 0, "the test braid must exchange");
        for (i, t) in tori.iter().enumerate() {
            assert_eq!(t["digest"], format!("{:016x}", engine.digests()[i]));
            assert_eq!(t["digest"], format!("{:016x}", r.digests[i]));
            assert_eq!(t["events_processed"], r.events_processed[i]);
            assert_eq!(t["events_dropped"], r.events_dropped[i]);
        }
        let total: u64 = r.events_processed.iter().sum();
        assert_eq!(b["events_processed"], total);
        assert_eq!(st["ops"], total);
        assert_eq!(b["exchanges"], r.exchanges);
        assert_eq!(b["boundary_violations"], r.boundary_violations);
    }
    let metric = |name: &str, step: &str| {
        report["metrics"]["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == name && m.to_string().contains(&format!("\"step\":\"{step}\"")))
    };
    assert!(metric("warpgrid_braid_events_total", "1"));
    assert!(metric("warpgrid_braid_exchanges_total", "3"));
    // The text report names every torus's digest.
    let o = run(&["run", &path]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    let digest = report["steps"][0]["braid"]["tori"][2]["digest"]
        .as_str()
        .unwrap();
    assert!(
        text.contains(&format!("torus 2: digest {digest}")),
        "{text}"
    );
    assert_eq!(text.matches(" digest ").count(), 6, "{text}");
}

#[test]
fn bad_braid_steps_name_the_job_step_and_config() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let good = write("good.toml", BRAID);
    let cases: Vec<(String, String)> = vec![
        // The config file is missing: its path, as resolved against the job file.
        (
            braid_job("missing.toml", ""),
            format!(
                "step 1 (braid_run): {}: cannot read the braid config",
                dir.path().join("missing.toml").display()
            ),
        ),
        // A syntax or type error: the config's file, line and column.
        (
            braid_job(
                &write_name(&write, "syntax.toml", "tori = 3\ndims = [8, 8]\n"),
                "",
            ),
            "syntax.toml: line 2, column 8".into(),
        ),
        // An unknown key inside the config.
        (
            braid_job(
                &write_name(&write, "unknown.toml", "tori = 2\ncolour = 1\n"),
                "",
            ),
            "unknown.toml: line 2, column 1: unknown field `colour`".into(),
        ),
        // A value out of range: the config's field.
        (
            braid_job(
                &write_name(
                    &write,
                    "range.toml",
                    "[edges]\nkind = \"neighbors\"\ndelay = 0\n",
                ),
                "",
            ),
            "range.toml: invalid braid setting edges.delay".into(),
        ),
        // Unknown keys in the step itself.
        (
            braid_job("good.toml", "instant = 5"),
            "unknown field `instant`".into(),
        ),
        // The step's own instants, out of range for the config's max_delay.
        (
            braid_job("good.toml", "instants = 4294967290"),
            "step 1 (braid_run): instants = 4294967290 (the step's): ".into(),
        ),
        // A step without a config.
        (
            "[[steps]]\nkind = \"braid_run\"\ninstants = 5\n".into(),
            "missing field `config`".into(),
        ),
    ];
    assert!(std::path::Path::new(&good).exists());
    for (text, want) in cases {
        let path = job(dir.path(), "bad.toml", &text);
        let o = run(&["run", &path]);
        assert!(!o.status.success(), "accepted: {text}");
        let err = String::from_utf8(o.stderr).unwrap();
        assert!(
            err.contains(&path),
            "error does not name the job file: {err}"
        );
        assert!(err.contains(&want), "{err:?} should contain {want:?}");
    }
    // Braids run on the cpu backend only: another backend is refused, not ignored.
    let path = job(
        dir.path(),
        "ok.toml",
        &braid_job("good.toml", "instants = 10"),
    );
    let o = run(&["run", &path, "--backend", "cuda"]);
    assert!(!o.status.success());
}

/// Writes `text` to `name` in the test directory and returns `name` (for a job to name).
fn write_name(write: &dyn Fn(&str, &str) -> String, name: &str, text: &str) -> String {
    write(name, text);
    name.to_owned()
}

#[test]
fn every_ycsb_workload_runs_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    for w in ["a", "b", "c", "d", "e", "f"] {
        let extra = if w == "e" {
            "scan = \"emulate-point-reads\""
        } else {
            ""
        };
        let path = job(dir.path(), &format!("{w}.toml"), &ycsb_job(w, extra));
        let o = run(&["run", &path]);
        assert!(
            o.status.success(),
            "workload {w}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let text = String::from_utf8(o.stdout).unwrap();
        assert!(
            text.contains(&format!("ycsb-{w} run: 8000 ops, 4 clients x 16 in flight")),
            "{text}"
        );
        let report: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.path().join(format!("report-{w}.json"))).unwrap(),
        )
        .unwrap();
        let step = &report["steps"][2];
        assert_eq!(step["ops"], 8000, "{w}");
        assert!(step["latency_ns"]["p50"].as_u64().unwrap() > 0);
        assert!(
            step["latency_ns"]["p99"].as_u64().unwrap()
                >= step["latency_ns"]["p50"].as_u64().unwrap()
        );
        let items = report["tables"][0]["items"].as_u64().unwrap();
        if matches!(w, "d" | "e") {
            assert!(items > 2000, "{w}: inserts grow the table ({items})");
        } else {
            assert_eq!(items, 2000, "{w}");
        }
        assert_eq!(
            step["note"].is_string(),
            w == "e",
            "only the scan emulation carries a note"
        );
        assert!(
            report["metrics"]["metrics"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["name"] == "warpgrid_queue_ops_total")
        );
    }
}

#[test]
fn bad_jobs_are_refused_naming_file_and_step() {
    let dir = tempfile::tempdir().unwrap();
    for (text, want) in [
        (ycsb_job("e", ""), "step 3 (ycsb_run): workload e is 95% range scans"),
        (ycsb_job("z", ""), "step 2 (ycsb_load):"),
        (ycsb_job("b", "clientz = 3"), "unknown field `clientz`"),
        ("[[steps]]\nkind = \"ycsb_load\"\ntable = \"nope\"\nworkload = \"a\"\nrecords = 10\n".to_string(), "step 1 (ycsb_load): no table \"nope\""),
        ("[[steps]]\nkind = \"teleport\"\n".to_string(), "unknown variant `teleport`"),
        ("name = \"x\"\n".to_string(), "missing field `steps`"),
        ("steps = []\n".to_string(), "a job needs at least one [[steps]]"),
        ("[[steps]]\nkind = \"create_table\"\ntable = \"Bad Name\"\n".to_string(), "step 1 (create_table): invalid table setting name"),
        ("[[steps]]\nkind = \"create_table\"\ntable = \"t\"\n[[steps]]\nkind = \"apply_ops\"\ntable = \"t\"\nops = \"missing.ops\"\n".to_string(), "missing.ops: cannot open"),
    ] {
        let path = job(dir.path(), "bad.toml", &text);
        let o = run(&["run", &path]);
        assert!(!o.status.success(), "accepted: {text}");
        let err = String::from_utf8(o.stderr).unwrap();
        assert!(err.contains(&path) || err.contains("bad.toml"), "error does not name the file: {err}");
        assert!(err.contains(want), "{err:?} should contain {want:?}");
    }
}

#[test]
fn apply_ops_steps_go_through_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.ops"),
        "put 1 0011223344556677\nput 2 0011223344556677\ndel 1\n",
    )
    .unwrap();
    let path = job(
        dir.path(),
        "ops.toml",
        "[[steps]]\nkind = \"create_table\"\ntable = \"t\"\n[[steps]]\nkind = \"apply_ops\"\ntable = \"t\"\nops = \"a.ops\"\n",
    );
    let o = run(&["--json", "run", &path]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["steps"][1]["ops"], 3);
    assert_eq!(report["tables"][0]["items"], 1);
}

/// The address a child announced on stderr as `metrics: http://ADDR/metrics`.
fn metrics_addr(child: &mut std::process::Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("metrics: http://")
        .and_then(|a| a.strip_suffix("/metrics"));
    url.unwrap_or_else(|| panic!("no metrics address announced: {line:?}"))
        .to_owned()
}

/// Reads `GET path` from `addr` over a real loopback connection.
fn http_get(addr: &str, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), body.to_owned())
}

/// Every sample line is `name{labels} value` with a valid name and a number; every family
/// has # HELP and # TYPE before its samples.
fn assert_prometheus(text: &str) {
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.insert(rest.split(' ').next().unwrap().to_owned());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line}"
        );
        assert!(
            value.parse::<f64>().is_ok() || ["NaN", "+Inf", "-Inf"].contains(&value),
            "{line}"
        );
        let family = ["_sum", "_count"]
            .iter()
            .fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
        assert!(
            typed.contains(name) || typed.contains(family),
            "no # TYPE before {line}"
        );
    }
}

#[test]
fn serve_metrics_answers_prometheus_scrapes_over_loopback() {
    let mut child = warpgrid()
        .args(["serve-metrics", "--addr", "127.0.0.1:0", "--seconds", "30"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = metrics_addr(&mut child);
    let (head, body) = http_get(&addr, "/metrics");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    assert!(
        body.contains("warpgrid_build_info{backend=\"cpu\""),
        "{body}"
    );
    assert_prometheus(&body);
    let (head, _) = http_get(&addr, "/nothing");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_running_job_serves_its_queue_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let text = ycsb_job("b", "").replace("operations = 8000", "operations = 3000000");
    let path = job(dir.path(), "long.toml", &text);
    let mut child = warpgrid()
        .args(["run", &path, "--metrics-addr", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = metrics_addr(&mut child);
    // Scrape until the queue has counted operations (the job is running), or it ended.
    let mut seen = false;
    for _ in 0..200 {
        let Ok(mut s) = TcpStream::connect(&addr) else {
            break;
        };
        write!(s, "GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
        let mut t = String::new();
        if s.read_to_string(&mut t).is_err() {
            break;
        }
        if t.contains("warpgrid_queue_ops_total{table=\"u\"}")
            && t.contains("warpgrid_queue_op_latency_ns")
        {
            assert_prometheus(t.split_once("\r\n\r\n").unwrap().1);
            seen = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(seen, "the running job's metrics were never served");
    assert!(child.wait().unwrap().success());
}
