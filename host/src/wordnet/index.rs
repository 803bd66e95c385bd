//! Parsing a wndb(5) index file (`index.noun`, ...): one lemma a line,
//!
//! ```text
//! lemma pos synset_cnt p_cnt [ptr_symbol...] sense_cnt tagsense_cnt synset_offset [synset_offset...]
//! ```
//!
//! The offsets are the lemma's synsets in sense order, so a synset's sense number for a lemma
//! is the position of its offset in that list, from 1. That is all the importer uses the
//! index for (the `NN` of a label `lemma.pos.NN`).

use std::path::Path;

use hashbrown::HashMap;

use super::Pos;
use super::error::WordnetError;
use super::text::{self, Field, Fields, shown};

/// One lemma's entry: the line it is on and its offsets (`Index::offsets[start..end]`).
#[derive(Debug, Clone, Copy)]
struct Entry {
    line: u64,
    start: u32,
    end: u32,
}

/// The lemmas of one index file and their synset offsets in sense order.
#[derive(Debug)]
pub(crate) struct Index<'a> {
    entries: HashMap<&'a [u8], Entry>,
    offsets: Vec<u32>,
}

/// Where a lookup of a synset's sense number failed.
#[derive(Debug)]
pub(crate) enum SenseError {
    /// The lemma has no line in the index.
    NoLemma,
    /// The lemma's line (its number) does not list the synset.
    NotListed(u64),
}

impl Index<'_> {
    /// The 1-based sense number of the synset at `offset` for `lemma` (lowercase).
    pub fn sense(&self, lemma: &[u8], offset: u32) -> Result<usize, SenseError> {
        let entry = self.entries.get(lemma).ok_or(SenseError::NoLemma)?;
        self.offsets[entry.start as usize..entry.end as usize]
            .iter()
            .position(|&o| o == offset)
            .map(|p| p + 1)
            .ok_or(SenseError::NotListed(entry.line))
    }
}

/// Parses the index file of `pos` (`bytes`, read from `path`).
pub(crate) fn parse<'a>(path: &Path, pos: Pos, bytes: &'a [u8]) -> Result<Index<'a>, WordnetError> {
    let mut index = Index {
        entries: HashMap::with_capacity(bytes.len() / 30),
        offsets: Vec::with_capacity(bytes.len() / 25),
    };
    for line in text::entries(bytes) {
        let mut f = Fields::new(path, line);
        let lemma = f.token(Field::one("lemma"))?;
        let start = index.offsets.len() as u32;
        read_rest(&mut f, pos, &mut index.offsets)?;
        let entry = Entry {
            line: line.number,
            start,
            end: index.offsets.len() as u32,
        };
        if let Some(first) = index.entries.insert(lemma, entry) {
            return Err(f.error(
                Field::one("lemma"),
                format!(
                    "{} is listed twice (first on line {})",
                    shown(lemma),
                    first.line
                ),
            ));
        }
    }
    Ok(index)
}

/// Reads the fields after the lemma, appending its synset offsets to `offsets`.
fn read_rest(f: &mut Fields<'_, '_>, pos: Pos, offsets: &mut Vec<u32>) -> Result<(), WordnetError> {
    let field = Field::one("pos");
    let letter = f.token(field)?;
    if letter != [pos.letter()] {
        return Err(f.error(
            field,
            format!(
                "expected {} in {}, got {}",
                pos.letter() as char,
                pos.index_file(),
                shown(letter)
            ),
        ));
    }
    let synset_cnt = f.number(Field::one("synset_cnt"), 10, 0)?;
    let p_cnt = f.number(Field::one("p_cnt"), 10, 0)?;
    for i in 1..=p_cnt as usize {
        f.token(Field::nth("ptr_symbol", i))?;
    }
    f.number(Field::one("sense_cnt"), 10, 0)?;
    f.number(Field::one("tagsense_cnt"), 10, 0)?;
    for i in 1..=synset_cnt as usize {
        offsets.push(f.number(Field::nth("synset_offset", i), 10, 8)?);
    }
    if let Some(extra) = f.try_token() {
        return Err(f.error(
            Field::nth("synset_offset", synset_cnt as usize + 1),
            format!(
                "synset_cnt is {synset_cnt}, but the line goes on with {}",
                shown(extra)
            ),
        ));
    }
    Ok(())
}
