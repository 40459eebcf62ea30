//! Guessing limits at the source: counting failed payment-code look-ups per *who sent them*.
//!
//! A payment code is a one-time value, so the only way to attack it is to guess. Guessing is
//! limited where it comes from — the merchant client, the merchant, the terminal (at the
//! acquirer) and the acquirer's merchant and terminal (at the wallet) — and **never** by locking
//! out the user whose code is guessed or the whole wallet: a genuine code from any other source
//! always reaches the user's own limits and balance checks.
//!
//! Each source has one fixed-window counter: the start of its current window and the failures
//! counted in it. A source is refused while its window is open and its failures have reached the
//! limit; the first failure after the window closes starts a new one. A fixed window lets a
//! source make at most `2·max` failures across one window boundary, and at most
//! `max · (ceil(period / window) + 1)` in any period: that is the bound the guessing odds are
//! computed with. The stores keep these counters as rows, so they survive a restart.

use std::fmt;

/// The limit of one kind of source: at most `failures_max` failed look-ups per `window_s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceLimit {
    pub failures_max: u32,
    pub window_s: u32,
}

impl SourceLimit {
    pub fn window_ms(&self) -> i64 {
        i64::from(self.window_s) * 1000
    }

    /// Failures this limit allows in any `period_s` at most (the fixed-window bound: the period
    /// can overlap one window more than it spans).
    pub fn failures_in_period_max(&self, period_s: u64) -> u64 {
        u64::from(self.failures_max) * (period_s.div_ceil(u64::from(self.window_s.max(1))) + 1)
    }

    /// `Some(ms until the window closes)` when `counter` refuses a look-up at `now_ms`.
    pub fn refusal(&self, counter: Option<Counter>, now_ms: i64) -> Option<i64> {
        let c = counter?;
        let closes_ms = c.window_start_ms.saturating_add(self.window_ms());
        (now_ms < closes_ms && c.failures >= self.failures_max).then(|| closes_ms - now_ms)
    }

    /// What a refused source is told: which source, its limit, and when to try again.
    pub fn refusal_message(&self, source: &Source<'_>, wait_ms: i64) -> String {
        format!(
            "too many invalid payment codes from {source} (at most {} in {} s); try again in {} s",
            self.failures_max,
            self.window_s,
            wait_ms.max(0).unsigned_abs().div_ceil(1000)
        )
    }

    /// The counter after one more failure at `now_ms`.
    pub fn after_failure(&self, counter: Option<Counter>, now_ms: i64) -> Counter {
        match counter {
            Some(c) if now_ms < c.window_start_ms.saturating_add(self.window_ms()) => Counter {
                window_start_ms: c.window_start_ms,
                failures: c.failures.saturating_add(1),
            },
            _ => Counter {
                window_start_ms: now_ms,
                failures: 1,
            },
        }
    }

    /// Whether a stored counter is over (nothing left to remember) at `now_ms`.
    pub fn is_stale(&self, counter: Counter, now_ms: i64) -> bool {
        now_ms >= counter.window_start_ms.saturating_add(self.window_ms())
    }

    pub fn validate(&self, name: &str) -> Result<(), String> {
        if self.failures_max == 0 || self.window_s == 0 {
            return Err(format!(
                "{name}: failures_max and window_s must both be positive"
            ));
        }
        Ok(())
    }
}

/// One source's window: when it started and the failures counted in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    pub window_start_ms: i64,
    pub failures: u32,
}

/// Who sent a code look-up. The key is what the store keeps the counter under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source<'a> {
    /// A merchant client (its `Client-Id`): bounds everything it sends, whatever merchant and
    /// terminal ids it names.
    Client { client: &'a str },
    /// One merchant of a client (at the wallet: of an acquirer).
    Merchant { client: &'a str, merchant: &'a str },
    /// One terminal of a merchant.
    Terminal {
        client: &'a str,
        merchant: &'a str,
        terminal: &'a str,
    },
}

impl<'a> Source<'a> {
    /// A request's merchant and, when the request names one, its terminal: the sources both
    /// services count per merchant.
    pub fn of_merchant(
        client: &'a str,
        merchant: &'a str,
        terminal: Option<&'a str>,
    ) -> impl Iterator<Item = Source<'a>> {
        let terminal = terminal
            .filter(|t| !t.is_empty())
            .map(|terminal| Source::Terminal {
                client,
                merchant,
                terminal,
            });
        std::iter::once(Source::Merchant { client, merchant }).chain(terminal)
    }

    /// The store key; the parts are separated by a byte no id contains.
    pub fn key(&self) -> String {
        match self {
            Source::Client { client } => format!("c\u{1f}{client}"),
            Source::Merchant { client, merchant } => format!("m\u{1f}{client}\u{1f}{merchant}"),
            Source::Terminal {
                client,
                merchant,
                terminal,
            } => format!("t\u{1f}{client}\u{1f}{merchant}\u{1f}{terminal}"),
        }
    }
}

impl fmt::Display for Source<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Client { client } => write!(f, "client {client}"),
            Source::Merchant { merchant, .. } => write!(f, "merchant {merchant}"),
            Source::Terminal {
                merchant, terminal, ..
            } => write!(f, "terminal {terminal} of merchant {merchant}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const L: SourceLimit = SourceLimit {
        failures_max: 3,
        window_s: 10,
    };

    #[test]
    fn a_source_is_refused_at_its_limit_until_the_window_closes() {
        let mut c = None;
        for t in [0, 1_000, 2_000] {
            assert_eq!(L.refusal(c, t), None);
            c = Some(L.after_failure(c, t));
        }
        assert_eq!(L.refusal(c, 2_500), Some(7_500));
        assert_eq!(L.refusal(c, 9_999), Some(1));
        assert_eq!(L.refusal(c, 10_000), None);
        let next = L.after_failure(c, 10_000);
        assert_eq!(
            next,
            Counter {
                window_start_ms: 10_000,
                failures: 1
            }
        );
        assert!(L.is_stale(next, 20_000));
        assert!(!L.is_stale(next, 19_999));
    }

    #[test]
    fn keys_keep_sources_apart() {
        let a = Source::Merchant {
            client: "c1",
            merchant: "m1",
        };
        let b = Source::Terminal {
            client: "c1",
            merchant: "m1",
            terminal: "",
        };
        let c = Source::Client { client: "c1" };
        assert_ne!(a.key(), b.key());
        assert_ne!(a.key(), c.key());
        assert_eq!(b.to_string(), "terminal  of merchant m1");
        assert_eq!(
            Source::of_merchant("c1", "m1", Some("")).collect::<Vec<_>>(),
            std::slice::from_ref(&a)
        );
        assert_eq!(Source::of_merchant("c1", "m1", Some("t")).count(), 2);
        assert_eq!(
            L.refusal_message(&c, 7_001),
            "too many invalid payment codes from client c1 (at most 3 in 10 s); try again in 8 s"
        );
    }

    proptest! {
        /// However failures are timed, a source never has more than `max · ceil(period/window)`
        /// failures counted (i.e. allowed) in a period, compared with a naive replay.
        #[test]
        fn allowed_failures_stay_within_the_fixed_window_bound(
            gaps_ms in prop::collection::vec(0i64..4_000, 1..300),
        ) {
            let mut c = None;
            let mut allowed = Vec::new();
            let mut t = 0i64;
            for g in gaps_ms {
                t += g;
                if L.refusal(c, t).is_none() {
                    c = Some(L.after_failure(c, t));
                    allowed.push(t);
                }
            }
            let period_ms = 30_000i64;
            for (i, &start) in allowed.iter().enumerate() {
                let n = allowed[i..].iter().take_while(|&&x| x < start + period_ms).count() as u64;
                prop_assert!(n <= L.failures_in_period_max(30));
            }
        }
    }
}
