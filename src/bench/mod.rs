//! Side-by-side benchmarks: warpgrid against the peers SPEC §7 names, in one run, as ratios.
//! `warpgrid bench` prints them; `benches/` drives the same code under criterion.

pub mod braid;
pub mod clients;
pub mod durable;
pub mod graph;
pub mod kv;

/// The median of some timings (seconds).
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// warpgrid's row name in a bench table: `warpgrid` on the CPU backend, `warpgrid/wgpu` or
/// `warpgrid/cuda` on a GPU one, so a report says where its figures were made.
pub fn warpgrid_label(device: &crate::Device) -> &'static str {
    match device.kind() {
        crate::BackendKind::Wgpu => "warpgrid/wgpu",
        crate::BackendKind::Cuda => "warpgrid/cuda",
        _ => "warpgrid",
    }
}
