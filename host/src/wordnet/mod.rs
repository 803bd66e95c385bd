//! The WordNet 3.0 importer: reads the wndb(5) database files (`data.noun`, `data.verb`,
//! `data.adj`, `data.adv` and the four `index.*` files, e.g. Debian's `wordnet-base` in
//! `/usr/share/wordnet`) into an activation graph (SPEC §2.1).
//!
//! - **Nodes**: one per synset, noun, verb, adjective then adverb file, each in offset order
//!   (file order). Nouns and verbs are `concept`s; adjectives (satellites included) and
//!   adverbs are `episode`s.
//! - **Labels**: NLTK's synset names `lemma.pos.NN`: the first word of the synset,
//!   lowercased, with an adjective marker (`(a)`, `(p)`, `(ip)`) removed; `pos` is `n`, `v`,
//!   `a`, `s` (adjective satellite) or `r`; `NN` is the synset's sense number for that
//!   lemma, its position in the lemma's line of `index.<pos>` (satellites use `index.adj`),
//!   at least two digits. `dog.n.01` is synset 02084071 of `data.noun`.
//! - **Edges**: every pointer `source -> target` is the edge `source -> target` with the raw
//!   weight of its [`Relation`] ([`Weights`]). Lexical pointers (between two words) link
//!   their synsets. A pointer from a synset to itself is skipped (it links two words of one
//!   synset), as are pointers of a relation whose weight is 0; duplicate `(u, v)` keep the
//!   largest weight (the graph builder merges them).
//! - **No embeddings**: WordNet has none, so `recall` needs embeddings from elsewhere; spread
//!   from labels (`warpgrid graph spread G --seed dog.n.01`).
//!
//! Every malformed line is an error naming the file, the line and the wndb(5) field. The
//! mapping, the weight table and its rationale are in `docs/wordnet.md`.

mod data;
mod error;
mod index;
mod relation;
mod text;

pub use error::WordnetError;
pub use relation::{Relation, Weights};

use std::path::Path;

use warpgrid_engine::graph::{Graph, GraphBuilder, GraphConfig, NodeKind};

use data::DataFile;
use index::{Index, SenseError};
use text::Field;

/// A WordNet part of speech: one data file and one index file each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pos {
    /// Nouns (`data.noun`).
    Noun,
    /// Verbs (`data.verb`).
    Verb,
    /// Adjectives, head and satellite synsets alike (`data.adj`).
    Adj,
    /// Adverbs (`data.adv`).
    Adv,
}

impl Pos {
    /// The parts of speech in node order.
    pub const ALL: [Pos; 4] = [Pos::Noun, Pos::Verb, Pos::Adj, Pos::Adv];

    /// `noun`, `verb`, `adj` or `adv` (the suffix of the file names).
    pub fn name(self) -> &'static str {
        match self {
            Pos::Noun => "noun",
            Pos::Verb => "verb",
            Pos::Adj => "adj",
            Pos::Adv => "adv",
        }
    }

    /// The data file's name (`data.noun`).
    pub fn data_file(self) -> &'static str {
        match self {
            Pos::Noun => "data.noun",
            Pos::Verb => "data.verb",
            Pos::Adj => "data.adj",
            Pos::Adv => "data.adv",
        }
    }

    /// The index file's name (`index.noun`).
    pub fn index_file(self) -> &'static str {
        match self {
            Pos::Noun => "index.noun",
            Pos::Verb => "index.verb",
            Pos::Adj => "index.adj",
            Pos::Adv => "index.adv",
        }
    }

    /// The wndb(5) letter: `n`, `v`, `a` or `r`.
    pub fn letter(self) -> u8 {
        match self {
            Pos::Noun => b'n',
            Pos::Verb => b'v',
            Pos::Adj => b'a',
            Pos::Adv => b'r',
        }
    }

    /// The part of speech of a pointer's `pos` letter (`s`, a satellite, is in `data.adj`).
    pub fn from_letter(letter: u8) -> Option<Pos> {
        match letter {
            b'n' => Some(Pos::Noun),
            b'v' => Some(Pos::Verb),
            b'a' | b's' => Some(Pos::Adj),
            b'r' => Some(Pos::Adv),
            _ => None,
        }
    }

    /// The node kind of its synsets: nouns and verbs are concepts, the rest episodes.
    pub fn kind(self) -> NodeKind {
        match self {
            Pos::Noun | Pos::Verb => NodeKind::Concept,
            Pos::Adj | Pos::Adv => NodeKind::Episode,
        }
    }
}

/// How to import: the relation weights and the graph's build settings.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ImportOptions {
    /// The edge weight of each relation.
    pub weights: Weights,
    /// The graph's build settings (direction multipliers).
    pub config: GraphConfig,
}

/// What an import read and made. `pointers = edges_added() + skipped_self + skipped_disabled`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Synsets per part of speech, in [`Pos::ALL`] order (adjectives include satellites).
    pub synsets: [usize; 4],
    /// Adjective satellites (`ss_type` `s`), part of `synsets[2]`.
    pub satellites: usize,
    /// Pointers read.
    pub pointers: usize,
    /// Of those, lexical pointers (between two words rather than two synsets).
    pub lexical_pointers: usize,
    /// Pointers turned into edges, per relation in [`Relation::ALL`] order (before the
    /// builder merges duplicate `(u, v)`).
    pub edges_by_relation: [usize; Relation::COUNT],
    /// Pointers from a synset to itself (lexical links between two of its words).
    pub skipped_self: usize,
    /// Pointers of relations whose weight is 0.
    pub skipped_disabled: usize,
}

impl ImportReport {
    /// Synsets in all.
    pub fn total_synsets(&self) -> usize {
        self.synsets.iter().sum()
    }

    /// Synsets of one part of speech.
    pub fn synsets_of(&self, pos: Pos) -> usize {
        self.synsets[pos as usize]
    }

    /// Pointers of `relation` turned into edges.
    pub fn edges_of(&self, relation: Relation) -> usize {
        self.edges_by_relation[relation as usize]
    }

    /// Pointers turned into edges, all relations.
    pub fn edges_added(&self) -> usize {
        self.edges_by_relation.iter().sum()
    }
}

/// Reads the WordNet database in `dir` into a graph builder (nodes labelled, edges added)
/// and the report of what was read.
pub fn read(
    dir: &Path,
    options: &ImportOptions,
) -> Result<(GraphBuilder, ImportReport), WordnetError> {
    let data_bytes = Pos::ALL
        .iter()
        .map(|p| text::read(&dir.join(p.data_file())))
        .collect::<Result<Vec<_>, _>>()?;
    let mut files = Vec::with_capacity(Pos::ALL.len());
    for (pos, bytes) in Pos::ALL.into_iter().zip(&data_bytes) {
        files.push(data::parse(&dir.join(pos.data_file()), pos, bytes)?);
    }
    let mut builder = GraphBuilder::new(options.config);
    let mut report = ImportReport::default();
    for file in &files {
        add_nodes(dir, file, &mut builder, &mut report)?;
    }
    add_edges(dir, &files, &options.weights, &mut builder, &mut report)?;
    Ok((builder, report))
}

/// Reads the WordNet database in `dir` and builds the graph.
pub fn import(dir: &Path, options: &ImportOptions) -> Result<(Graph, ImportReport), WordnetError> {
    let (builder, report) = read(dir, options)?;
    Ok((builder.build()?, report))
}

/// Adds one node per synset of `file`, labelled from its index file.
fn add_nodes(
    dir: &Path,
    file: &DataFile<'_>,
    builder: &mut GraphBuilder,
    report: &mut ImportReport,
) -> Result<(), WordnetError> {
    let index_path = dir.join(file.pos.index_file());
    let bytes = text::read(&index_path)?;
    let index = index::parse(&index_path, file.pos, &bytes)?;
    let data_path = dir.join(file.pos.data_file());
    let kind = file.pos.kind();
    let mut label = String::new();
    for synset in &file.synsets {
        label.clear();
        write_label(&data_path, file.pos, synset, &index, &mut label)?;
        builder.add_node(kind, Some(&label));
        report.satellites += usize::from(synset.satellite);
    }
    report.synsets[file.pos as usize] = file.synsets.len();
    Ok(())
}

/// The lemma NLTK names a synset by: its first word without an adjective marker
/// (`outback(a)` -> `outback`), lowercased.
fn lemma_of(word: &[u8]) -> Option<String> {
    let word = std::str::from_utf8(word).ok()?;
    let word = match (word.ends_with(')'), word.find('(')) {
        (true, Some(open)) => &word[..open],
        _ => word,
    };
    Some(word.to_lowercase())
}

/// Writes `lemma.pos.NN` for `synset` into `out`.
fn write_label(
    data_path: &Path,
    pos: Pos,
    synset: &data::Synset<'_>,
    index: &Index<'_>,
    out: &mut String,
) -> Result<(), WordnetError> {
    use std::fmt::Write as _;
    let error = |reason: String| {
        WordnetError::line(
            data_path,
            synset.line,
            Field::nth("word", 1).to_string(),
            reason,
        )
    };
    let lemma =
        lemma_of(synset.first_word).ok_or_else(|| error("the word is not UTF-8".to_owned()))?;
    let sense = index.sense(lemma.as_bytes(), synset.offset).map_err(|e| {
        let index_file = pos.index_file();
        error(match e {
            SenseError::NoLemma => format!("lemma {lemma:?} has no line in {index_file}"),
            SenseError::NotListed(line) => format!(
                "{index_file}:{line} lists lemma {lemma:?} without this synset ({:08})",
                synset.offset
            ),
        })
    })?;
    let letter = if synset.satellite {
        's'
    } else {
        pos.letter() as char
    };
    write!(out, "{lemma}.{letter}.{sense:02}").expect("writing to a String");
    Ok(())
}

/// Adds an edge per pointer (resolving its target offset), skipping self pointers and
/// relations of weight 0.
fn add_edges(
    dir: &Path,
    files: &[DataFile<'_>],
    weights: &Weights,
    builder: &mut GraphBuilder,
    report: &mut ImportReport,
) -> Result<(), WordnetError> {
    let first = first_nodes(files);
    for file in files {
        let data_path = dir.join(file.pos.data_file());
        for (i, synset) in file.synsets.iter().enumerate() {
            let source = first[file.pos as usize] + i as u32;
            for (p, pointer) in file.pointers_of(synset).iter().enumerate() {
                let found = resolve(&files[pointer.target_pos as usize], pointer).map_err(|e| {
                    let field = Field::part("pointer", p + 1, e.field());
                    WordnetError::line(&data_path, synset.line, field.to_string(), e.message())
                })?;
                let target = first[pointer.target_pos as usize] + found as u32;
                add_pointer(source, target, pointer, weights, builder, report);
            }
        }
    }
    Ok(())
}

/// The node id of the first synset of each file, in [`Pos::ALL`] order.
fn first_nodes(files: &[DataFile<'_>]) -> [u32; 4] {
    let mut first = [0u32; 4];
    let mut next = 0u32;
    for file in files {
        first[file.pos as usize] = next;
        next += file.synsets.len() as u32;
    }
    first
}

/// Adds the edge of one resolved pointer, or counts why it is skipped.
fn add_pointer(
    source: u32,
    target: u32,
    pointer: &data::Pointer,
    weights: &Weights,
    builder: &mut GraphBuilder,
    report: &mut ImportReport,
) {
    report.pointers += 1;
    report.lexical_pointers += usize::from(pointer.source_word != 0);
    let weight = weights.get(pointer.relation);
    if source == target {
        report.skipped_self += 1;
    } else if weight == 0.0 {
        report.skipped_disabled += 1;
    } else {
        builder.add_edge(source, target, weight);
        report.edges_by_relation[pointer.relation as usize] += 1;
    }
}

/// Why a pointer's target could not be resolved.
enum Unresolved {
    /// No synset at the offset in the target's data file.
    NoSynset { offset: u32, file: &'static str },
    /// The target word number is past the target synset's words.
    NoWord { word: u8, words: u8, offset: u32 },
}

impl Unresolved {
    /// The part of the pointer at fault.
    fn field(&self) -> &'static str {
        match self {
            Unresolved::NoSynset { .. } => "synset_offset",
            Unresolved::NoWord { .. } => "source/target",
        }
    }

    fn message(&self) -> String {
        match self {
            Unresolved::NoSynset { offset, file } => {
                format!("no synset at offset {offset:08} in {file}")
            }
            Unresolved::NoWord {
                word,
                words,
                offset,
            } => format!("target word {word}, but synset {offset:08} has {words} words"),
        }
    }
}

/// The position of a pointer's target synset in `target_file`.
fn resolve(target_file: &DataFile<'_>, pointer: &data::Pointer) -> Result<usize, Unresolved> {
    let found = target_file
        .find(pointer.target)
        .ok_or(Unresolved::NoSynset {
            offset: pointer.target,
            file: target_file.pos.data_file(),
        })?;
    let words = target_file.synsets[found].word_count;
    if pointer.target_word > words {
        return Err(Unresolved::NoWord {
            word: pointer.target_word,
            words,
            offset: pointer.target,
        });
    }
    Ok(found)
}
