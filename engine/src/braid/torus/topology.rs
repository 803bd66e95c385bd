//! The state a torus's events act on: processes as per-cell arrays (structure of arrays with
//! a presence flag) and out-edges in compressed rows (`edge_start[c]..edge_start[c+1]` are the
//! out-edges of cell `c`, in creation order). Edges are created only by the builders; at run
//! time only their delays change, so the rows are built once.

use hashbrown::HashMap;

use super::super::lattice::Lattice;
use super::super::workload::Workload;

/// Processes and edges of one torus.
#[derive(Debug, Clone)]
pub(crate) struct Topology {
    pub lattice: Lattice,
    /// Per cell: a process sits there.
    pub has_process: Vec<bool>,
    /// Per cell (0 where there is no process).
    pub state: Vec<u32>,
    pub acc: Vec<i32>,
    pub received: Vec<u32>,
    pub processes: u32,
    /// `cells + 1` row offsets into `edge_to` / `edge_delay`.
    pub edge_start: Vec<u32>,
    pub edge_to: Vec<u32>,
    /// Current delay of each edge, 1..=max_delay (<= 1024, so 16 bits).
    pub edge_delay: Vec<u16>,
}

impl Topology {
    /// Bytes of the process and edge arrays.
    pub fn bytes(&self) -> u64 {
        (self.has_process.capacity()
            + (self.state.capacity() + self.acc.capacity() + self.received.capacity()) * 4
            + (self.edge_start.capacity() + self.edge_to.capacity()) * 4
            + self.edge_delay.capacity() * 2) as u64
    }

    /// Builds the rows from a workload whose cells are all below `lattice.cells` and whose
    /// delays are in `1..=max_delay`: a repeated `(from, to)` replaces the delay and keeps the
    /// first position.
    pub fn new(lattice: Lattice, workload: &Workload) -> Topology {
        let cells = lattice.cells as usize;
        let mut has_process = vec![false; cells];
        for &c in &workload.processes {
            has_process[c as usize] = true;
        }
        let processes = has_process.iter().filter(|&&p| p).count() as u32;

        // Deduplicate (from, to), keeping the first position and the last delay.
        let mut position: HashMap<u64, u32> = HashMap::with_capacity(workload.edges.len());
        let mut unique: Vec<(u32, u32, u32)> = Vec::with_capacity(workload.edges.len());
        for &(from, to, delay) in &workload.edges {
            let key = ((from as u64) << 32) | to as u64;
            match position.get(&key) {
                Some(&i) => unique[i as usize].2 = delay,
                None => {
                    position.insert(key, unique.len() as u32);
                    unique.push((from, to, delay));
                }
            }
        }
        drop(position);

        // Stable counting sort by source: creation order within a row.
        let mut edge_start = vec![0u32; cells + 1];
        for &(from, _, _) in &unique {
            edge_start[from as usize + 1] += 1;
        }
        for c in 0..cells {
            edge_start[c + 1] += edge_start[c];
        }
        let mut cursor = edge_start[..cells].to_vec();
        let mut edge_to = vec![0u32; unique.len()];
        let mut edge_delay = vec![0u16; unique.len()];
        for &(from, to, delay) in &unique {
            let i = cursor[from as usize] as usize;
            cursor[from as usize] += 1;
            edge_to[i] = to;
            edge_delay[i] = delay as u16;
        }

        Topology {
            lattice,
            has_process,
            state: vec![0; cells],
            acc: vec![0; cells],
            received: vec![0; cells],
            processes,
            edge_start,
            edge_to,
            edge_delay,
        }
    }

    pub fn edges(&self) -> u32 {
        self.edge_to.len() as u32
    }

    /// Row of out-edges of `cell`.
    #[inline]
    pub fn row(&self, cell: u32) -> std::ops::Range<usize> {
        self.edge_start[cell as usize] as usize..self.edge_start[cell as usize + 1] as usize
    }

    /// Wrapping sum of every process's acc.
    pub fn acc_sum(&self) -> i32 {
        self.acc.iter().fold(0i32, |s, &a| s.wrapping_add(a))
    }
}
