//! Every CUDA kernel in `kernels/` compiles with NVRTC for `compute_90` (the H100), without
//! errors or warnings, and the engine carries every one of them (SPEC §0, issue 8). No GPU is
//! needed, only NVRTC: CI installs it with pip. Skips with a printed reason when NVRTC is
//! absent, unless `WARPGRID_REQUIRE_NVRTC=1` makes that a failure.
//!
//! Without NVRTC: `kernels/X.cu` is the sibling of `shaders/X.wgsl`, one kernel per entry
//! point under the same name, and its params structs are the WGSL uniform structs field for
//! field (so the host uploads the same bytes to either backend).

use std::path::Path;

use warpgrid_engine::backend::cuda::nvrtc;

const ARCH: &str = "compute_90";

fn nvrtc_here() -> bool {
    match nvrtc::available() {
        Ok(()) => true,
        Err(e) if std::env::var("WARPGRID_REQUIRE_NVRTC").as_deref() == Ok("1") => {
            panic!("WARPGRID_REQUIRE_NVRTC=1 but {e}")
        }
        Err(e) => {
            eprintln!("skipped: {e}");
            false
        }
    }
}

fn kernel_files() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernels");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".cu"))
        .collect();
    files.sort();
    files
}

#[test]
fn the_engine_carries_every_kernel_file() {
    let carried: Vec<&str> = nvrtc::KERNELS.iter().map(|k| k.file).collect();
    for file in kernel_files() {
        assert!(
            carried.contains(&file.as_str()),
            "kernels/{file} is not in nvrtc::KERNELS"
        );
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernels");
    for k in nvrtc::KERNELS {
        let on_disk = std::fs::read_to_string(dir.join(k.file)).unwrap();
        assert_eq!(on_disk, k.source, "{}: the built-in copy is stale", k.file);
    }
}

#[test]
fn every_kernel_compiles_for_compute_90_without_warnings() {
    if !nvrtc_here() {
        return;
    }
    for k in nvrtc::KERNELS {
        let compiled = nvrtc::compile(k.file, k.source, ARCH).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            compiled.ptx.contains(".target sm_90"),
            "{}: PTX for another target",
            k.file
        );
        // Every kernel of the file is in the PTX under its own (unmangled) name.
        for line in k.source.lines() {
            if let Some(rest) = line.strip_prefix("extern \"C\" __global__ void ") {
                let name = rest.split('(').next().unwrap();
                assert!(
                    compiled.ptx.contains(&format!(".entry {name}(")),
                    "{}: kernel {name} missing from the PTX",
                    k.file
                );
            }
        }
    }
}

#[test]
fn a_kernel_with_an_error_or_a_warning_is_refused() {
    if !nvrtc_here() {
        return;
    }
    let broken = "extern \"C\" __global__ void k(int *x) { x[0] = undefined_name; }";
    let err = nvrtc::compile("broken.cu", broken, ARCH).unwrap_err();
    assert!(
        err.contains("broken.cu") && err.contains("undefined_name"),
        "{err}"
    );
    // A warning fails the compilation too.
    let warns = "#warning \"look here\"\nextern \"C\" __global__ void k(int *x) { x[0] = 1; }";
    let err = nvrtc::compile("warns.cu", warns, ARCH).unwrap_err();
    assert!(
        err.contains("warning") && err.contains("look here"),
        "{err}"
    );
}

/// `kernels/X.cu` and its WGSL sibling `shaders/X.wgsl`.
const SIBLINGS: &[&str] = &["braid", "graph", "table"];
/// Kernels a `.cu` sibling may have beyond its WGSL entry points (none so far).
const CUDA_ONLY: &[&str] = &[];
/// (sibling, WGSL uniform struct, the CUDA struct that mirrors it).
const PARAMS: &[(&str, &str, &str)] = &[
    ("braid", "Params", "BraidParams"),
    ("graph", "Hop", "Hop"),
    ("graph", "Sim", "Sim"),
    ("graph", "Topk", "Topk"),
    ("table", "Params", "TableParams"),
];

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The entry points of a WGSL module: the `fn` after each `@compute`.
fn wgsl_entry_points(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = false;
    for line in src.lines() {
        let line = line.trim();
        if line.starts_with("//") {
            continue;
        }
        if line.contains("@compute") {
            pending = true;
        }
        if pending && let Some(at) = line.find("fn ") {
            let name = line[at + 3..].split('(').next().unwrap().trim();
            out.push(name.to_string());
            pending = false;
        }
    }
    out
}

/// The `extern "C" __global__` kernels of a CUDA source.
fn cuda_kernels(src: &str) -> Vec<String> {
    src.lines()
        .filter_map(|l| l.strip_prefix("extern \"C\" __global__ void "))
        .map(|rest| rest.split('(').next().unwrap().trim().to_string())
        .collect()
}

/// The body of `struct name { ... }` (up to the first `}`), comments removed.
fn struct_body(src: &str, name: &str, file: &str) -> Vec<String> {
    let open = format!("struct {name} {{");
    let start = src
        .find(&open)
        .unwrap_or_else(|| panic!("{file}: no `{open}`"));
    let body = &src[start + open.len()..];
    let body = &body[..body.find('}').unwrap()];
    body.lines()
        .map(|l| l.split("//").next().unwrap().trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// The fields of a WGSL struct of scalars: (name, type).
fn wgsl_fields(src: &str, name: &str, file: &str) -> Vec<(String, String)> {
    struct_body(src, name, file)
        .iter()
        .map(|l| {
            let (field, ty) = l
                .trim_end_matches(',')
                .split_once(':')
                .unwrap_or_else(|| panic!("{file}: struct {name}: cannot read `{l}`"));
            (field.trim().to_string(), ty.trim().to_string())
        })
        .collect()
}

/// The fields of a CUDA struct of scalars, as WGSL names them: (name, type).
fn cuda_fields(src: &str, name: &str, file: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for l in struct_body(src, name, file) {
        let decl = l
            .strip_suffix(';')
            .unwrap_or_else(|| panic!("{file}: struct {name}: cannot read `{l}`"));
        let (ty, names) = decl.split_once(' ').unwrap();
        let ty = match ty {
            "u32" | "unsigned" => "u32",
            "int" => "i32",
            "float" => "f32",
            other => panic!("{file}: struct {name}: field type {other} is not a 32-bit scalar"),
        };
        for n in names.split(',') {
            out.push((n.trim().to_string(), ty.to_string()));
        }
    }
    out
}

#[test]
fn every_wgsl_entry_point_has_a_cuda_kernel_of_the_same_name() {
    for stem in SIBLINGS {
        let (cu, wgsl) = (format!("kernels/{stem}.cu"), format!("shaders/{stem}.wgsl"));
        let entries = wgsl_entry_points(&read(&wgsl));
        let kernels = cuda_kernels(&read(&cu));
        assert!(!entries.is_empty(), "{wgsl}: no entry points found");
        for e in &entries {
            assert!(
                kernels.contains(e),
                "{wgsl}: entry point {e} has no sibling `extern \"C\" __global__ void {e}(` \
                 in {cu}"
            );
        }
        for k in &kernels {
            assert!(
                entries.contains(k) || CUDA_ONLY.contains(&k.as_str()),
                "{cu}: kernel {k} is no entry point of {wgsl} (a typo? else list it in \
                 CUDA_ONLY)"
            );
        }
    }
}

#[test]
fn cuda_params_structs_mirror_the_wgsl_uniforms_field_for_field() {
    for &(stem, wgsl_name, cuda_name) in PARAMS {
        let (cu, wgsl) = (format!("kernels/{stem}.cu"), format!("shaders/{stem}.wgsl"));
        let want = wgsl_fields(&read(&wgsl), wgsl_name, &wgsl);
        let got = cuda_fields(&read(&cu), cuda_name, &cu);
        // Padding fields may be spelled `_pad0` in WGSL and `pad0` in C.
        let norm = |v: &[(String, String)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(n, t)| (n.trim_start_matches('_').to_string(), t.clone()))
                .collect()
        };
        assert_eq!(
            norm(&got),
            norm(&want),
            "{cu}: struct {cuda_name} is not {wgsl}'s struct {wgsl_name} field for field"
        );
    }
    // Every uniform of a sibling module is covered.
    for stem in SIBLINGS {
        let wgsl = format!("shaders/{stem}.wgsl");
        for line in read(&wgsl).lines() {
            if let Some(rest) = line.split("var<uniform>").nth(1) {
                let ty = rest.split(':').nth(1).unwrap().trim().trim_end_matches(';');
                assert!(
                    PARAMS.iter().any(|&(s, w, _)| s == *stem && w == ty),
                    "{wgsl}: uniform struct {ty} has no CUDA mirror listed in PARAMS"
                );
            }
        }
    }
}
