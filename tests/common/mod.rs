//! Helpers shared by the integration test binaries: a seeded PRNG (splitmix64, so every
//! generated workload is reproducible from its seed without an external crate) and the
//! sequential reference model of a shard table ([`model`]).
//!
//! Invariant guarded: test inputs are a pure function of their seed, so a failure reported
//! with its seed can be replayed exactly.

#![allow(dead_code)]

pub mod model;

/// splitmix64 (Steele, Lea, Flood 2014): a tiny, full-period 64-bit generator.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.state)
    }

    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// Uniform in `0..n` (`n > 0`), by 128-bit multiply (bias below 2^-64 · n).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0)");
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo <= hi);
        lo + self.below(hi - lo + 1)
    }

    /// Uniform index into a slice of length `n`.
    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// Uniform f32 in `[0, 1)` with 24 random bits.
    pub fn unit_f32(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 / (1u32 << 24) as f32
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let w = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&w[..chunk.len()]);
        }
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        self.fill(&mut v);
        v
    }

    /// A key that is not one of the two reserved markers (`u64::MAX`, `u64::MAX - 1`).
    pub fn key(&mut self) -> u64 {
        loop {
            let k = self.next_u64();
            if k < u64::MAX - 1 {
                return k;
            }
        }
    }
}

/// splitmix64's output function: a bijection of u64, so distinct inputs give distinct keys.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `i`-th of a sequence of distinct keys (splitmix64's output function is a bijection).
/// Panics if `i` maps to a reserved key (no index a test uses does).
pub fn distinct_key(i: u64) -> u64 {
    let k = mix64(i);
    assert!(k < u64::MAX - 1, "index {i} maps to a reserved key");
    k
}

/// Lowercase hex of `bytes`, as the CLI prints values.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The result line `warpgrid kv apply` prints for an expected outcome (SPEC §5).
pub fn result_line(e: &model::Expect) -> String {
    use model::Expect;
    match e {
        Expect::Ok => "ok".into(),
        Expect::Value(v) => format!("value {}", hex(v)),
        Expect::Missing => "missing".into(),
        Expect::Deleted => "deleted".into(),
        Expect::Absent => "absent".into(),
        Expect::Related { value, partners } => {
            let mut s = format!("related {}", value.as_deref().map_or("missing".into(), hex));
            for (k, st, v) in partners {
                s.push_str(&format!(" {k}:{st:.6}:{}", hex(v)));
            }
            s
        }
    }
}

/// Runs the `warpgrid` binary with `args`, feeding `input` on stdin, and returns its output.
pub fn warpgrid_with_stdin(args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_warpgrid"))
        .env_remove("WARPGRID_BACKEND")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(input.as_bytes())
        .expect("stdin takes the input");
    child.wait_with_output().expect("the binary ends")
}
