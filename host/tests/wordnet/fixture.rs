//! A small WordNet 3.0 database written by the tests: data and index files in the wndb(5)
//! format with correct byte offsets, three license lines at the top of every file (as the
//! real files have), synsets of all four parts of speech (a satellite adjective and adjective
//! markers included) and pointers of most kinds. Shared by `host/tests/wordnet.rs` and the
//! CLI test `tests/wordnet_cli.rs` (included there with `#[path]`).
//!
//! Node order and labels the importer must give (written out by hand in the tests):
//!
//! | node | label | | node | label |
//! |---:|---|---|---:|---|
//! | 0 | frump.n.01 | | 11 | scare.v.01 |
//! | 1 | animal.n.01 | | 12 | run.v.02 |
//! | 2 | canine.n.01 | | 13 | good.a.01 |
//! | 3 | dog.n.01 | | 14 | bad.a.01 |
//! | 4 | pack.n.01 | | 15 | estimable.s.01 |
//! | 5 | rover.n.01 | | 16 | good.s.02 |
//! | 6 | zoology.n.01 | | 17 | outback.s.01 |
//! | 7 | goodness.n.01 | | 18 | running.a.01 |
//! | 8 | move.v.01 | | 19 | well.r.01 |
//! | 9 | run.v.01 | | 20 | badly.r.01 |
//! | 10 | chase.v.01 | | | |

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

/// One synset of the fixture.
pub struct Synset {
    /// How pointers name it.
    pub key: &'static str,
    /// `n`, `v`, `a`, `s` or `r`.
    pub ss_type: char,
    pub words: &'static [&'static str],
    /// `(pointer_symbol, target key, source/target)`.
    pub pointers: &'static [(&'static str, &'static str, &'static str)],
    /// Its rank among the synsets of each of its lemmas in the index (lower = earlier sense).
    pub rank: u32,
}

const fn s(
    key: &'static str,
    ss_type: char,
    words: &'static [&'static str],
    pointers: &'static [(&'static str, &'static str, &'static str)],
    rank: u32,
) -> Synset {
    Synset {
        key,
        ss_type,
        words,
        pointers,
        rank,
    }
}

/// The fixture, each part of speech in data-file order.
pub const SAMPLE: &[Synset] = &[
    // Nouns. `frump` is also "dog", but the index lists it after the animal: dog.n.02.
    s("frump", 'n', &["frump", "dog"], &[], 2),
    s(
        "animal",
        'n',
        &["animal", "beast"],
        &[("~", "canine", "0000")],
        1,
    ),
    s(
        "canine",
        'n',
        &["canine", "canid"],
        &[("@", "animal", "0000"), ("~", "dog", "0000")],
        1,
    ),
    s(
        "dog",
        'n',
        &["dog", "domestic_dog", "Canis_familiaris"],
        &[
            ("@", "canine", "0000"),
            ("#m", "pack", "0000"),
            ("+", "chase", "0103"),
            ("+", "dog", "0102"),
            (";c", "zoology", "0000"),
        ],
        1,
    ),
    s("pack", 'n', &["pack"], &[("%m", "dog", "0000")], 1),
    s("rover", 'n', &["Rover"], &[("@i", "dog", "0000")], 1),
    s(
        "zoology",
        'n',
        &["zoology", "zoological_science"],
        &[("-c", "dog", "0000")],
        1,
    ),
    s(
        "goodness",
        'n',
        &["goodness", "good"],
        &[("=", "good", "0000"), ("+", "good", "0201")],
        1,
    ),
    // Verbs.
    s("move", 'v', &["move"], &[("~", "run", "0000")], 1),
    s(
        "run",
        'v',
        &["run"],
        &[("@", "move", "0000"), ("$", "chase", "0000")],
        1,
    ),
    s(
        "chase",
        'v',
        &["chase", "chase_after", "dog"],
        &[
            ("+", "dog", "0301"),
            ("$", "run", "0000"),
            ("*", "run", "0000"),
        ],
        1,
    ),
    s("scare", 'v', &["scare"], &[(">", "run_away", "0000")], 1),
    s("run_away", 'v', &["run", "flee"], &[], 2),
    // Adjectives: heads (a) and satellites (s); "good" has senses 1 (head), 2 and 3.
    s(
        "good",
        'a',
        &["good"],
        &[
            ("!", "bad", "0101"),
            ("&", "estimable", "0000"),
            ("=", "goodness", "0000"),
            ("+", "goodness", "0102"),
        ],
        1,
    ),
    s("bad", 'a', &["bad"], &[("!", "good", "0101")], 1),
    s(
        "estimable",
        's',
        &["estimable", "good", "honorable"],
        &[("&", "good", "0000")],
        3,
    ),
    s(
        "good_s",
        's',
        &["good(p)", "full"],
        &[("&", "good", "0000")],
        2,
    ),
    s(
        "outback",
        's',
        &["outback(a)", "remote"],
        &[("&", "bad", "0000")],
        1,
    ),
    s("running", 'a', &["running"], &[("<", "run", "0101")], 1),
    // Adverbs.
    s(
        "well",
        'r',
        &["well", "good"],
        &[("\\", "good", "0201"), ("!", "badly", "0101")],
        1,
    ),
    s(
        "badly",
        'r',
        &["badly"],
        &[("\\", "bad", "0101"), ("!", "well", "0101")],
        1,
    ),
];

/// The license lines every file starts with (two leading spaces, as in WordNet 3.0).
pub const HEADER: &str = "  1 This is a test database in the format of WordNet 3.0.  \n  2 \
                          Its synsets are made up for the tests.  \n  3   \n";

/// Lines before the first synset of every file.
pub const HEADER_LINES: u64 = 3;

/// `noun`, `verb`, `adj` or `adv`: the file an `ss_type` belongs to.
pub fn file_of(ss_type: char) -> &'static str {
    match ss_type {
        'n' => "noun",
        'v' => "verb",
        'a' | 's' => "adj",
        'r' => "adv",
        other => panic!("bad ss_type {other}"),
    }
}

/// The lemma a word is indexed under: adjective marker removed, lowercased.
fn lemma(word: &str) -> String {
    let word = match word.find('(') {
        Some(open) if word.ends_with(')') => &word[..open],
        _ => word,
    };
    word.to_lowercase()
}

/// One data line, with `offsets` giving every synset's offset by key.
fn data_line(synset: &Synset, offsets: &BTreeMap<&str, usize>) -> String {
    let offset = offsets.get(synset.key).copied().unwrap_or(0);
    let mut line = format!(
        "{offset:08} 05 {} {:02x}",
        synset.ss_type,
        synset.words.len()
    );
    for word in synset.words {
        line.push_str(&format!(" {word} 0"));
    }
    line.push_str(&format!(" {:03}", synset.pointers.len()));
    for (symbol, target, st) in synset.pointers {
        let t = SAMPLE
            .iter()
            .find(|x| x.key == *target)
            .expect("pointer target");
        let at = offsets.get(t.key).copied().unwrap_or(0);
        line.push_str(&format!(" {symbol} {at:08} {} {st}", t.ss_type));
    }
    if synset.ss_type == 'v' {
        line.push_str(" 02 + 02 00 + 08 01");
    }
    line.push_str(&format!(" | the synset {}  \n", synset.key));
    line
}

/// The synsets of one data file, in order.
fn synsets_of(file: &str) -> impl Iterator<Item = &'static Synset> + '_ {
    SAMPLE.iter().filter(move |x| file_of(x.ss_type) == file)
}

/// Every synset's offset: the byte offset of its line (line lengths do not depend on the
/// offsets, all eight digits wide).
fn offsets() -> BTreeMap<&'static str, usize> {
    let zero = BTreeMap::new();
    let mut offsets = BTreeMap::new();
    for file in ["noun", "verb", "adj", "adv"] {
        let mut at = HEADER.len();
        for synset in synsets_of(file) {
            offsets.insert(synset.key, at);
            at += data_line(synset, &zero).len();
        }
    }
    offsets
}

/// Writes the eight files into `dir`.
pub fn write(dir: &Path) {
    let offsets = offsets();
    for file in ["noun", "verb", "adj", "adv"] {
        let mut data = String::from(HEADER);
        // lemma -> [(rank, offset)]
        let mut index: BTreeMap<String, Vec<(u32, usize)>> = BTreeMap::new();
        for synset in synsets_of(file) {
            data.push_str(&data_line(synset, &offsets));
            for word in synset.words {
                index
                    .entry(lemma(word))
                    .or_default()
                    .push((synset.rank, offsets[synset.key]));
            }
        }
        std::fs::write(dir.join(format!("data.{file}")), data).unwrap();
        let letter = match file {
            "adv" => 'r',
            other => other.chars().next().unwrap(),
        };
        let mut text = String::from(HEADER);
        for (lemma, mut senses) in index {
            senses.sort();
            let n = senses.len();
            text.push_str(&format!("{lemma} {letter} {n} 1 @ {n} 0"));
            for (_, offset) in senses {
                text.push_str(&format!(" {offset:08}"));
            }
            text.push_str("  \n");
        }
        std::fs::write(dir.join(format!("index.{file}")), text).unwrap();
    }
}
