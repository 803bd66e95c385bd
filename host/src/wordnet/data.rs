//! Parsing a wndb(5) data file (`data.noun`, `data.verb`, `data.adj`, `data.adv`): one synset
//! a line,
//!
//! ```text
//! synset_offset lex_filenum ss_type w_cnt word lex_id [word lex_id...] p_cnt [ptr...] [frames...] | gloss
//! ptr    = pointer_symbol synset_offset pos source/target
//! frames = f_cnt + f_num w_num [+ f_num w_num...]       (data.verb only)
//! ```
//!
//! with `synset_offset` the byte offset of the line in the file (checked), `w_cnt` two hex
//! digits, `lex_id` one, `p_cnt` three decimal digits, `source/target` four hex digits. The
//! gloss is not kept. Words other than the first are checked but not kept.

use std::path::Path;

use super::Pos;
use super::error::WordnetError;
use super::relation::Relation;
use super::text::{self, Field, Fields, Line, shown};

/// One synset as read: where it is, its type, its first word and its pointers.
#[derive(Debug, Clone)]
pub(crate) struct Synset<'a> {
    pub offset: u32,
    pub line: u64,
    pub satellite: bool,
    pub word_count: u8,
    pub first_word: &'a [u8],
    /// Its pointers: `DataFile::pointers[start..end]`.
    pub pointers: (u32, u32),
}

/// One pointer as read (its number on the line is its position in the synset's range + 1).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pointer {
    pub relation: Relation,
    pub target: u32,
    pub target_pos: Pos,
    /// Source and target word numbers (both 0 for a semantic pointer).
    pub source_word: u8,
    pub target_word: u8,
}

/// The synsets of one data file in file (= offset) order and all their pointers.
#[derive(Debug)]
pub(crate) struct DataFile<'a> {
    pub pos: Pos,
    pub synsets: Vec<Synset<'a>>,
    pub pointers: Vec<Pointer>,
}

impl DataFile<'_> {
    /// The pointers of `synset`.
    pub fn pointers_of(&self, synset: &Synset<'_>) -> &[Pointer] {
        &self.pointers[synset.pointers.0 as usize..synset.pointers.1 as usize]
    }

    /// The position of the synset at `offset`, if there is one (synsets are in offset order).
    pub fn find(&self, offset: u32) -> Option<usize> {
        self.synsets
            .binary_search_by_key(&offset, |s| s.offset)
            .ok()
    }
}

/// Parses the data file of `pos` (`bytes`, read from `path`).
pub(crate) fn parse<'a>(
    path: &Path,
    pos: Pos,
    bytes: &'a [u8],
) -> Result<DataFile<'a>, WordnetError> {
    let mut file = DataFile {
        pos,
        synsets: Vec::with_capacity(bytes.len() / 150),
        pointers: Vec::with_capacity(bytes.len() / 40),
    };
    for line in text::entries(bytes) {
        let synset = parse_line(path, pos, line, &mut file.pointers)?;
        file.synsets.push(synset);
    }
    Ok(file)
}

fn parse_line<'a>(
    path: &Path,
    pos: Pos,
    line: Line<'a>,
    pointers: &mut Vec<Pointer>,
) -> Result<Synset<'a>, WordnetError> {
    let mut f = Fields::new(path, line);
    let offset = f.number(Field::one("synset_offset"), 10, 8)?;
    if offset as usize != line.offset {
        return Err(f.error(
            Field::one("synset_offset"),
            format!(
                "must be the byte offset of its line, {:08}, got {offset:08} (the file was \
                 edited or converted; use the original WordNet files)",
                line.offset
            ),
        ));
    }
    f.number(Field::one("lex_filenum"), 10, 2)?;
    let satellite = ss_type(&mut f, pos)?;
    let word_count = f.number(Field::one("w_cnt"), 16, 2)?;
    if word_count == 0 {
        return Err(f.error(
            Field::one("w_cnt"),
            "a synset has at least one word, got 00",
        ));
    }
    let first_word = words(&mut f, word_count)?;
    let start = pointers.len() as u32;
    let p_cnt = f.number(Field::one("p_cnt"), 10, 3)?;
    for i in 1..=p_cnt as usize {
        pointers.push(pointer(&mut f, i, word_count)?);
    }
    if pos == Pos::Verb {
        frames(&mut f, word_count)?;
    }
    f.literal(Field::one("gloss"), "|")?;
    Ok(Synset {
        offset,
        line: line.number,
        satellite,
        word_count: word_count as u8,
        first_word,
        pointers: (start, pointers.len() as u32),
    })
}

/// Reads `ss_type`, which must fit the file; returns whether the synset is a satellite.
fn ss_type(f: &mut Fields<'_, '_>, pos: Pos) -> Result<bool, WordnetError> {
    let field = Field::one("ss_type");
    let token = f.token(field)?;
    match (pos, token) {
        (Pos::Adj, b"s") => Ok(true),
        (_, [letter]) if *letter == pos.letter() => Ok(false),
        _ => {
            let expected = match pos {
                Pos::Adj => "a or s".to_owned(),
                _ => (pos.letter() as char).to_string(),
            };
            Err(f.error(
                field,
                format!(
                    "expected {expected} in {}, got {}",
                    pos.data_file(),
                    shown(token)
                ),
            ))
        }
    }
}

/// Reads the `word lex_id` pairs; returns the first word.
fn words<'a>(f: &mut Fields<'_, 'a>, count: u32) -> Result<&'a [u8], WordnetError> {
    let mut first: &[u8] = &[];
    for i in 1..=count as usize {
        let word = f.token(Field::nth("word", i))?;
        f.number(Field::nth("lex_id", i), 16, 1)?;
        if i == 1 {
            first = word;
        }
    }
    Ok(first)
}

/// Reads pointer `i` of a synset with `word_count` words.
fn pointer(f: &mut Fields<'_, '_>, i: usize, word_count: u32) -> Result<Pointer, WordnetError> {
    let field = Field::part("pointer", i, "pointer_symbol");
    let symbol = f.token(field)?;
    let relation = Relation::from_symbol(symbol).ok_or_else(|| {
        let known: Vec<&str> = Relation::ALL.iter().map(|r| r.symbol()).collect();
        f.error(
            field,
            format!(
                "unknown pointer symbol {}; expected one of {}",
                shown(symbol),
                known.join(" ")
            ),
        )
    })?;
    let target = f.number(Field::part("pointer", i, "synset_offset"), 10, 8)?;
    let field = Field::part("pointer", i, "pos");
    let letter = f.token(field)?;
    let target_pos = match letter {
        [b] => Pos::from_letter(*b),
        _ => None,
    }
    .ok_or_else(|| {
        f.error(
            field,
            format!("expected n, v, a, s or r, got {}", shown(letter)),
        )
    })?;
    let field = Field::part("pointer", i, "source/target");
    let st = f.number(field, 16, 4)?;
    let (source_word, target_word) = ((st >> 8) as u8, (st & 0xff) as u8);
    if (source_word == 0) != (target_word == 0) {
        return Err(f.error(
            field,
            format!(
                "{st:04x}: the word numbers must be both 0 (semantic) or both non-zero (lexical)"
            ),
        ));
    }
    if u32::from(source_word) > word_count {
        return Err(f.error(
            field,
            format!("{st:04x}: source word {source_word}, but the synset has {word_count} words"),
        ));
    }
    Ok(Pointer {
        relation,
        target,
        target_pos,
        source_word,
        target_word,
    })
}

/// Reads the verb frames: `f_cnt + f_num w_num ...` (`w_num` 0 = every word).
fn frames(f: &mut Fields<'_, '_>, word_count: u32) -> Result<(), WordnetError> {
    let count = f.number(Field::one("f_cnt"), 10, 2)?;
    for i in 1..=count as usize {
        f.literal(Field::part("frame", i, "+"), "+")?;
        f.number(Field::part("frame", i, "f_num"), 10, 2)?;
        let field = Field::part("frame", i, "w_num");
        let word = f.number(field, 16, 2)?;
        if word > word_count {
            return Err(f.error(
                field,
                format!("word {word}, but the synset has {word_count} words"),
            ));
        }
    }
    Ok(())
}
