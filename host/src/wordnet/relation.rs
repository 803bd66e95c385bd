//! WordNet pointer types ([`Relation`], keyed by their wndb(5) pointer symbols) and the edge
//! weight given to each ([`Weights`]). The default table and its rationale are in
//! `docs/wordnet.md`.

use super::error::WordnetError;

/// A WordNet pointer type. Every pointer `source -> target` becomes the directed edge
/// `source -> target` with the relation's weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Relation {
    /// `@`: the target is a more general synset (dog -> canine).
    Hypernym,
    /// `@i`: the source is an instance of the target (Paris -> city).
    InstanceHypernym,
    /// `~`: the target is a more specific synset (canine -> dog).
    Hyponym,
    /// `~i`: the target is an instance of the source (city -> Paris).
    InstanceHyponym,
    /// `#m`: the target has the source as a member (tree -> forest).
    MemberHolonym,
    /// `#s`: the target contains the source as a substance (oxygen -> water).
    SubstanceHolonym,
    /// `#p`: the target has the source as a part (wheel -> car).
    PartHolonym,
    /// `%m`: the target is a member of the source (forest -> tree).
    MemberMeronym,
    /// `%s`: the target is a substance of the source (water -> oxygen).
    SubstanceMeronym,
    /// `%p`: the target is a part of the source (car -> wheel).
    PartMeronym,
    /// `!`: opposite meanings (lexical: between words of the synsets).
    Antonym,
    /// `&`: between a head adjective and its satellites (similar meaning).
    SimilarTo,
    /// `^`: a loosely related synset ("see also").
    AlsoSee,
    /// `+`: derivationally related forms of the same root (lexical).
    Derivation,
    /// `=`: a noun and the adjectives that are its values (size -> large).
    Attribute,
    /// `*`: the verb's action implies the target's (snore -> sleep).
    Entailment,
    /// `>`: the verb causes the target (kill -> die).
    Cause,
    /// `$`: verbs of similar meaning grouped together.
    VerbGroup,
    /// `<`: the source adjective is a participle of the target verb.
    Participle,
    /// `\`: an adjective pertaining to a noun, or an adverb derived from an adjective.
    Pertainym,
    /// `;c`: the source belongs to the target's topic domain.
    DomainTopic,
    /// `;r`: the source belongs to the target's region domain.
    DomainRegion,
    /// `;u`: the source belongs to the target's usage domain.
    DomainUsage,
    /// `-c`: the target belongs to the source's topic domain.
    MemberOfDomainTopic,
    /// `-r`: the target belongs to the source's region domain.
    MemberOfDomainRegion,
    /// `-u`: the target belongs to the source's usage domain.
    MemberOfDomainUsage,
}

/// One row of the relation table: the relation, its pointer symbol, its name, its default
/// weight.
struct Row(Relation, &'static str, &'static str, f64);

/// The relation table, in [`Relation::ALL`] order. Weights: is-a upwards strongest, then
/// near-synonymy, part-whole, causal and morphological links, loose associations, opposites
/// weakest; relations that fan out widely from hubs (hyponyms, domain members) are damped.
const TABLE: [Row; Relation::COUNT] = [
    Row(Relation::Hypernym, "@", "hypernym", 1.0),
    Row(Relation::InstanceHypernym, "@i", "instance_hypernym", 1.0),
    Row(Relation::Hyponym, "~", "hyponym", 0.7),
    Row(Relation::InstanceHyponym, "~i", "instance_hyponym", 0.5),
    Row(Relation::MemberHolonym, "#m", "member_holonym", 0.8),
    Row(Relation::SubstanceHolonym, "#s", "substance_holonym", 0.8),
    Row(Relation::PartHolonym, "#p", "part_holonym", 0.8),
    Row(Relation::MemberMeronym, "%m", "member_meronym", 0.6),
    Row(Relation::SubstanceMeronym, "%s", "substance_meronym", 0.6),
    Row(Relation::PartMeronym, "%p", "part_meronym", 0.6),
    Row(Relation::Antonym, "!", "antonym", 0.3),
    Row(Relation::SimilarTo, "&", "similar_to", 0.9),
    Row(Relation::AlsoSee, "^", "also_see", 0.5),
    Row(Relation::Derivation, "+", "derivation", 0.6),
    Row(Relation::Attribute, "=", "attribute", 0.7),
    Row(Relation::Entailment, "*", "entailment", 0.8),
    Row(Relation::Cause, ">", "cause", 0.7),
    Row(Relation::VerbGroup, "$", "verb_group", 0.9),
    Row(Relation::Participle, "<", "participle", 0.7),
    Row(Relation::Pertainym, "\\", "pertainym", 0.6),
    Row(Relation::DomainTopic, ";c", "domain_topic", 0.5),
    Row(Relation::DomainRegion, ";r", "domain_region", 0.5),
    Row(Relation::DomainUsage, ";u", "domain_usage", 0.4),
    Row(
        Relation::MemberOfDomainTopic,
        "-c",
        "member_of_domain_topic",
        0.2,
    ),
    Row(
        Relation::MemberOfDomainRegion,
        "-r",
        "member_of_domain_region",
        0.2,
    ),
    Row(
        Relation::MemberOfDomainUsage,
        "-u",
        "member_of_domain_usage",
        0.2,
    ),
];

impl Relation {
    /// How many relations there are.
    pub const COUNT: usize = 26;

    /// Every relation, in the order of the table in `docs/wordnet.md`.
    pub const ALL: [Relation; Relation::COUNT] = {
        let mut all = [Relation::Hypernym; Relation::COUNT];
        let mut i = 0;
        while i < Relation::COUNT {
            all[i] = TABLE[i].0;
            i += 1;
        }
        all
    };

    fn row(self) -> &'static Row {
        &TABLE[self as usize]
    }

    /// The wndb(5) pointer symbol (`@`, `~i`, `#m`, `\`, `;c`, ...).
    pub fn symbol(self) -> &'static str {
        self.row().1
    }

    /// The snake_case name used by `--weight` and the import report (`hypernym`, ...).
    pub fn name(self) -> &'static str {
        self.row().2
    }

    /// The weight of the default table, in (0, 1].
    pub fn default_weight(self) -> f64 {
        self.row().3
    }

    /// The relation with this pointer symbol.
    pub fn from_symbol(symbol: &[u8]) -> Option<Relation> {
        TABLE.iter().find(|r| r.1.as_bytes() == symbol).map(|r| r.0)
    }

    /// The relation with this name or pointer symbol.
    pub fn parse(text: &str) -> Option<Relation> {
        TABLE
            .iter()
            .find(|r| r.2 == text)
            .map(|r| r.0)
            .or_else(|| Relation::from_symbol(text.as_bytes()))
    }
}

impl std::fmt::Display for Relation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The raw edge weight of each relation: in (0, 1], or 0 to leave the relation out (its
/// pointers are counted as skipped). [`Default`] is the documented table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights([f64; Relation::COUNT]);

impl Default for Weights {
    fn default() -> Self {
        let mut w = [0.0; Relation::COUNT];
        for (slot, row) in w.iter_mut().zip(&TABLE) {
            *slot = row.3;
        }
        Weights(w)
    }
}

impl Weights {
    /// The weight of `relation` (0 = left out).
    pub fn get(&self, relation: Relation) -> f64 {
        self.0[relation as usize]
    }

    /// Sets the weight of `relation`: finite and in [0, 1], 0 leaving the relation out.
    pub fn set(&mut self, relation: Relation, weight: f64) -> Result<(), WordnetError> {
        if !(weight.is_finite() && (0.0..=1.0).contains(&weight)) {
            return Err(WordnetError::InvalidWeight {
                relation: relation.name().to_owned(),
                reason: format!("must be in (0, 1], or 0 to leave the relation out; got {weight}"),
            });
        }
        self.0[relation as usize] = weight;
        Ok(())
    }

    /// Applies `NAME=W` (or `SYMBOL=W`), the spelling of the CLI's `--weight`.
    pub fn set_from_text(&mut self, text: &str) -> Result<(), WordnetError> {
        let bad = |reason: String| WordnetError::InvalidWeight {
            relation: text.to_owned(),
            reason,
        };
        let (name, value) = text
            .split_once('=')
            .ok_or_else(|| bad("expected NAME=WEIGHT, e.g. hypernym=0.9".to_owned()))?;
        let relation = Relation::parse(name.trim()).ok_or_else(|| {
            let names: Vec<&str> = Relation::ALL.iter().map(|r| r.name()).collect();
            bad(format!(
                "unknown relation {name:?}; expected one of {}",
                names.join(", ")
            ))
        })?;
        let weight = value
            .trim()
            .parse::<f64>()
            .map_err(|_| bad(format!("{value:?} is not a number")))?;
        self.set(relation, weight)
    }
}
