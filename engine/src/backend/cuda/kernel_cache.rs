//! Kernels compiled by NVRTC, cached on disk as cubins so a process compiles each kernel file
//! only the first time it meets a (source, architecture, compiler) combination.
//!
//! The device loads cubins (device code for its own `sm_XY`), not PTX: the driver JIT-compiles
//! PTX only up to its own PTX version, so PTX from an NVRTC newer than the driver (pip's
//! NVRTC 13.x beside a 13.0 driver) would not load, while its cubin does (CUDA minor version
//! compatibility).
//!
//! The key is a 64-bit FNV-1a hash of the kernel source, the NVRTC options (which name the
//! architecture) and NVRTC's version; the file is `<dir>/<stem>-<arch>-<key>.cubin`. A change
//! to any of the three gives another file, so a stale entry is never read. Entries are written
//! to a temporary file and renamed, so a reader never sees half a file. The cache is an
//! optimisation only: when its directory cannot be made or written, kernels are compiled
//! every time and a debug line says why.
//!
//! Directory: `WARPGRID_KERNEL_CACHE` if set (empty disables the cache), else
//! `$XDG_CACHE_HOME/warpgrid/kernels`, else `$HOME/.cache/warpgrid/kernels`.

use std::path::{Path, PathBuf};

use super::nvrtc;

/// The cache directory, or `None` when caching is off or no home is known.
pub fn directory() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("WARPGRID_KERNEL_CACHE") {
        return (!dir.is_empty()).then(|| PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("warpgrid").join("kernels"))
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
    dir.join(format!("{stem}-{arch}-{key:016x}.cubin"))
}

/// Where a cubin came from (for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Read from the cache directory.
    Cache,
    /// Compiled by NVRTC in this call.
    Compiled,
}

/// The cubin of `file` for the real architecture `arch` (`sm_90`): read from `dir` when an
/// entry is there, else compiled with NVRTC and stored (best effort). `Err` is NVRTC's
/// (errors or warnings).
pub fn cubin(
    dir: Option<&Path>,
    file: &str,
    source: &str,
    arch: &str,
) -> Result<(Vec<u8>, Origin), String> {
    let version = nvrtc::version()?;
    let path = dir.map(|d| entry_path(d, file, source, arch, &version));
    if let Some(cached) = path.as_deref().and_then(read_entry) {
        return Ok((cached, Origin::Cache));
    }
    let compiled = nvrtc::compile(file, source, arch)?;
    let cubin = compiled
        .cubin
        .ok_or_else(|| format!("{file}: {arch} is not a real architecture (sm_XY)"))?;
    if let Some(path) = &path
        && let Err(e) = write_entry(path, &cubin)
    {
        tracing::debug!("kernel cache: could not store {}: {e}", path.display());
    }
    Ok((cubin, Origin::Compiled))
}

/// A cached cubin, or `None` when absent or unreadable. A cubin is an ELF image; an entry
/// that does not start like one (a torn or foreign file) counts as absent.
fn read_entry(path: &Path) -> Option<Vec<u8>> {
    let bytes = std::fs::read(path).ok()?;
    bytes.starts_with(b"\x7fELF").then_some(bytes)
}

fn write_entry(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("cubin"),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes)?;
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
        let base = entry_path(d, "graph.cu", "src", "sm_90", "13.0");
        assert_eq!(base.parent(), Some(d));
        let name = base.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with("graph-sm_90-") && name.ends_with(".cubin"),
            "{name}"
        );
        assert_ne!(base, entry_path(d, "graph.cu", "src ", "sm_90", "13.0"));
        assert_ne!(base, entry_path(d, "graph.cu", "src", "sm_89", "13.0"));
        assert_ne!(base, entry_path(d, "graph.cu", "src", "sm_90", "13.1"));
        assert_eq!(base, entry_path(d, "graph.cu", "src", "sm_90", "13.0"));
        // Part boundaries count.
        assert_ne!(fnv1a(&[b"ab", b"c"]), fnv1a(&[b"a", b"bc"]));
    }

    #[test]
    fn entries_round_trip_and_torn_entries_are_ignored() {
        let dir = std::env::temp_dir().join(format!("warpgrid-kc-test-{}", std::process::id()));
        let path = dir.join("x-sm_90-0.cubin");
        write_entry(&path, b"\x7fELF\x02\x01rest").unwrap();
        assert_eq!(
            read_entry(&path).as_deref(),
            Some(&b"\x7fELF\x02\x01rest"[..])
        );
        std::fs::write(&path, b"\x7fEL").unwrap();
        assert_eq!(read_entry(&path), None);
        assert_eq!(read_entry(&dir.join("absent.cubin")), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// With NVRTC present: the first call compiles and stores a cubin, the second reads it;
    /// a virtual architecture is refused (it has no cubin).
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
        let dir = std::env::temp_dir().join(format!("warpgrid-kc-{}", std::process::id()));
        let src = "extern \"C\" __global__ void twice(float *x) { x[threadIdx.x] *= 2.0f; }\n";
        let (first, o1) = cubin(Some(&dir), "twice.cu", src, "sm_90").unwrap();
        let (second, o2) = cubin(Some(&dir), "twice.cu", src, "sm_90").unwrap();
        assert_eq!((o1, o2), (Origin::Compiled, Origin::Cache));
        assert_eq!(first, second);
        assert!(first.starts_with(b"\x7fELF"));
        forget(Some(&dir), "twice.cu", src, "sm_90");
        let (_, o3) = cubin(Some(&dir), "twice.cu", src, "sm_90").unwrap();
        assert_eq!(o3, Origin::Compiled);
        let virtual_arch = cubin(None, "twice.cu", src, "compute_90").unwrap_err();
        assert!(
            virtual_arch.contains("not a real architecture"),
            "{virtual_arch}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
