//! PTX compiled by NVRTC, cached on disk so a process compiles each kernel file only the
//! first time it meets a (source, architecture, compiler) combination.
//!
//! The key is a 64-bit FNV-1a hash of the kernel source, the NVRTC options (which name the
//! architecture) and NVRTC's version; the file is `<dir>/<stem>-<arch>-<key>.ptx`. A change to
//! any of the three gives another file, so a stale entry is never read. Entries are written to
//! a temporary file and renamed, so a reader never sees half a file. The cache is an
//! optimisation only: when its directory cannot be made or written, kernels are compiled
//! every time and a debug line says why.
//!
//! Directory: `WARPGRID_PTX_CACHE` if set (empty disables the cache), else
//! `$XDG_CACHE_HOME/warpgrid/ptx`, else `$HOME/.cache/warpgrid/ptx`.

use std::path::{Path, PathBuf};

use super::nvrtc;

/// The cache directory, or `None` when caching is off or no home is known.
pub fn directory() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("WARPGRID_PTX_CACHE") {
        return (!dir.is_empty()).then(|| PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("warpgrid").join("ptx"))
}

/// 64-bit FNV-1a over `parts`, each followed by a 0xff separator (no part contains one in
/// valid UTF-8, so ("ab", "c") and ("a", "bc") differ).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in part.iter().chain(std::iter::once(&0xffu8)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// The cache file of `file` compiled for `arch` by NVRTC `version`, under `dir`.
pub fn entry_path(dir: &Path, file: &str, source: &str, arch: &str, version: &str) -> PathBuf {
    let options = nvrtc::options(arch).join(" ");
    let key = fnv1a(&[source.as_bytes(), options.as_bytes(), version.as_bytes()]);
    let stem = file.strip_suffix(".cu").unwrap_or(file);
    dir.join(format!("{stem}-{arch}-{key:016x}.ptx"))
}

/// Where a PTX came from (for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Cache,
    Compiled,
}

/// The PTX of `file` for `arch`: read from `dir` when an entry is there, else compiled with
/// NVRTC and stored (best effort). `Err` is NVRTC's (errors or warnings).
pub fn ptx(
    dir: Option<&Path>,
    file: &str,
    source: &str,
    arch: &str,
) -> Result<(String, Origin), String> {
    let version = nvrtc::version()?;
    let path = dir.map(|d| entry_path(d, file, source, arch, &version));
    if let Some(cached) = path.as_deref().and_then(read_entry) {
        return Ok((cached, Origin::Cache));
    }
    let compiled = nvrtc::compile(file, source, arch)?;
    if let Some(path) = &path
        && let Err(e) = write_entry(path, &compiled.ptx)
    {
        tracing::debug!("PTX cache: could not store {}: {e}", path.display());
    }
    Ok((compiled.ptx, Origin::Compiled))
}

/// A cached PTX, or `None` when absent or unreadable. A PTX module is text that names its
/// target; an entry without `.target` (a torn or foreign file) counts as absent.
fn read_entry(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.contains(".target").then_some(text)
}

fn write_entry(path: &Path, ptx: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("ptx"),
        std::process::id()
    ));
    std::fs::write(&tmp, ptx)?;
    std::fs::rename(&tmp, path)
}

/// Removes a cache entry that the driver refused to load (so the next attempt compiles).
pub fn forget(dir: Option<&Path>, file: &str, source: &str, arch: &str) {
    if let (Some(dir), Ok(version)) = (dir, nvrtc::version()) {
        let _ = std::fs::remove_file(entry_path(dir, file, source, arch, &version));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_changes_with_source_arch_and_version() {
        let d = Path::new("/c");
        let base = entry_path(d, "graph.cu", "src", "compute_90", "13.0");
        assert_eq!(base.parent(), Some(d));
        let name = base.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with("graph-compute_90-") && name.ends_with(".ptx"),
            "{name}"
        );
        assert_ne!(
            base,
            entry_path(d, "graph.cu", "src ", "compute_90", "13.0")
        );
        assert_ne!(base, entry_path(d, "graph.cu", "src", "compute_89", "13.0"));
        assert_ne!(base, entry_path(d, "graph.cu", "src", "compute_90", "13.1"));
        assert_eq!(base, entry_path(d, "graph.cu", "src", "compute_90", "13.0"));
        // Part boundaries count.
        assert_ne!(fnv1a(&[b"ab", b"c"]), fnv1a(&[b"a", b"bc"]));
    }

    #[test]
    fn entries_round_trip_and_torn_entries_are_ignored() {
        let dir = std::env::temp_dir().join(format!("warpgrid-ptx-test-{}", std::process::id()));
        let path = dir.join("x-compute_90-0.ptx");
        write_entry(&path, ".version 8.0\n.target sm_90\n").unwrap();
        assert_eq!(
            read_entry(&path).as_deref(),
            Some(".version 8.0\n.target sm_90\n")
        );
        std::fs::write(&path, ".version 8.0\n").unwrap();
        assert_eq!(read_entry(&path), None);
        assert_eq!(read_entry(&dir.join("absent.ptx")), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// With NVRTC present: the first call compiles and stores, the second reads the entry.
    #[test]
    fn a_second_request_comes_from_the_cache() {
        if let Err(reason) = nvrtc::available() {
            assert!(
                std::env::var("WARPGRID_REQUIRE_NVRTC").as_deref() != Ok("1"),
                "WARPGRID_REQUIRE_NVRTC=1 but {reason}"
            );
            eprintln!("skipped: {reason}");
            return;
        }
        let dir = std::env::temp_dir().join(format!("warpgrid-ptx-cache-{}", std::process::id()));
        let src = "extern \"C\" __global__ void twice(float *x) { x[threadIdx.x] *= 2.0f; }\n";
        let (first, o1) = ptx(Some(&dir), "twice.cu", src, "compute_90").unwrap();
        let (second, o2) = ptx(Some(&dir), "twice.cu", src, "compute_90").unwrap();
        assert_eq!((o1, o2), (Origin::Compiled, Origin::Cache));
        assert_eq!(first, second);
        assert!(first.contains("twice"));
        forget(Some(&dir), "twice.cu", src, "compute_90");
        let (_, o3) = ptx(Some(&dir), "twice.cu", src, "compute_90").unwrap();
        assert_eq!(o3, Origin::Compiled);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
