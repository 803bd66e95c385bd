//! The WordNet importer (`warpgrid_host::wordnet`, issue 5 item 7). Invariants guarded: a
//! database maps to the documented nodes (order, kinds, NLTK labels with index sense
//! numbers), edges and weights exactly, with a report that accounts for every pointer; every
//! malformed input is an error naming the file, the line and the wndb(5) field; and on the
//! real WordNet 3.0 (Debian `wordnet-base`, when installed) the counts and known synsets
//! are WordNet's.

#[path = "wordnet/fixture.rs"]
mod fixture;

use std::path::Path;

use warpgrid_engine::graph::{Graph, GraphConfig, Multipliers, NodeKind};
use warpgrid_host::wordnet::{self, ImportOptions, Pos, Relation, Weights};

/// Options with every direction multiplier 1, so `w'` is the relation weight as f32.
fn flat() -> ImportOptions {
    ImportOptions {
        config: GraphConfig {
            hierarchical: false,
            ..GraphConfig::default()
        },
        ..ImportOptions::default()
    }
}

fn sample() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fixture::write(dir.path());
    dir
}

fn labels(g: &Graph) -> Vec<&str> {
    (0..g.node_count() as u32)
        .map(|v| g.label(v).unwrap())
        .collect()
}

/// Every edge as (source label, target label, w').
fn edges(g: &Graph) -> Vec<(String, String, f32)> {
    let mut out = Vec::new();
    for u in 0..g.node_count() as u32 {
        let (targets, weights) = g.out_edges(u);
        for (&v, &w) in targets.iter().zip(weights) {
            let label = |n: u32| g.label(n).unwrap().to_owned();
            out.push((label(u), label(v), w));
        }
    }
    out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    out
}

fn edge(g: &Graph, from: &str, to: &str) -> Option<f32> {
    let u = g.find_label(from).unwrap();
    let v = g.find_label(to).unwrap();
    let (targets, weights) = g.out_edges(u);
    targets.iter().position(|&t| t == v).map(|i| weights[i])
}

mod mapping {
    use super::*;

    #[test]
    fn nodes_come_in_file_order_with_kinds_and_nltk_labels() {
        let dir = sample();
        let (g, _) = wordnet::import(dir.path(), &flat()).unwrap();
        assert_eq!(
            labels(&g),
            [
                "frump.n.01",
                "animal.n.01",
                "canine.n.01",
                "dog.n.01",
                "pack.n.01",
                "rover.n.01",
                "zoology.n.01",
                "goodness.n.01",
                "move.v.01",
                "run.v.01",
                "chase.v.01",
                "scare.v.01",
                "run.v.02",
                "good.a.01",
                "bad.a.01",
                "estimable.s.01",
                "good.s.02",
                "outback.s.01",
                "running.a.01",
                "well.r.01",
                "badly.r.01",
            ]
        );
        for v in 0..21 {
            let expected = if v < 13 {
                NodeKind::Concept
            } else {
                NodeKind::Episode
            };
            assert_eq!(g.kind(v), expected, "node {v}");
        }
        assert_eq!(g.dim(), 0, "wordnet has no embeddings");
    }

    #[test]
    fn every_pointer_is_an_edge_with_its_relation_weight() {
        let dir = sample();
        let (g, _) = wordnet::import(dir.path(), &flat()).unwrap();
        let expected: Vec<(&str, &str, f64)> = vec![
            ("animal.n.01", "canine.n.01", 0.7),
            ("bad.a.01", "good.a.01", 0.3),
            ("badly.r.01", "bad.a.01", 0.6),
            ("badly.r.01", "well.r.01", 0.3),
            ("canine.n.01", "animal.n.01", 1.0),
            ("canine.n.01", "dog.n.01", 0.7),
            ("chase.v.01", "dog.n.01", 0.6),
            // verb group 0.9 and entailment 0.8: the larger is kept
            ("chase.v.01", "run.v.01", 0.9),
            ("dog.n.01", "canine.n.01", 1.0),
            ("dog.n.01", "chase.v.01", 0.6),
            ("dog.n.01", "pack.n.01", 0.8),
            ("dog.n.01", "zoology.n.01", 0.5),
            ("estimable.s.01", "good.a.01", 0.9),
            ("good.a.01", "bad.a.01", 0.3),
            ("good.a.01", "estimable.s.01", 0.9),
            // attribute 0.7 and derivation 0.6
            ("good.a.01", "goodness.n.01", 0.7),
            ("good.s.02", "good.a.01", 0.9),
            ("goodness.n.01", "good.a.01", 0.7),
            ("move.v.01", "run.v.01", 0.7),
            ("outback.s.01", "bad.a.01", 0.9),
            ("pack.n.01", "dog.n.01", 0.6),
            ("rover.n.01", "dog.n.01", 1.0),
            ("run.v.01", "chase.v.01", 0.9),
            ("run.v.01", "move.v.01", 1.0),
            ("running.a.01", "run.v.01", 0.7),
            ("scare.v.01", "run.v.02", 0.7),
            ("well.r.01", "badly.r.01", 0.3),
            ("well.r.01", "good.a.01", 0.6),
            ("zoology.n.01", "dog.n.01", 0.2),
        ];
        let expected: Vec<(String, String, f32)> = expected
            .into_iter()
            .map(|(a, b, w)| (a.to_owned(), b.to_owned(), w as f32))
            .collect();
        assert_eq!(edges(&g), expected);
    }

    #[test]
    fn the_report_accounts_for_every_pointer() {
        let dir = sample();
        let (g, r) = wordnet::import(dir.path(), &flat()).unwrap();
        assert_eq!(r.synsets, [8, 5, 6, 2]);
        assert_eq!(r.synsets_of(Pos::Adj), 6);
        assert_eq!(r.total_synsets(), 21);
        assert_eq!(r.satellites, 3);
        assert_eq!(r.pointers, 33);
        assert_eq!(r.lexical_pointers, 12);
        assert_eq!(r.skipped_self, 1, "dog -> domestic_dog, one synset");
        assert_eq!(r.skipped_disabled, 0);
        let by: Vec<(Relation, usize)> = Relation::ALL
            .iter()
            .map(|&rel| (rel, r.edges_of(rel)))
            .filter(|&(_, n)| n > 0)
            .collect();
        use Relation::*;
        assert_eq!(
            by,
            [
                (Hypernym, 3),
                (InstanceHypernym, 1),
                (Hyponym, 3),
                (MemberHolonym, 1),
                (MemberMeronym, 1),
                (Antonym, 4),
                (SimilarTo, 4),
                (Derivation, 4),
                (Attribute, 2),
                (Entailment, 1),
                (Cause, 1),
                (VerbGroup, 2),
                (Participle, 1),
                (Pertainym, 2),
                (DomainTopic, 1),
                (MemberOfDomainTopic, 1),
            ]
        );
        assert_eq!(r.edges_added(), 32);
        assert_eq!(
            r.pointers,
            r.edges_added() + r.skipped_self + r.skipped_disabled
        );
        assert_eq!(
            g.edge_count(),
            29,
            "three pairs linked by two relations each"
        );
    }

    #[test]
    fn direction_multipliers_apply_by_kind() {
        let dir = sample();
        let (g, _) = wordnet::import(dir.path(), &ImportOptions::default()).unwrap();
        let m = Multipliers::HIERARCHICAL;
        let cases = [
            ("dog.n.01", "canine.n.01", 1.0 * m.concept_concept),
            ("chase.v.01", "dog.n.01", 0.6 * m.concept_concept),
            ("goodness.n.01", "good.a.01", 0.7 * m.concept_episode),
            ("running.a.01", "run.v.01", 0.7 * m.episode_concept),
            ("well.r.01", "badly.r.01", 0.3 * m.episode_episode),
        ];
        for (from, to, w) in cases {
            assert_eq!(edge(&g, from, to), Some(w as f32), "{from} -> {to}");
        }
    }

    #[test]
    fn a_relation_of_weight_zero_is_left_out_and_counted() {
        let dir = sample();
        let mut options = flat();
        options.weights.set(Relation::Antonym, 0.0).unwrap();
        options.weights.set_from_text("@=0.25").unwrap();
        let (g, r) = wordnet::import(dir.path(), &options).unwrap();
        assert_eq!(r.skipped_disabled, 4);
        assert_eq!(r.edges_of(Relation::Antonym), 0);
        assert_eq!(g.edge_count(), 25);
        assert_eq!(edge(&g, "good.a.01", "bad.a.01"), None);
        assert_eq!(edge(&g, "dog.n.01", "canine.n.01"), Some(0.25));
    }

    #[test]
    fn read_gives_the_builder_of_the_same_graph() {
        let dir = sample();
        let (builder, report) = wordnet::read(dir.path(), &flat()).unwrap();
        assert_eq!(builder.node_count(), 21);
        let g = builder.build().unwrap();
        let (h, again) = wordnet::import(dir.path(), &flat()).unwrap();
        assert_eq!((edges(&g), report), (edges(&h), again));
    }
}

mod weights {
    use super::*;

    #[test]
    fn the_table_has_unique_symbols_and_names_and_weights_in_range() {
        for (i, r) in Relation::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
            assert_eq!(Relation::from_symbol(r.symbol().as_bytes()), Some(*r));
            assert_eq!(Relation::parse(r.name()), Some(*r));
            assert_eq!(Relation::parse(r.symbol()), Some(*r));
            assert!(r.default_weight() > 0.0 && r.default_weight() <= 1.0);
            assert_eq!(Weights::default().get(*r), r.default_weight());
        }
        assert_eq!(Relation::from_symbol(b"@").unwrap().name(), "hypernym");
        assert_eq!(Relation::from_symbol(b"\\"), Some(Relation::Pertainym));
        assert_eq!(Relation::Hypernym.default_weight(), 1.0);
        assert_eq!(Relation::Antonym.default_weight(), 0.3);
    }

    #[test]
    fn settings_take_names_symbols_and_zero_and_reject_the_rest() {
        let mut w = Weights::default();
        w.set_from_text("antonym=0").unwrap();
        w.set_from_text("~i=0.125").unwrap();
        assert_eq!(w.get(Relation::Antonym), 0.0);
        assert_eq!(w.get(Relation::InstanceHyponym), 0.125);
        let e = w.set_from_text("hypernym=1.5").unwrap_err().to_string();
        assert!(
            e.contains("relation hypernym") && e.contains("got 1.5"),
            "{e}"
        );
        let e = w.set_from_text("kinship=0.5").unwrap_err().to_string();
        assert!(e.contains("unknown relation \"kinship\""), "{e}");
        let e = w.set_from_text("hyponym").unwrap_err().to_string();
        assert!(e.contains("expected NAME=WEIGHT"), "{e}");
        assert!(w.set_from_text("hyponym=NaN").is_err());
        assert!(w.set(Relation::Cause, -0.1).is_err());
        assert_eq!(w.get(Relation::Cause), Relation::Cause.default_weight());
    }
}

mod bad_input {
    use super::*;

    /// Replaces the one occurrence of `from` in `dir/file` by `to`.
    fn edit(dir: &Path, file: &str, from: &str, to: &str) {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches(from).count(), 1, "{from:?} in {file}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    }

    /// The number of the line of `file` that starts with `prefix`.
    fn line_of(dir: &Path, file: &str, prefix: &str) -> usize {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        text.lines().position(|l| l.starts_with(prefix)).unwrap() + 1
    }

    /// The offset of the synset whose first word is `word` (the first field of its line).
    fn offset_of(dir: &Path, file: &str, word: &str) -> String {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let line = text
            .lines()
            .find(|l| l.split(' ').nth(4) == Some(word))
            .unwrap();
        line[..8].to_owned()
    }

    /// Imports and returns the error message, which must start with `dir/file:line: `.
    fn error(dir: &Path, file: &str, line: usize) -> String {
        let e = wordnet::import(dir, &flat()).unwrap_err().to_string();
        let at = format!("{}:{line}: ", dir.join(file).display());
        assert!(e.starts_with(&at), "expected {at:?} in: {e}");
        e[at.len()..].to_owned()
    }

    #[test]
    fn a_truncated_line_names_the_missing_field() {
        let dir = sample();
        let path = dir.path().join("data.verb");
        let text = std::fs::read_to_string(&path).unwrap();
        let cut = text.find("run 0 flee").unwrap() + "run 0 flee".len();
        std::fs::write(&path, &text[..cut]).unwrap();
        assert_eq!(fixture::HEADER_LINES + 5, 8);
        assert_eq!(
            error(dir.path(), "data.verb", 8),
            "field lex_id 2: the line ends before this field (is the file truncated?)"
        );
    }

    #[test]
    fn a_bad_hex_count_names_w_cnt() {
        let dir = sample();
        edit(dir.path(), "data.noun", " 03 dog 0 ", " 0g dog 0 ");
        assert_eq!(
            error(dir.path(), "data.noun", 7),
            "field w_cnt: expected 2 hexadecimal digits, got \"0g\""
        );
    }

    #[test]
    fn a_pointer_to_no_synset_names_the_pointer() {
        let dir = sample();
        let dog = offset_of(dir.path(), "data.noun", "dog");
        edit(
            dir.path(),
            "data.noun",
            &format!("@i {dog} n"),
            "@i 00000001 n",
        );
        assert_eq!(
            error(dir.path(), "data.noun", 9),
            "field pointer 1 synset_offset: no synset at offset 00000001 in data.noun"
        );
    }

    #[test]
    fn a_lexical_pointer_to_a_missing_word_names_source_target() {
        let dir = sample();
        edit(dir.path(), "data.noun", " v 0103 ", " v 0104 ");
        let chase = offset_of(dir.path(), "data.verb", "chase");
        assert_eq!(
            error(dir.path(), "data.noun", 7),
            format!("field pointer 3 source/target: target word 4, but synset {chase} has 3 words")
        );
        let dir = sample();
        edit(dir.path(), "data.noun", " v 0103 ", " v 0403 ");
        assert_eq!(
            error(dir.path(), "data.noun", 7),
            "field pointer 3 source/target: 0403: source word 4, but the synset has 3 words"
        );
    }

    #[test]
    fn an_unknown_pointer_symbol_is_named() {
        let dir = sample();
        edit(dir.path(), "data.noun", " @i ", " @x ");
        let e = error(dir.path(), "data.noun", 9);
        assert!(
            e.starts_with("field pointer 1 pointer_symbol: unknown pointer symbol \"@x\"; expected one of @ @i ~"),
            "{e}"
        );
    }

    #[test]
    fn an_offset_that_is_not_the_line_position_is_rejected() {
        let dir = sample();
        let pack = offset_of(dir.path(), "data.noun", "pack");
        edit(
            dir.path(),
            "data.noun",
            &format!("{pack} 05 n"),
            "00000000 05 n",
        );
        assert_eq!(
            error(dir.path(), "data.noun", 8),
            format!(
                "field synset_offset: must be the byte offset of its line, {pack}, got 00000000 \
                 (the file was edited or converted; use the original WordNet files)"
            )
        );
    }

    #[test]
    fn an_ss_type_of_another_file_is_rejected() {
        let dir = sample();
        edit(dir.path(), "data.adv", " 05 r 01 badly ", " 05 n 01 badly ");
        assert_eq!(
            error(dir.path(), "data.adv", 5),
            "field ss_type: expected r in data.adv, got \"n\""
        );
    }

    #[test]
    fn a_lemma_missing_from_the_index_names_the_synset_line() {
        let dir = sample();
        let path = dir.path().join("index.adv");
        let text = std::fs::read_to_string(&path).unwrap();
        let kept: String = text
            .lines()
            .filter(|l| !l.starts_with("badly "))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&path, kept).unwrap();
        assert_eq!(
            error(dir.path(), "data.adv", 5),
            "field word 1: lemma \"badly\" has no line in index.adv"
        );
    }

    #[test]
    fn an_index_line_without_the_synset_names_both_files() {
        let dir = sample();
        let well = offset_of(dir.path(), "data.adv", "well");
        let at = line_of(dir.path(), "index.adv", "well ");
        edit(
            dir.path(),
            "index.adv",
            &format!("well r 1 1 @ 1 0 {well}"),
            "well r 1 1 @ 1 0 00000002",
        );
        assert_eq!(
            error(dir.path(), "data.adv", 4),
            format!(
                "field word 1: index.adv:{at} lists lemma \"well\" without this synset ({well})"
            )
        );
    }

    #[test]
    fn a_bad_index_count_names_the_index_line() {
        let dir = sample();
        let at = line_of(dir.path(), "index.noun", "dog ");
        edit(dir.path(), "index.noun", "dog n 2 ", "dog n x ");
        assert_eq!(
            error(dir.path(), "index.noun", at),
            "field synset_cnt: expected a decimal number, got \"x\""
        );
        let dir = sample();
        edit(dir.path(), "index.noun", "dog n 2 ", "dog n 1 ");
        let e = error(dir.path(), "index.noun", at);
        assert!(
            e.starts_with("field synset_offset 2: synset_cnt is 1, but the line goes on with"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_file_is_named_with_the_fix() {
        let dir = sample();
        std::fs::remove_file(dir.path().join("index.adv")).unwrap();
        let e = wordnet::import(dir.path(), &flat())
            .unwrap_err()
            .to_string();
        let at = format!("{}: cannot read", dir.path().join("index.adv").display());
        assert!(e.starts_with(&at), "{e}");
        assert!(e.contains("apt-get install wordnet-base"), "{e}");
        let e = wordnet::import(&dir.path().join("nowhere"), &flat())
            .unwrap_err()
            .to_string();
        assert!(e.contains("nowhere/data.noun: cannot read"), "{e}");
    }
}

/// The real database, when installed (`apt-get install wordnet-base`).
mod real {
    use super::*;

    const DIR: &str = "/usr/share/wordnet";

    /// The node id the importer must give the synset at `offset` of `pos`: the synsets
    /// before it in node order, counted straight from the data files.
    fn node_of(pos: Pos, offset: &str) -> u32 {
        let mut id = 0;
        for p in Pos::ALL {
            let text = std::fs::read_to_string(Path::new(DIR).join(p.data_file())).unwrap();
            for line in text.lines().filter(|l| !l.starts_with("  ")) {
                if p == pos && line.starts_with(offset) {
                    return id;
                }
                id += 1;
            }
        }
        panic!("{offset} not in {}", pos.data_file());
    }

    #[test]
    fn wordnet_3_0_imports_with_its_counts_and_known_synsets() {
        if !Path::new(DIR).join("data.noun").exists() {
            eprintln!("skipped: {DIR}/data.noun not found (apt-get install wordnet-base)");
            return;
        }
        let start = std::time::Instant::now();
        let (g, r) = wordnet::import(Path::new(DIR), &ImportOptions::default()).unwrap();
        eprintln!("imported WordNet 3.0 in {:?}", start.elapsed());
        assert_eq!(r.synsets, [82115, 13767, 18156, 3621]);
        assert_eq!((r.total_synsets(), g.node_count()), (117_659, 117_659));
        assert_eq!(r.satellites, 10693);
        assert_eq!((r.pointers, r.lexical_pointers), (377_592, 92_244));
        assert_eq!((r.skipped_self, r.skipped_disabled), (19, 0));
        assert_eq!(r.edges_of(Relation::Hypernym), 89_089);
        assert_eq!(r.edges_of(Relation::Hyponym), 89_089);
        assert_eq!(r.edges_of(Relation::InstanceHypernym), 8_577);
        assert_eq!(r.edges_of(Relation::SimilarTo), 21_386);
        assert_eq!(r.edges_of(Relation::Derivation), 74_717 - 19);
        assert_eq!(g.edge_count(), 361_638, "distinct (source, target) pairs");

        let known = [
            (Pos::Noun, "00001740", "entity.n.01"),
            (Pos::Noun, "02084071", "dog.n.01"),
            (Pos::Noun, "02121620", "cat.n.01"),
            (Pos::Verb, "01926329", "run.v.01"),
            (Pos::Adj, "01123148", "good.a.01"),
            (Pos::Adj, "00106020", "full.s.06"),
            (Pos::Adj, "01586752", "good.s.06"),
            (Pos::Adj, "00020103", "outback.s.01"),
            (Pos::Adj, "01552162", "galore.s.01"),
            (Pos::Adv, "00011093", "well.r.01"),
        ];
        for (pos, offset, label) in known {
            let v = node_of(pos, offset);
            assert_eq!(g.label(v), Some(label), "{} {offset}", pos.data_file());
            assert_eq!(g.kind(v), pos.kind());
        }
        let m = Multipliers::HIERARCHICAL;
        for hypernym in ["canine.n.02", "domestic_animal.n.01"] {
            let w = edge(&g, "dog.n.01", hypernym);
            assert_eq!(
                w,
                Some((1.0 * m.concept_concept) as f32),
                "dog.n.01 -> {hypernym}"
            );
        }
        let w = edge(&g, "good.a.01", "superb.s.02");
        assert_eq!(w, Some((0.9 * m.episode_episode) as f32));
        let all = labels(&g);
        let distinct: std::collections::HashSet<&str> = all.iter().copied().collect();
        assert_eq!(distinct.len(), all.len(), "labels are unique");
    }
}
