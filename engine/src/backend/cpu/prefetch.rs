//! A cache prefetch hint, the one piece of `unsafe` in the CPU backend.
//!
//! Batched table walks know the next keys long before they probe them; prefetching their
//! home slots a few items ahead overlaps the cache misses that otherwise run one at a time.
#![allow(unsafe_code)]

/// Hints the CPU to bring the cache line holding `x` into L1. Never faults, never changes
/// program state; a no-op on architectures without the instruction.
#[inline(always)]
pub(crate) fn prefetch<T>(x: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` is a hint: it cannot fault or write, whatever the address, and
    // SSE (which defines it) is part of the x86_64 baseline. The pointer comes from a
    // reference, so it is in bounds anyway.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
            (x as *const T).cast(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = x;
}
