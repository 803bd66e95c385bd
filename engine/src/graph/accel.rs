//! The device a graph's kernels run on, whichever GPU backend it is: the one place that
//! chooses between `gpu` (wgpu, `shaders/graph.wgsl`) and `cuda` (`kernels/graph.cu`),
//! which compute the same thing launch for dispatch.

use super::Graph;
use super::error::GraphError;
use super::params::{Seed, SpreadParams};
use super::spread::{HopGate, Outcome, Scratch};
use super::{cuda, gpu};
use crate::backend::Device;
use crate::backend::cuda::CudaDevice;
use crate::backend::wgpu::WgpuDevice;

/// A GPU device of either backend.
#[derive(Clone, Copy)]
pub(crate) enum Accel<'d> {
    Wgpu(&'d WgpuDevice),
    Cuda(&'d CudaDevice),
}

/// The largest k whose top-k the device selects (the same tile in both backends); a larger
/// `seeds_k` selects on the host.
pub(crate) const MAX_DEVICE_K: usize = gpu::MAX_DEVICE_K;

impl<'d> Accel<'d> {
    /// The GPU of `device`, `None` on the CPU backend.
    pub(crate) fn of(device: &'d Device) -> Option<Accel<'d>> {
        match device {
            Device::Wgpu(g) => Some(Accel::Wgpu(g)),
            Device::Cuda(c) => Some(Accel::Cuda(c)),
            Device::Cpu(_) => None,
        }
    }

    /// SPEC §2.2 for `lanes` seed lists at once on the device (see `spread::propagate`).
    pub(crate) fn propagate<'s>(
        self,
        graph: &Graph,
        scratch: &mut Scratch,
        lanes: usize,
        seeds: &dyn Fn(usize) -> &'s [Seed],
        params: &SpreadParams,
        gate: &mut dyn HopGate,
    ) -> Result<Outcome, GraphError> {
        match self {
            Accel::Wgpu(g) => gpu::propagate(graph, g, scratch, lanes, seeds, params, gate),
            Accel::Cuda(c) => cuda::propagate(graph, c, scratch, lanes, seeds, params, gate),
        }
    }

    /// The similarity matrix, read back whole.
    pub(crate) fn similarities(
        self,
        graph: &Graph,
        queries: &[f32],
        q: usize,
        out: &mut Vec<f32>,
    ) -> Result<(), GraphError> {
        let rows = graph.emb.embedded.len();
        out.clear();
        out.resize(rows * q, 0.0);
        if rows == 0 || q == 0 {
            return Ok(());
        }
        match self {
            Accel::Wgpu(g) => gpu::similarities(graph, g, queries, q, out),
            Accel::Cuda(c) => cuda::similarities(graph, c, queries, q, out),
        }
    }

    /// Every query's best `k <= MAX_DEVICE_K` candidates, chosen on the device.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn top_candidates(
        self,
        graph: &Graph,
        queries: &[f32],
        q: usize,
        k: usize,
        theta: f32,
        out: &mut Vec<Vec<(f32, u32)>>,
    ) -> Result<(), GraphError> {
        assert!(
            (1..=MAX_DEVICE_K).contains(&k),
            "k {k} out of 1..={MAX_DEVICE_K}"
        );
        out.resize_with(q, Vec::new);
        out.iter_mut().for_each(Vec::clear);
        if graph.emb.embedded.is_empty() || q == 0 {
            return Ok(());
        }
        match self {
            Accel::Wgpu(g) => gpu::top_candidates(graph, g, queries, q, k, theta, out),
            Accel::Cuda(c) => cuda::top_candidates(graph, c, queries, q, k, theta, out),
        }
    }

    /// Uploads the graph and readies the kernels.
    pub(crate) fn prepare(self, graph: &Graph) -> Result<(), GraphError> {
        match self {
            Accel::Wgpu(g) => gpu::prepare(graph, g),
            Accel::Cuda(c) => cuda::prepare(graph, c),
        }
    }
}
