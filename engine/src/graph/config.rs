//! Node kinds and the build-time settings of a graph (SPEC §2.1): the direction multipliers
//! `m(kind u, kind v)` that turn a raw weight `w` into the effective weight `w' = f32(w · m)`.

use super::error::GraphError;

/// The kind of a node (SPEC §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum NodeKind {
    /// A concept node (`concept` in `nodes.tsv`; WordNet nouns and verbs).
    Concept = 0,
    /// An episode node (`episode` in `nodes.tsv`; WordNet adjectives and adverbs).
    Episode = 1,
}

impl NodeKind {
    /// The spelling used in `nodes.tsv`.
    pub fn name(self) -> &'static str {
        match self {
            NodeKind::Concept => "concept",
            NodeKind::Episode => "episode",
        }
    }

    /// Parses the `nodes.tsv` spelling (`concept` or `episode`, lowercase).
    pub fn parse(s: &str) -> Option<NodeKind> {
        match s {
            "concept" => Some(NodeKind::Concept),
            "episode" => Some(NodeKind::Episode),
            _ => None,
        }
    }

    pub(crate) fn from_byte(b: u8) -> Option<NodeKind> {
        match b {
            0 => Some(NodeKind::Concept),
            1 => Some(NodeKind::Episode),
            _ => None,
        }
    }
}

impl std::fmt::Display for NodeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Direction multipliers by (source kind, destination kind), as f64 so that
/// `w' = f32(w · m)` takes the product in f64 and rounds once (SPEC §2.2a).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Multipliers {
    /// episode → concept (default 0.8).
    pub episode_concept: f64,
    /// concept → episode (default 0.6).
    pub concept_episode: f64,
    /// concept → concept (default 0.4).
    pub concept_concept: f64,
    /// episode → episode (default 0.3).
    pub episode_episode: f64,
}

impl Multipliers {
    /// SPEC §2.1's defaults.
    pub const HIERARCHICAL: Multipliers = Multipliers {
        episode_concept: 0.8,
        concept_episode: 0.6,
        concept_concept: 0.4,
        episode_episode: 0.3,
    };
    /// Every multiplier 1 (`hierarchical = false`).
    pub const FLAT: Multipliers = Multipliers {
        episode_concept: 1.0,
        concept_episode: 1.0,
        concept_concept: 1.0,
        episode_episode: 1.0,
    };

    /// `m(kind u, kind v)`.
    #[inline]
    pub fn get(&self, from: NodeKind, to: NodeKind) -> f64 {
        match (from, to) {
            (NodeKind::Episode, NodeKind::Concept) => self.episode_concept,
            (NodeKind::Concept, NodeKind::Episode) => self.concept_episode,
            (NodeKind::Concept, NodeKind::Concept) => self.concept_concept,
            (NodeKind::Episode, NodeKind::Episode) => self.episode_episode,
        }
    }

    /// In the order of the CLI flag `--multipliers EC,CE,CC,EE`.
    pub fn to_array(self) -> [f64; 4] {
        [
            self.episode_concept,
            self.concept_episode,
            self.concept_concept,
            self.episode_episode,
        ]
    }

    /// From the order of the CLI flag `--multipliers EC,CE,CC,EE`.
    pub fn from_array(m: [f64; 4]) -> Multipliers {
        Multipliers {
            episode_concept: m[0],
            concept_episode: m[1],
            concept_concept: m[2],
            episode_episode: m[3],
        }
    }
}

impl Default for Multipliers {
    fn default() -> Self {
        Multipliers::HIERARCHICAL
    }
}

/// Settings fixed when a graph is built (they shape the stored effective weights).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GraphConfig {
    /// `false` makes every multiplier 1, whatever `multipliers` says (`--no-hierarchical`).
    pub hierarchical: bool,
    /// Used when `hierarchical` (`--multipliers EC,CE,CC,EE`).
    pub multipliers: Multipliers,
}

impl Default for GraphConfig {
    fn default() -> Self {
        GraphConfig {
            hierarchical: true,
            multipliers: Multipliers::HIERARCHICAL,
        }
    }
}

impl GraphConfig {
    /// The multipliers that apply: `multipliers`, or all 1 when not hierarchical.
    pub fn effective_multipliers(&self) -> Multipliers {
        if self.hierarchical {
            self.multipliers
        } else {
            Multipliers::FLAT
        }
    }

    /// Each multiplier must be finite and > 0 (`--multipliers`).
    pub fn validate(&self) -> Result<(), GraphError> {
        for (name, m) in ["EC", "CE", "CC", "EE"]
            .iter()
            .zip(self.multipliers.to_array())
        {
            if !(m.is_finite() && m > 0.0) {
                return Err(GraphError::argument(
                    "--multipliers",
                    format!("multiplier {name} must be finite and > 0, got {m}"),
                ));
            }
        }
        Ok(())
    }
}
