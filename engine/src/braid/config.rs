//! Settings of a torus and of a braid (SPEC §3.1-3.3, the braid config of §5) and their
//! validation. Plain Rust structs: the TOML form is parsed in `warpgrid-host` and mapped onto
//! these one to one (list items are the TOML arrays, as `i64`, so the engine checks them and
//! names the offending field).

use super::error::BraidError;
use super::lattice::Lattice;

/// Who gets a process (SPEC §3.3 `processes`).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum ProcessesBuilder {
    /// A process on every cell (the default).
    #[default]
    All,
    /// For each cell in id order, a process if `(next() >> 11) as f64 * 2^-53 < p`.
    Fraction {
        /// Probability that a cell gets a process, in [0, 1].
        p: f64,
        /// Seed of the splitmix64 stream drawn from.
        seed: u64,
    },
    /// Processes on the listed cells (`[x, y, z]`, coordinates wrap; duplicates are one).
    List {
        /// Cell coordinates `[x, y, z]`.
        cells: Vec<[i64; 3]>,
    },
}

/// Which edges exist, created in the order given (SPEC §3.3 `edges`).
#[derive(Debug, Clone, PartialEq)]
pub enum EdgesBuilder {
    /// For each cell in id order, edges to (x+1,y,z), (x,y+1,z), (x,y,z+1), wrapped.
    Neighbors {
        /// Delay of every edge, in instants (1..=`max_delay`).
        delay: u32,
    },
    /// For each cell in id order, `per_cell` times: `to = next() % cells`,
    /// `delay = 1 + next() % max_delay`.
    Random {
        /// Out-edges drawn per cell.
        per_cell: u32,
        /// Seed of the splitmix64 stream drawn from.
        seed: u64,
    },
    /// `[x1, y1, z1, x2, y2, z2, delay]` each; coordinates wrap.
    List {
        /// Edges as `[x1, y1, z1, x2, y2, z2, delay]`, from cell 1 to cell 2.
        edges: Vec<[i64; 7]>,
    },
}

impl Default for EdgesBuilder {
    /// `neighbors{delay = 1}`.
    fn default() -> Self {
        EdgesBuilder::Neighbors { delay: 1 }
    }
}

/// Which events are pending at the start (SPEC §3.3 `inject`).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum InjectBuilder {
    /// No injections (the default).
    #[default]
    None,
    /// `count` times: `dst = next() % cells`, `src = next() % cells`,
    /// `payload = (next() % 513) as i32 - 256`, all at instant `at`.
    Random {
        /// Number of events injected.
        count: u64,
        /// Seed of the splitmix64 stream drawn from.
        seed: u64,
        /// Instant every event is pending at.
        at: u64,
    },
    /// `[x, y, z, sx, sy, sz, payload, at]` each; coordinates wrap.
    List {
        /// Events as `[x, y, z, sx, sy, sz, payload, at]`: destination cell, source cell,
        /// payload and instant.
        events: Vec<[i64; 8]>,
    },
}

/// Settings of one torus: the lattice, its capacities and its workload builders.
#[derive(Debug, Clone, PartialEq)]
pub struct TorusConfig {
    /// `(X, Y, Z)`, each 2..=1024, X·Y·Z <= 2^24 (default 32³).
    pub dims: [u32; 3],
    /// Largest edge delay, 1..=1024 (default 64).
    pub max_delay: u32,
    /// Most events pending at once, 1..=2^28 (default 2^20).
    pub max_pending: u64,
    /// Which cells run a process.
    pub processes: ProcessesBuilder,
    /// Which edges exist and their delays.
    pub edges: EdgesBuilder,
    /// Which events are pending at instant 0 (or the instants they name).
    pub inject: InjectBuilder,
}

impl TorusConfig {
    /// Default [`dims`](TorusConfig::dims): 32³ cells.
    pub const DEFAULT_DIMS: [u32; 3] = [32, 32, 32];
    /// Default [`max_delay`](TorusConfig::max_delay), in instants.
    pub const DEFAULT_MAX_DELAY: u32 = 64;
    /// Default [`max_pending`](TorusConfig::max_pending), in events.
    pub const DEFAULT_MAX_PENDING: u64 = 1 << 20;
    /// Largest extent of one dimension.
    pub const MAX_DIM: u32 = 1024;
    /// Most cells a torus may have (`X·Y·Z`).
    pub const MAX_CELLS: u64 = 1 << 24;
    /// Upper bound of [`max_delay`](TorusConfig::max_delay), in instants.
    pub const MAX_MAX_DELAY: u32 = 1024;
    /// Upper bound of `max_pending` (memory: 12 bytes an event, plus emission buffers).
    pub const MAX_MAX_PENDING: u64 = 1 << 28;
    /// Most edges a torus may hold (all builders together, before replacement).
    pub const MAX_EDGES: u64 = 1 << 28;

    /// The defaults of SPEC §3 with the given dims.
    pub fn new(dims: [u32; 3]) -> TorusConfig {
        TorusConfig {
            dims,
            ..TorusConfig::default()
        }
    }

    /// The PHOLD-like workload of SPEC §3.3: every cell a process, one random out-edge per
    /// cell (random delay in `1..=max_delay`) and `population` events injected at random at
    /// instant 0. docs/braids.md sets it beside ROSS PHOLD.
    pub fn phold(dims: [u32; 3], population: u64, seed: u64) -> TorusConfig {
        TorusConfig {
            dims,
            edges: EdgesBuilder::Random { per_cell: 1, seed },
            inject: InjectBuilder::Random {
                count: population,
                seed,
                at: 0,
            },
            ..TorusConfig::default()
        }
    }

    /// Sets [`max_delay`](TorusConfig::max_delay).
    pub fn with_max_delay(mut self, max_delay: u32) -> Self {
        self.max_delay = max_delay;
        self
    }

    /// Sets [`max_pending`](TorusConfig::max_pending).
    pub fn with_max_pending(mut self, max_pending: u64) -> Self {
        self.max_pending = max_pending;
        self
    }

    /// Sets [`processes`](TorusConfig::processes).
    pub fn with_processes(mut self, processes: ProcessesBuilder) -> Self {
        self.processes = processes;
        self
    }

    /// Sets [`edges`](TorusConfig::edges).
    pub fn with_edges(mut self, edges: EdgesBuilder) -> Self {
        self.edges = edges;
        self
    }

    /// Sets [`inject`](TorusConfig::inject).
    pub fn with_inject(mut self, inject: InjectBuilder) -> Self {
        self.inject = inject;
        self
    }

    /// Number of cells, `X·Y·Z` (call after [`validate`](Self::validate)).
    pub fn cells(&self) -> u64 {
        self.dims.iter().map(|&d| d as u64).product()
    }

    /// First instant that may not be processed: `2^32 - max_delay`.
    pub fn time_limit(&self) -> u32 {
        time_limit(self.max_delay)
    }

    /// Checks every setting and every list item; the error names the field.
    pub fn validate(&self) -> Result<(), BraidError> {
        for (axis, &d) in ["dims[0]", "dims[1]", "dims[2]"].iter().zip(&self.dims) {
            if !(2..=Self::MAX_DIM).contains(&d) {
                return Err(invalid(
                    axis,
                    format!("expected 2..={}, got {d}", Self::MAX_DIM),
                ));
            }
        }
        if self.cells() > Self::MAX_CELLS {
            return Err(invalid(
                "dims",
                format!(
                    "X·Y·Z must be at most 2^24 = {}, got {}",
                    Self::MAX_CELLS,
                    self.cells()
                ),
            ));
        }
        if !(1..=Self::MAX_MAX_DELAY).contains(&self.max_delay) {
            return Err(invalid(
                "max_delay",
                format!(
                    "expected 1..={}, got {}",
                    Self::MAX_MAX_DELAY,
                    self.max_delay
                ),
            ));
        }
        if !(1..=Self::MAX_MAX_PENDING).contains(&self.max_pending) {
            return Err(invalid(
                "max_pending",
                format!(
                    "expected 1..={}, got {}",
                    Self::MAX_MAX_PENDING,
                    self.max_pending
                ),
            ));
        }
        self.validate_processes()?;
        self.validate_edges()?;
        self.validate_inject()
    }

    fn validate_processes(&self) -> Result<(), BraidError> {
        if let ProcessesBuilder::Fraction { p, .. } = self.processes
            && !(p.is_finite() && (0.0..=1.0).contains(&p))
        {
            return Err(invalid(
                "processes.p",
                format!("expected a number in 0..=1, got {p}"),
            ));
        }
        Ok(())
    }

    fn validate_edges(&self) -> Result<(), BraidError> {
        let max_delay = self.max_delay;
        match &self.edges {
            EdgesBuilder::Neighbors { delay } => {
                check_delay("edges.delay", *delay as i64, max_delay)?;
            }
            EdgesBuilder::Random { per_cell, .. } => {
                let total = *per_cell as u64 * self.cells();
                if total > Self::MAX_EDGES {
                    return Err(invalid(
                        "edges.per_cell",
                        format!(
                            "{per_cell} edges per cell make {total} edges, more than the {} a torus holds",
                            Self::MAX_EDGES
                        ),
                    ));
                }
            }
            EdgesBuilder::List { edges } => {
                if edges.len() as u64 > Self::MAX_EDGES {
                    return Err(invalid(
                        "edges.edges",
                        format!(
                            "{} edges, more than the {} a torus holds",
                            edges.len(),
                            Self::MAX_EDGES
                        ),
                    ));
                }
                for (i, e) in edges.iter().enumerate() {
                    check_delay(&format!("edges.edges[{i}][6] (delay)"), e[6], max_delay)?;
                }
            }
        }
        Ok(())
    }

    fn validate_inject(&self) -> Result<(), BraidError> {
        let limit = self.time_limit() as i64;
        let count = match &self.inject {
            InjectBuilder::None => 0,
            InjectBuilder::Random { count, at, .. } => {
                if *at >= limit as u64 {
                    return Err(invalid(
                        "inject.at",
                        format!("expected an instant below 2^32 - max_delay = {limit}, got {at}"),
                    ));
                }
                *count
            }
            InjectBuilder::List { events } => {
                for (i, e) in events.iter().enumerate() {
                    if i32::try_from(e[6]).is_err() {
                        return Err(invalid(
                            &format!("inject.events[{i}][6] (payload)"),
                            format!("expected a 32-bit signed integer, got {}", e[6]),
                        ));
                    }
                    if !(0..limit).contains(&e[7]) {
                        return Err(invalid(
                            &format!("inject.events[{i}][7] (at)"),
                            format!(
                                "expected an instant in 0..{limit} (2^32 - max_delay), got {}",
                                e[7]
                            ),
                        ));
                    }
                }
                events.len() as u64
            }
        };
        if count > self.max_pending {
            return Err(BraidError::Full {
                max_pending: self.max_pending,
                pending: 0,
                adding: count,
            });
        }
        Ok(())
    }

    pub(crate) fn lattice(&self) -> Lattice {
        Lattice::new(self.dims)
    }
}

impl Default for TorusConfig {
    fn default() -> Self {
        TorusConfig {
            dims: Self::DEFAULT_DIMS,
            max_delay: Self::DEFAULT_MAX_DELAY,
            max_pending: Self::DEFAULT_MAX_PENDING,
            processes: ProcessesBuilder::default(),
            edges: EdgesBuilder::default(),
            inject: InjectBuilder::default(),
        }
    }
}

/// Settings of a braid: the torus settings every torus shares (torus `i` seeds each random
/// builder with `seed + i`), the number of tori and the exchange (SPEC §3.2).
#[derive(Debug, Clone, PartialEq)]
pub struct BraidConfig {
    /// Settings of every torus (random builders seeded per torus, see above).
    pub torus: TorusConfig,
    /// Number of tori, 1..=64 (default 3).
    pub tori: u32,
    /// How far `braid run` runs (default 10000); [`Braid::run`](super::Braid::run) uses it,
    /// [`Braid::run_until`](super::Braid::run_until) takes any target.
    pub instants: u32,
    /// Instants between exchanges at the start (default 1000).
    pub interval: u32,
    /// Adapt the interval to the violation rate (default true).
    pub adaptive: bool,
    /// Smallest adaptive interval, in instants (default 100; at least 1).
    pub min_interval: u32,
    /// Largest adaptive interval, in instants (default 10000; at least `min_interval`).
    pub max_interval: u32,
    /// Largest face difference that is not a boundary violation (default 10).
    pub tol_boundary: u32,
    /// Largest relative event-count difference that is not a global violation (default 0.10).
    pub tol_events: f64,
}

impl BraidConfig {
    /// Default [`tori`](BraidConfig::tori).
    pub const DEFAULT_TORI: u32 = 3;
    /// Upper bound of [`tori`](BraidConfig::tori).
    pub const MAX_TORI: u32 = 64;
    /// Default [`instants`](BraidConfig::instants).
    pub const DEFAULT_INSTANTS: u32 = 10_000;
    /// Default [`interval`](BraidConfig::interval), in instants.
    pub const DEFAULT_INTERVAL: u32 = 1000;
    /// Default [`min_interval`](BraidConfig::min_interval), in instants.
    pub const DEFAULT_MIN_INTERVAL: u32 = 100;
    /// Default [`max_interval`](BraidConfig::max_interval), in instants.
    pub const DEFAULT_MAX_INTERVAL: u32 = 10_000;
    /// Default [`tol_boundary`](BraidConfig::tol_boundary).
    pub const DEFAULT_TOL_BOUNDARY: u32 = 10;
    /// Default [`tol_events`](BraidConfig::tol_events), a fraction.
    pub const DEFAULT_TOL_EVENTS: f64 = 0.10;

    /// The defaults of SPEC §3.2 around the given torus settings.
    pub fn new(torus: TorusConfig) -> BraidConfig {
        BraidConfig {
            torus,
            tori: Self::DEFAULT_TORI,
            instants: Self::DEFAULT_INSTANTS,
            interval: Self::DEFAULT_INTERVAL,
            adaptive: true,
            min_interval: Self::DEFAULT_MIN_INTERVAL,
            max_interval: Self::DEFAULT_MAX_INTERVAL,
            tol_boundary: Self::DEFAULT_TOL_BOUNDARY,
            tol_events: Self::DEFAULT_TOL_EVENTS,
        }
    }

    /// Sets [`tori`](BraidConfig::tori).
    pub fn with_tori(mut self, tori: u32) -> Self {
        self.tori = tori;
        self
    }

    /// Sets [`instants`](BraidConfig::instants).
    pub fn with_instants(mut self, instants: u32) -> Self {
        self.instants = instants;
        self
    }

    /// Fixed interval (adaptive off).
    pub fn with_fixed_interval(mut self, interval: u32) -> Self {
        self.interval = interval;
        self.adaptive = false;
        self
    }

    /// Adaptive interval starting at `interval` within `min..=max`.
    pub fn with_adaptive_interval(mut self, interval: u32, min: u32, max: u32) -> Self {
        self.interval = interval;
        self.min_interval = min;
        self.max_interval = max;
        self.adaptive = true;
        self
    }

    /// Sets [`tol_boundary`](BraidConfig::tol_boundary) and
    /// [`tol_events`](BraidConfig::tol_events).
    pub fn with_tolerances(mut self, tol_boundary: u32, tol_events: f64) -> Self {
        self.tol_boundary = tol_boundary;
        self.tol_events = tol_events;
        self
    }

    /// A braid built from workloads needs exactly one per torus.
    pub fn check_workloads(&self, workloads: usize) -> Result<(), BraidError> {
        if workloads == self.tori as usize {
            return Ok(());
        }
        Err(invalid(
            "tori",
            format!("{workloads} workloads given for {} tori", self.tori),
        ))
    }

    /// Checks the braid settings and the torus settings; the error names the field.
    pub fn validate(&self) -> Result<(), BraidError> {
        self.torus.validate()?;
        if !(1..=Self::MAX_TORI).contains(&self.tori) {
            return Err(invalid(
                "tori",
                format!("expected 1..={}, got {}", Self::MAX_TORI, self.tori),
            ));
        }
        let limit = self.torus.time_limit();
        if self.instants >= limit {
            return Err(invalid(
                "instants",
                format!(
                    "expected an instant below 2^32 - max_delay = {limit}, got {}",
                    self.instants
                ),
            ));
        }
        if self.interval == 0 {
            return Err(invalid(
                "braid.interval",
                "expected at least 1, got 0".to_string(),
            ));
        }
        if self.adaptive {
            if self.min_interval == 0 {
                return Err(invalid(
                    "braid.min_interval",
                    "expected at least 1, got 0".to_string(),
                ));
            }
            if self.min_interval > self.max_interval {
                return Err(invalid(
                    "braid.max_interval",
                    format!(
                        "expected at least min_interval = {}, got {}",
                        self.min_interval, self.max_interval
                    ),
                ));
            }
            if !(self.min_interval..=self.max_interval).contains(&self.interval) {
                return Err(invalid(
                    "braid.interval",
                    format!(
                        "with adaptive = true the interval must lie in min_interval..=max_interval = {}..={}, got {}",
                        self.min_interval, self.max_interval, self.interval
                    ),
                ));
            }
        }
        if !(self.tol_events.is_finite() && self.tol_events >= 0.0) {
            return Err(invalid(
                "braid.tol_events",
                format!("expected a finite number >= 0, got {}", self.tol_events),
            ));
        }
        Ok(())
    }
}

impl Default for BraidConfig {
    fn default() -> Self {
        BraidConfig::new(TorusConfig::default())
    }
}

/// `2^32 - max_delay`: instants at or past it may not be processed.
pub(crate) fn time_limit(max_delay: u32) -> u32 {
    (u32::MAX - max_delay) + 1
}

fn check_delay(field: &str, delay: i64, max_delay: u32) -> Result<(), BraidError> {
    if (1..=max_delay as i64).contains(&delay) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("expected a delay in 1..=max_delay = 1..={max_delay}, got {delay}"),
        ))
    }
}

fn invalid(field: &str, reason: String) -> BraidError {
    BraidError::InvalidConfig {
        field: field.to_string(),
        reason,
    }
}
