//! Parameters of spread (SPEC §2.2) and recall (SPEC §2.3), their defaults and validation,
//! and the host-side constants derived from them (the decay table `D(k)`).

use std::time::Duration;

use super::error::GraphError;

/// Largest `max_hops` (SPEC §2.2).
pub const MAX_HOPS: u32 = 32;
/// Largest `k` of a recall (SPEC §2.3).
pub const MAX_K: usize = 1000;

/// One spreading seed: a node and its initial activation `a0` in (0, 1].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seed {
    /// The seed's node id.
    pub node: u32,
    /// Initial activation, in (0, 1].
    pub a0: f32,
}

impl Seed {
    /// A seed on `node` with activation `a0` (checked when the spread runs).
    pub fn new(node: u32, a0: f32) -> Seed {
        Seed { node, a0 }
    }

    /// A seed given without an activation (`--seed 17`) has a0 = 1 (SPEC §2.2a).
    pub fn full(node: u32) -> Seed {
        Seed { node, a0: 1.0 }
    }
}

/// The decay `D(k)` applied at hop k (SPEC §2.2). Parameters are f64; `D(k)` is evaluated in
/// f64 and rounded once to f32.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decay {
    /// `exp(-rate · k)` (`--decay exp:R`, default rate 0.7).
    Exponential {
        /// Decay rate per hop, finite and >= 0.
        rate: f64,
    },
    /// `(k + 1)^(-exponent)` (`--decay power:E`).
    Power {
        /// Exponent, finite and >= 0.
        exponent: f64,
    },
    /// `max(0, 1 - slope · k)` (`--decay linear:S`).
    Linear {
        /// Decrease per hop, finite and >= 0.
        slope: f64,
    },
}

impl Default for Decay {
    fn default() -> Self {
        Decay::Exponential { rate: 0.7 }
    }
}

impl Decay {
    /// `D(k)` for one hop k >= 1, evaluated in f64 and rounded to f32.
    pub fn factor(self, k: u32) -> f32 {
        let k = f64::from(k);
        let d = match self {
            Decay::Exponential { rate } => (-(rate * k)).exp(),
            Decay::Power { exponent } => (k + 1.0).powf(-exponent),
            Decay::Linear { slope } => (1.0 - slope * k).max(0.0),
        };
        d as f32
    }

    fn validate(self) -> Result<(), GraphError> {
        let (name, v) = match self {
            Decay::Exponential { rate } => ("exp rate", rate),
            Decay::Power { exponent } => ("power exponent", exponent),
            Decay::Linear { slope } => ("linear slope", slope),
        };
        if v.is_finite() && v >= 0.0 {
            Ok(())
        } else {
            Err(GraphError::argument(
                "--decay",
                format!("{name} must be finite and >= 0, got {v}"),
            ))
        }
    }
}

/// The tier of a hop: hop 0 Hot, hops 1–2 Warm, hop >= 3 Cold (SPEC §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// Hop 0 (the seeds).
    Hot = 0,
    /// Hops 1 and 2.
    Warm = 1,
    /// Hops 3 and beyond.
    Cold = 2,
}

impl Tier {
    /// The tier of hop `k`.
    #[inline]
    pub fn of_hop(k: u32) -> Tier {
        match k {
            0 => Tier::Hot,
            1 | 2 => Tier::Warm,
            _ => Tier::Cold,
        }
    }
}

/// How a hop is evaluated. Both give bit-identical results; this only changes the work done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Evaluation {
    /// Push from a small frontier, pull over the transpose for a large one (direction
    /// optimising: push while the frontier's out-edges are under 1/8 of all edges).
    #[default]
    Auto,
    /// Always push from the frontier.
    Push,
    /// Always pull over every node's in-edges.
    Pull,
}

/// The rules of a spread (SPEC §2.2), without the seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct SpreadParams {
    /// H, 1..=32 (default 4).
    pub max_hops: u32,
    /// `D(k)`, the decay applied at hop k (default exponential, rate 0.7).
    pub decay: Decay,
    /// θ(Hot), θ(Warm), θ(Cold) (default 0.01, 0.05, 0.1), compared as f32.
    pub thresholds: [f32; 3],
    /// Confidence factors of Hot, Warm, Cold (default 1.0, 0.95, 0.9).
    pub confidence_factors: [f32; 3],
    /// A node that already has activation accepts no more (default false).
    pub refractory: bool,
    /// Push, pull or automatic; never changes results.
    pub evaluation: Evaluation,
}

impl Default for SpreadParams {
    fn default() -> Self {
        SpreadParams {
            max_hops: 4,
            decay: Decay::default(),
            thresholds: [0.01, 0.05, 0.1],
            confidence_factors: [1.0, 0.95, 0.9],
            refractory: false,
            evaluation: Evaluation::Auto,
        }
    }
}

impl SpreadParams {
    /// Checks every field against its range.
    ///
    /// # Errors
    /// [`GraphError::InvalidArgument`] naming the CLI flag of the first field out of range.
    pub fn validate(&self) -> Result<(), GraphError> {
        if !(1..=MAX_HOPS).contains(&self.max_hops) {
            return Err(GraphError::argument(
                "--max-hops",
                format!("expected 1..={MAX_HOPS}, got {}", self.max_hops),
            ));
        }
        self.decay.validate()?;
        for (name, t) in ["H", "W", "C"].iter().zip(self.thresholds) {
            if !(t.is_finite() && t >= 0.0) {
                return Err(GraphError::argument(
                    "--thresholds",
                    format!("threshold {name} must be finite and >= 0, got {t}"),
                ));
            }
        }
        for (name, f) in ["H", "W", "C"].iter().zip(self.confidence_factors) {
            if !(f.is_finite() && f >= 0.0) {
                return Err(GraphError::argument(
                    "--confidence-factors",
                    format!("factor {name} must be finite and >= 0, got {f}"),
                ));
            }
        }
        Ok(())
    }

    /// θ of a tier.
    #[inline]
    pub fn threshold(&self, tier: Tier) -> f32 {
        self.thresholds[tier as usize]
    }

    /// Confidence factor of a tier.
    #[inline]
    pub fn factor(&self, tier: Tier) -> f32 {
        self.confidence_factors[tier as usize]
    }

    /// `D(1..=H)` as the f32 constants every backend receives; index 0 holds D(1).
    pub fn decay_table(&self) -> Vec<f32> {
        (1..=self.max_hops).map(|k| self.decay.factor(k)).collect()
    }
}

/// Checks a seed list against a graph of `nodes` nodes: ids in range, a0 in (0, 1].
pub(crate) fn validate_seeds(seeds: &[Seed], nodes: usize) -> Result<(), GraphError> {
    for s in seeds {
        if s.node as usize >= nodes {
            return Err(GraphError::argument(
                "--seed",
                format!(
                    "node {} out of range: the graph has {nodes} nodes (ids 0..{nodes})",
                    s.node
                ),
            ));
        }
        if !(s.a0 > 0.0 && s.a0 <= 1.0) {
            return Err(GraphError::argument(
                "--seed",
                format!(
                    "activation of seed {} must be in (0, 1], got {}",
                    s.node, s.a0
                ),
            ));
        }
    }
    Ok(())
}

/// Which scores a recall returns (SPEC §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecallMode {
    /// Similarity seeds only: score = sim, confidence = a0.
    Similarity,
    /// Spread from the similarity seeds: score = activation · confidence.
    Spreading,
    /// As spreading, but a seed's score is the mean of that and its sim.
    #[default]
    Hybrid,
}

impl RecallMode {
    /// The `--mode` spelling (inverse of [`parse`](RecallMode::parse)).
    pub fn name(self) -> &'static str {
        match self {
            RecallMode::Similarity => "similarity",
            RecallMode::Spreading => "spreading",
            RecallMode::Hybrid => "hybrid",
        }
    }

    /// Parses the `--mode` spelling.
    pub fn parse(s: &str) -> Option<RecallMode> {
        match s {
            "similarity" => Some(RecallMode::Similarity),
            "spreading" => Some(RecallMode::Spreading),
            "hybrid" => Some(RecallMode::Hybrid),
            _ => None,
        }
    }
}

/// Parameters of a recall (SPEC §2.3).
#[derive(Debug, Clone, PartialEq)]
pub struct RecallParams {
    /// Results, 1..=1000 (default 10).
    pub k: usize,
    /// Similarity seeds at most (default 100), >= 1.
    pub seeds_k: usize,
    /// θs (default 0.4).
    pub sim_threshold: f32,
    /// T (default 0.5), > 0.
    pub temperature: f32,
    /// Which scores the recall returns (default hybrid).
    pub mode: RecallMode,
    /// Hits with confidence below this are dropped (default 0.1).
    pub min_confidence: f32,
    /// Latency budget (default 10 ms); zero means none.
    pub budget: Duration,
    /// The spread rules used by the spreading and hybrid modes.
    pub spread: SpreadParams,
}

impl Default for RecallParams {
    fn default() -> Self {
        RecallParams {
            k: 10,
            seeds_k: 100,
            sim_threshold: 0.4,
            temperature: 0.5,
            mode: RecallMode::Hybrid,
            min_confidence: 0.1,
            budget: Duration::from_millis(10),
            spread: SpreadParams::default(),
        }
    }
}

impl RecallParams {
    /// Checks every field (and the spread parameters) against its range.
    ///
    /// # Errors
    /// [`GraphError::InvalidArgument`] naming the CLI flag of the first field out of range.
    pub fn validate(&self) -> Result<(), GraphError> {
        if !(1..=MAX_K).contains(&self.k) {
            return Err(GraphError::argument(
                "--k",
                format!("expected 1..={MAX_K}, got {}", self.k),
            ));
        }
        if self.seeds_k == 0 {
            return Err(GraphError::argument("--seeds-k", "expected >= 1, got 0"));
        }
        if !self.sim_threshold.is_finite() {
            return Err(GraphError::argument(
                "--sim-threshold",
                format!("expected a finite number, got {}", self.sim_threshold),
            ));
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(GraphError::argument(
                "--temperature",
                format!("expected a finite number > 0, got {}", self.temperature),
            ));
        }
        if !self.min_confidence.is_finite() {
            return Err(GraphError::argument(
                "--min-confidence",
                format!("expected a finite number, got {}", self.min_confidence),
            ));
        }
        self.spread.validate()
    }

    /// `a0 = 1 / (1 + exp(-(sim - θs) / T))`, evaluated on the host in f64 from the f32
    /// inputs and rounded once to f32 (SPEC §0: transcendental functions run on the host).
    #[inline]
    pub fn seed_activation(&self, sim: f32) -> f32 {
        let x = -(f64::from(sim) - f64::from(self.sim_threshold)) / f64::from(self.temperature);
        (1.0 / (1.0 + x.exp())) as f32
    }
}

/// The seed a0 below which a similarity seed is dropped (SPEC §2.3).
pub const MIN_SEED_ACTIVATION: f32 = 0.01;
/// The confidence boost of a recall seed (SPEC §2.3): `min(1, confidence · 1.1)`.
pub const SEED_BOOST: f32 = 1.1;
