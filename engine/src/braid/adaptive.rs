//! The exchange interval (SPEC §3.2 "Adaptive interval"): a window of the last 100
//! applications and the rule that shrinks or grows the interval after each exchange.
//!
//! The rule is evaluated in integers so it is exact: `rate > 0.05` is `20·v > n`,
//! `rate < 0.025` is `40·v < n` (v violating applications of the n in the window),
//! `floor(interval·0.8)` is `interval·4/5` and `floor(interval·1.2)` is `interval·6/5`.

use std::collections::VecDeque;

/// Applications the violation rate looks back over.
pub const WINDOW: usize = 100;

/// The current interval and the window it adapts to.
#[derive(Debug, Clone)]
pub struct IntervalControl {
    interval: u32,
    adaptive: bool,
    min: u32,
    max: u32,
    window: VecDeque<bool>,
    violating: u32,
}

impl IntervalControl {
    /// Starts at `interval`; with `adaptive` false the interval never changes, otherwise it
    /// stays within `min..=max`. The window starts empty.
    pub fn new(interval: u32, adaptive: bool, min: u32, max: u32) -> IntervalControl {
        IntervalControl {
            interval,
            adaptive,
            min,
            max,
            window: VecDeque::with_capacity(WINDOW),
            violating: 0,
        }
    }

    /// The current interval, in instants.
    pub fn interval(&self) -> u32 {
        self.interval
    }

    /// Records one application (in sender order).
    pub fn record(&mut self, violated: bool) {
        if self.window.len() == WINDOW && self.window.pop_front() == Some(true) {
            self.violating -= 1;
        }
        self.window.push_back(violated);
        self.violating += violated as u32;
    }

    /// Fraction of the window's applications with a violation (0 when empty).
    pub fn rate(&self) -> f64 {
        if self.window.is_empty() {
            0.0
        } else {
            self.violating as f64 / self.window.len() as f64
        }
    }

    /// After an exchange: adapts the interval (when adaptive) and returns it.
    pub fn adapt(&mut self) -> u32 {
        if !self.adaptive || self.window.is_empty() {
            return self.interval;
        }
        let n = self.window.len() as u64;
        let v = self.violating as u64;
        let i = self.interval as u64;
        if 20 * v > n {
            self.interval = (i * 4 / 5).max(self.min as u64) as u32;
        } else if 40 * v < n {
            self.interval = (i + 1).max(i * 6 / 5).min(self.max as u64) as u32;
        }
        self.interval
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn shrinks_and_grows_by_the_rule() {
        let mut c = IntervalControl::new(1000, true, 100, 10000);
        c.record(true);
        assert_eq!(c.adapt(), 800);
        assert_eq!(c.adapt(), 640);
        // 1 violation in 21: rate 0.047 -> unchanged.
        for _ in 0..20 {
            c.record(false);
        }
        assert_eq!(c.adapt(), 640);
        // 1 in 41: 0.0244 < 0.025 -> grow by 1.2.
        for _ in 0..20 {
            c.record(false);
        }
        assert_eq!(c.adapt(), 768);
    }

    #[test]
    fn window_forgets_after_100() {
        let mut c = IntervalControl::new(1000, true, 1, 100000);
        c.record(true);
        for _ in 0..99 {
            c.record(false);
        }
        assert_eq!(c.rate(), 0.01);
        c.record(false);
        assert_eq!(c.rate(), 0.0);
    }

    #[test]
    fn bounds_and_small_intervals() {
        let mut c = IntervalControl::new(3, true, 2, 5);
        c.record(false);
        assert_eq!(c.adapt(), 4); // max(3+1, floor(3.6)=3)
        assert_eq!(c.adapt(), 5);
        assert_eq!(c.adapt(), 5); // max_interval
        c.record(true);
        assert_eq!(c.adapt(), 4);
        assert_eq!(c.adapt(), 3);
        assert_eq!(c.adapt(), 2);
        assert_eq!(c.adapt(), 2); // min_interval
        let mut fixed = IntervalControl::new(7, false, 1, 10);
        fixed.record(true);
        assert_eq!(fixed.adapt(), 7);
    }
}
