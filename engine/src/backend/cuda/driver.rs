//! Finding the CUDA driver and device without panicking: cudarc panics when it calls into a
//! library that is not there, so every library is looked for first.
#![allow(unsafe_code)]

use cudarc::driver::CudaContext;

use crate::backend::Unavailable;

fn unavailable(reason: impl Into<String>) -> Unavailable {
    Unavailable {
        reason: reason.into(),
    }
}

/// One line about CUDA device 0 (name, compute capability, memory), or why there is none.
pub(super) fn find_device() -> Result<String, Unavailable> {
    // SAFETY: only tries to load the driver library by its usual names (dlopen), and drops
    // it again; no symbol is called.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(unavailable(
            "no CUDA driver (libcuda.so was not found; install the NVIDIA driver)",
        ));
    }
    let found = std::panic::catch_unwind(|| -> Result<String, String> {
        let count = CudaContext::device_count().map_err(|e| format!("cuInit failed: {e:?}"))?;
        if count < 1 {
            return Err("the CUDA driver is present but reports no device".into());
        }
        let ctx = CudaContext::new(0).map_err(|e| format!("cannot open device 0: {e:?}"))?;
        let name = ctx.name().map_err(|e| format!("{e:?}"))?;
        let (major, minor) = ctx.compute_capability().map_err(|e| format!("{e:?}"))?;
        let mem = ctx.total_mem().map_err(|e| format!("{e:?}"))?;
        Ok(format!(
            "CUDA device 0 of {count}: {name}, compute capability {major}.{minor}, {} MiB",
            mem >> 20
        ))
    });
    match found {
        Ok(Ok(line)) => Ok(line),
        Ok(Err(reason)) => Err(unavailable(reason)),
        Err(_) => Err(unavailable(
            "the CUDA driver panicked while probing the device",
        )),
    }
}
