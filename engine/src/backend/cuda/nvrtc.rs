//! The CUDA kernels (`kernels/*.cu`) and their compilation with NVRTC.
//!
//! Every kernel source is built into the binary ([`KERNELS`]) and compiled at run time for the
//! device's architecture, with `--fmad=false` (SPEC §2.2 fixes the rounding of products and
//! sums; the kernels also write them with `__fmul_rn` / `__fadd_rn`). A compilation that
//! reports a warning is treated like one that fails: the kernels are kept warning-free, and
//! CI compiles each for `compute_90` without a GPU (`engine/tests/kernels_compile.rs`).
#![allow(unsafe_code)]

use std::ffi::CStr;

use cudarc::nvrtc::result;

/// A kernel source of `kernels/`.
#[derive(Debug, Clone, Copy)]
pub struct KernelSource {
    /// The file name in `kernels/`.
    pub file: &'static str,
    /// The CUDA C text, built into the binary.
    pub source: &'static str,
}

/// Every kernel source, by file name.
pub const KERNELS: &[KernelSource] = &[
    KernelSource {
        file: "braid.cu",
        source: include_str!("../../../../kernels/braid.cu"),
    },
    KernelSource {
        file: "graph.cu",
        source: include_str!("../../../../kernels/graph.cu"),
    },
    KernelSource {
        file: "table.cu",
        source: include_str!("../../../../kernels/table.cu"),
    },
];

/// Whether NVRTC (libnvrtc.so) can be loaded here; `Err` says why not.
pub fn available() -> Result<(), String> {
    // SAFETY: only tries to load the library by its usual names (dlopen); no symbol is
    // called.
    if unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        Ok(())
    } else {
        Err(
            "NVRTC was not found (libnvrtc.so.13; e.g. `pip install nvidia-cuda-nvrtc==13.*` \
             and add its nvidia/cu13/lib to LD_LIBRARY_PATH)"
                .into(),
        )
    }
}

/// What compiling one source gave.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The PTX (text) NVRTC produced.
    pub ptx: String,
    /// The device code (an ELF image) when compiled for a real architecture (`sm_90`); for a
    /// virtual one (`compute_90`) there is only PTX. The CUDA device loads this rather than
    /// the PTX: a driver older than NVRTC cannot JIT newer PTX, but loads its cubin.
    pub cubin: Option<Vec<u8>>,
    /// NVRTC's log (empty when it had nothing to say).
    pub log: String,
}

/// The options every kernel is compiled with, for `arch` (e.g. `compute_90`).
pub fn options(arch: &str) -> Vec<String> {
    vec![
        format!("--gpu-architecture={arch}"),
        "--fmad=false".into(),
        "--std=c++17".into(),
        "--Wreorder".into(),
    ]
}

/// Compiles `source` (named `file` in messages) for `arch`. `Err` carries NVRTC's log; a
/// log that reports a warning is an `Err` too.
pub fn compile(file: &str, source: &str, arch: &str) -> Result<Compiled, String> {
    available()?;
    let src = std::ffi::CString::new(source).map_err(|_| format!("{file}: contains a NUL byte"))?;
    let name = std::ffi::CString::new(file).map_err(|_| format!("{file}: bad file name"))?;
    let prog = result::create_program(&src, Some(&name))
        .map_err(|e| format!("{file}: NVRTC could not create the program: {e:?}"))?;
    // SAFETY: `prog` was just created and is destroyed exactly once below; the options are
    // plain strings.
    let outcome = unsafe { result::compile_program(prog, &options(arch)) };
    // SAFETY: `prog` is a valid program (compiled or not); the log is NUL-terminated.
    let log = unsafe { result::get_program_log(prog) }
        .map(|raw| {
            // SAFETY: NVRTC returns a NUL-terminated string.
            unsafe { CStr::from_ptr(raw.as_ptr()) }
                .to_string_lossy()
                .trim()
                .to_string()
        })
        .unwrap_or_default();
    let ptx = match outcome {
        // SAFETY: the program compiled.
        Ok(()) => unsafe { result::get_ptx(prog) }
            .map(|raw| {
                // SAFETY: NVRTC returns a NUL-terminated string.
                unsafe { CStr::from_ptr(raw.as_ptr()) }
                    .to_string_lossy()
                    .into_owned()
            })
            .map_err(|e| format!("{file}: NVRTC could not return the PTX: {e:?}")),
        Err(e) => Err(format!(
            "{file}: compilation for {arch} failed ({e:?}):\n{log}"
        )),
    };
    let cubin = match &ptx {
        Ok(_) if arch.starts_with("sm_") => {
            Some(cubin_of(prog).map_err(|e| format!("{file}: {e}")))
        }
        _ => None,
    }
    .transpose();
    // SAFETY: `prog` is destroyed once, after its last use.
    let _ = unsafe { result::destroy_program(prog) };
    let ptx = ptx?;
    let cubin = cubin?;
    if log.to_ascii_lowercase().contains("warning") {
        return Err(format!("{file}: compiled for {arch} with warnings:\n{log}"));
    }
    Ok(Compiled { ptx, cubin, log })
}

/// The cubin of a program compiled for a real architecture.
fn cubin_of(prog: cudarc::nvrtc::sys::nvrtcProgram) -> Result<Vec<u8>, String> {
    use cudarc::nvrtc::sys;
    let mut size = 0usize;
    // SAFETY: `prog` compiled successfully; NVRTC writes the size.
    unsafe { sys::nvrtcGetCUBINSize(prog, &mut size) }
        .result()
        .map_err(|e| format!("NVRTC could not size the cubin: {e:?}"))?;
    let mut cubin = vec![0u8; size];
    // SAFETY: the buffer holds `size` bytes, as NVRTC asked.
    unsafe { sys::nvrtcGetCUBIN(prog, cubin.as_mut_ptr().cast()) }
        .result()
        .map_err(|e| format!("NVRTC could not return the cubin: {e:?}"))?;
    Ok(cubin)
}

/// NVRTC's version, e.g. "13.0" (part of the PTX cache key: another compiler may emit other
/// PTX for the same source).
pub fn version() -> Result<String, String> {
    available()?;
    let (mut major, mut minor) = (0, 0);
    // SAFETY: the library is present (checked above); NVRTC writes two ints.
    let status = unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
    status
        .result()
        .map(|()| format!("{major}.{minor}"))
        .map_err(|e| format!("NVRTC could not report its version: {e:?}"))
}
