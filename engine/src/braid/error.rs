//! [`BraidError`]: everything that can go wrong building or running a torus or a braid
//! (SPEC §3, §6). A call that returns an error changed nothing.

/// Errors from braid and torus configuration, injection and runs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BraidError {
    /// A configuration value outside its range; `field` is its path in the braid config
    /// (`dims`, `edges.delay`, `inject.events[3].at`, ...).
    #[error("invalid braid setting {field}: {reason}")]
    InvalidConfig {
        /// Path of the setting in the braid config.
        field: String,
        /// The expected range and the value given.
        reason: String,
    },
    /// An injection before the torus clock: instants below `now` are already processed.
    #[error(
        "invalid time: cannot inject at instant {at}, the torus is at instant {now} (inject at {now} or later)"
    )]
    InvalidTime {
        /// The instant asked for.
        at: u64,
        /// The torus clock: the first instant not yet processed.
        now: u32,
    },
    /// An injection (or a builder's injections) that would take the pending events past
    /// `max_pending`; nothing from the call was injected.
    #[error(
        "full: {adding} more events would exceed max_pending = {max_pending} ({pending} pending); \
         nothing was injected (raise max_pending or inject fewer events)"
    )]
    Full {
        /// The torus's capacity, in events.
        max_pending: u64,
        /// Events pending before the call.
        pending: u64,
        /// Events the call would have added.
        adding: u64,
    },
    /// A cell id outside the lattice.
    #[error("invalid cell {cell}: the lattice has {cells} cells (ids 0..{cells})")]
    InvalidCell {
        /// The cell id given.
        cell: u64,
        /// Number of cells of the lattice.
        cells: u32,
    },
    /// A run or injection reaching the end of the clock: every instant processed must stay
    /// below `2^32 - max_delay` so that the events it emits have a representable timestamp.
    #[error(
        "time limit: instant {instant} is not below {limit} (2^32 - max_delay); \
         runs must end before it"
    )]
    TimeLimit {
        /// The instant that would have been reached.
        instant: u64,
        /// `2^32 - max_delay`: the first instant that cannot be processed.
        limit: u32,
    },
    /// From the device: its backend does not run braids, a buffer would exceed the adapter's
    /// limits, or the device failed (validation, out of memory, lost, a shader loop cut
    /// short); a run that fails this way leaves the braid as it was before the call.
    #[error(transparent)]
    Backend(#[from] crate::error::BackendError),
}
