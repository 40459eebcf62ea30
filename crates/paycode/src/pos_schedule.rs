//! The merchant-side best practice of SPEC §2.8 as one pure state machine, so that the POS
//! follows it exactly and tests check it without a clock or a network.
//!
//! On `U`, or no answer within the pay timeout: inquire on a schedule (by default after
//! 2,3,3,5,5,5,5,5,5 s, about 40 s in all); stop on a final state; if the payment is still
//! processing at the end, cancel, retrying the cancel on `U` after 2,3,3,5,5 s. An inquiry that
//! answers `ORDER_NOT_EXIST` means "not landed yet": keep polling.
//!
//! The caller performs each [`Action`] (wait, then call) and feeds the answer back as an
//! [`Event`]; [`Machine::next`] is one `match` over (phase, event) with no catch-all arm.

/// Waits before each inquiry, in milliseconds (SPEC §2.8).
pub const DEFAULT_INQUIRY_SCHEDULE_MS: [u64; 9] = [
    2_000, 3_000, 3_000, 5_000, 5_000, 5_000, 5_000, 5_000, 5_000,
];
/// Waits before each cancel retry after a `U`, in milliseconds (SPEC §2.8).
pub const DEFAULT_CANCEL_RETRY_MS: [u64; 5] = [2_000, 3_000, 3_000, 5_000, 5_000];
/// How long the POS waits for the pay answer before treating it as unknown (SPEC §2.8).
pub const DEFAULT_PAY_TIMEOUT_MS: u64 = 5_000;

/// The two schedules; both bounded, so the whole flow is bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub inquiry_ms: Vec<u64>,
    pub cancel_retry_ms: Vec<u64>,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            inquiry_ms: DEFAULT_INQUIRY_SCHEDULE_MS.to_vec(),
            cancel_retry_ms: DEFAULT_CANCEL_RETRY_MS.to_vec(),
        }
    }
}

/// What the acquirer said to `pay`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayAnswer {
    Success,
    Failed {
        code: String,
        message: String,
    },
    /// `U` (e.g. `PAYMENT_IN_PROCESS`), or no answer in time, or an answer that cannot be
    /// trusted (bad signature): the outcome must be found out by inquiry.
    Unknown,
}

/// What an inquiry said about the payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InquiryAnswer {
    Success,
    Failed {
        code: String,
        message: String,
    },
    Cancelled,
    Processing,
    /// `ORDER_NOT_EXIST`: the pay has not landed (yet).
    NotFound,
    /// No answer, `U`, or an inquiry failure: nothing learnt.
    Unknown,
}

/// What a cancel said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelAnswer {
    Cancelled,
    /// `ORDER_NOT_EXIST`: the payment never reached the acquirer, so nothing was charged.
    NotFound,
    /// Any other `F` (e.g. the payment failed meanwhile, or is outside the cancel window).
    Failed {
        code: String,
        message: String,
    },
    /// `U` or no answer: retry with the same parameters.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Pay(PayAnswer),
    Inquiry(InquiryAnswer),
    Cancel(CancelAnswer),
}

/// How the flow ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Paid,
    Failed {
        code: String,
        message: String,
    },
    /// Cancelled by the POS (or by someone else) before or after it completed: nothing charged.
    Cancelled,
    /// The POS gave up knowing: the whole schedule passed and every cancel attempt was `U`, or
    /// the cancel failed for a reason that leaves the state unclear.
    Unknown {
        reason: String,
    },
}

/// The next thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Inquire {
        wait_ms: u64,
        attempt_idx: usize,
        n_attempts: usize,
    },
    Cancel {
        wait_ms: u64,
        attempt_idx: usize,
        n_attempts: usize,
    },
    Finish(Outcome),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Paying,
    /// `n_done` inquiries answered so far.
    Inquiring {
        n_done: usize,
    },
    /// `n_done` cancel attempts answered so far.
    Cancelling {
        n_done: usize,
    },
    Done,
}

/// The §2.8 flow of one payment.
#[derive(Debug, Clone)]
pub struct Machine {
    schedule: Schedule,
    phase: Phase,
}

impl Machine {
    pub fn new(schedule: Schedule) -> Machine {
        Machine {
            schedule,
            phase: Phase::Paying,
        }
    }

    fn inquire(&mut self, n_done: usize) -> Action {
        match self.schedule.inquiry_ms.get(n_done) {
            Some(&wait_ms) => {
                self.phase = Phase::Inquiring { n_done };
                Action::Inquire {
                    wait_ms,
                    attempt_idx: n_done,
                    n_attempts: self.schedule.inquiry_ms.len(),
                }
            }
            // Still processing after the whole schedule: cancel at once.
            None => self.cancel(0),
        }
    }

    fn cancel(&mut self, n_done: usize) -> Action {
        let n_attempts = self.schedule.cancel_retry_ms.len() + 1;
        let wait_ms = match n_done {
            0 => Some(0),
            n => self.schedule.cancel_retry_ms.get(n - 1).copied(),
        };
        match wait_ms {
            Some(wait_ms) => {
                self.phase = Phase::Cancelling { n_done };
                Action::Cancel {
                    wait_ms,
                    attempt_idx: n_done,
                    n_attempts,
                }
            }
            None => self.finish(Outcome::Unknown {
                reason: format!(
                    "the payment was still processing after every inquiry and {n_attempts} cancel attempts had no definite answer"
                ),
            }),
        }
    }

    fn finish(&mut self, outcome: Outcome) -> Action {
        self.phase = Phase::Done;
        Action::Finish(outcome)
    }

    /// Feeds the answer to the last action (or to the pay) and returns the next action.
    /// An event that does not belong to the current phase (a caller bug) ends the flow as
    /// unknown rather than guessing.
    pub fn next(&mut self, event: Event) -> Action {
        match (self.phase, event) {
            (Phase::Paying, Event::Pay(PayAnswer::Success)) => self.finish(Outcome::Paid),
            (Phase::Paying, Event::Pay(PayAnswer::Failed { code, message })) => {
                self.finish(Outcome::Failed { code, message })
            }
            (Phase::Paying, Event::Pay(PayAnswer::Unknown)) => self.inquire(0),

            (Phase::Inquiring { .. }, Event::Inquiry(InquiryAnswer::Success)) => {
                self.finish(Outcome::Paid)
            }
            (Phase::Inquiring { .. }, Event::Inquiry(InquiryAnswer::Failed { code, message })) => {
                self.finish(Outcome::Failed { code, message })
            }
            (Phase::Inquiring { .. }, Event::Inquiry(InquiryAnswer::Cancelled)) => {
                self.finish(Outcome::Cancelled)
            }
            (
                Phase::Inquiring { n_done },
                Event::Inquiry(
                    InquiryAnswer::Processing | InquiryAnswer::NotFound | InquiryAnswer::Unknown,
                ),
            ) => self.inquire(n_done + 1),

            (Phase::Cancelling { .. }, Event::Cancel(CancelAnswer::Cancelled)) => {
                self.finish(Outcome::Cancelled)
            }
            (Phase::Cancelling { .. }, Event::Cancel(CancelAnswer::NotFound)) => {
                self.finish(Outcome::Failed {
                    code: "ORDER_NOT_EXIST".to_string(),
                    message: "the payment never reached the acquirer; nothing was charged"
                        .to_string(),
                })
            }
            (Phase::Cancelling { .. }, Event::Cancel(CancelAnswer::Failed { code, message })) => {
                self.finish(Outcome::Unknown {
                    reason: format!("the cancel was refused: {code} ({message}); check with `paycode pos status`"),
                })
            }
            (Phase::Cancelling { n_done }, Event::Cancel(CancelAnswer::Unknown)) => {
                self.cancel(n_done + 1)
            }

            (Phase::Paying, Event::Inquiry(_) | Event::Cancel(_))
            | (Phase::Inquiring { .. }, Event::Pay(_) | Event::Cancel(_))
            | (Phase::Cancelling { .. }, Event::Pay(_) | Event::Inquiry(_))
            | (Phase::Done, _) => self.finish(Outcome::Unknown {
                reason: "internal error: an answer arrived out of order".to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn short() -> Schedule {
        Schedule {
            inquiry_ms: vec![10, 20, 30],
            cancel_retry_ms: vec![1, 2],
        }
    }

    /// Runs the machine over `events` and returns every action it asked for.
    fn check(schedule: Schedule, events: Vec<Event>, expect: Vec<Action>) {
        let mut m = Machine::new(schedule);
        let actions: Vec<Action> = events.into_iter().map(|e| m.next(e)).collect();
        assert_eq!(actions, expect);
    }

    fn inquire(wait_ms: u64, attempt_idx: usize) -> Action {
        Action::Inquire {
            wait_ms,
            attempt_idx,
            n_attempts: 3,
        }
    }

    fn cancel(wait_ms: u64, attempt_idx: usize) -> Action {
        Action::Cancel {
            wait_ms,
            attempt_idx,
            n_attempts: 3,
        }
    }

    #[test]
    fn default_schedule_is_the_spec_one_about_forty_seconds() {
        let s = Schedule::default();
        assert_eq!(
            s.inquiry_ms,
            vec![
                2_000, 3_000, 3_000, 5_000, 5_000, 5_000, 5_000, 5_000, 5_000
            ]
        );
        // 38 s of inquiries after the 5 s pay timeout: "about 40 s in all".
        assert_eq!(s.inquiry_ms.iter().sum::<u64>(), 38_000);
        assert_eq!(s.cancel_retry_ms, vec![2_000, 3_000, 3_000, 5_000, 5_000]);
    }

    #[test]
    fn success_or_failure_at_pay_ends_at_once() {
        check(
            short(),
            vec![Event::Pay(PayAnswer::Success)],
            vec![Action::Finish(Outcome::Paid)],
        );
        let failed = PayAnswer::Failed {
            code: "USER_BALANCE_NOT_ENOUGH".into(),
            message: "m".into(),
        };
        check(
            short(),
            vec![Event::Pay(failed)],
            vec![Action::Finish(Outcome::Failed {
                code: "USER_BALANCE_NOT_ENOUGH".into(),
                message: "m".into(),
            })],
        );
    }

    #[test]
    fn unknown_pay_is_inquired_until_final() {
        check(
            short(),
            vec![
                Event::Pay(PayAnswer::Unknown),
                Event::Inquiry(InquiryAnswer::NotFound),
                Event::Inquiry(InquiryAnswer::Processing),
                Event::Inquiry(InquiryAnswer::Success),
            ],
            vec![
                inquire(10, 0),
                inquire(20, 1),
                inquire(30, 2),
                Action::Finish(Outcome::Paid),
            ],
        );
        check(
            short(),
            vec![
                Event::Pay(PayAnswer::Unknown),
                Event::Inquiry(InquiryAnswer::Cancelled),
            ],
            vec![inquire(10, 0), Action::Finish(Outcome::Cancelled)],
        );
    }

    #[test]
    fn still_processing_after_the_schedule_is_cancelled_at_once() {
        check(
            short(),
            vec![
                Event::Pay(PayAnswer::Unknown),
                Event::Inquiry(InquiryAnswer::Processing),
                Event::Inquiry(InquiryAnswer::Unknown),
                Event::Inquiry(InquiryAnswer::Processing),
                Event::Cancel(CancelAnswer::Cancelled),
            ],
            vec![
                inquire(10, 0),
                inquire(20, 1),
                inquire(30, 2),
                cancel(0, 0),
                Action::Finish(Outcome::Cancelled),
            ],
        );
    }

    #[test]
    fn cancel_is_retried_on_unknown_then_gives_up_as_unknown() {
        let mut m = Machine::new(short());
        m.next(Event::Pay(PayAnswer::Unknown));
        for _ in 0..3 {
            m.next(Event::Inquiry(InquiryAnswer::Processing));
        }
        assert_eq!(m.next(Event::Cancel(CancelAnswer::Unknown)), cancel(1, 1));
        assert_eq!(m.next(Event::Cancel(CancelAnswer::Unknown)), cancel(2, 2));
        assert!(matches!(
            m.next(Event::Cancel(CancelAnswer::Unknown)),
            Action::Finish(Outcome::Unknown { .. })
        ));
    }

    #[test]
    fn cancel_of_a_payment_that_never_landed_is_a_failure_and_a_refused_cancel_is_unknown() {
        let empty = Schedule {
            inquiry_ms: vec![],
            cancel_retry_ms: vec![],
        };
        let mut m = Machine::new(empty.clone());
        assert_eq!(
            m.next(Event::Pay(PayAnswer::Unknown)),
            Action::Cancel {
                wait_ms: 0,
                attempt_idx: 0,
                n_attempts: 1
            }
        );
        assert!(matches!(
            m.next(Event::Cancel(CancelAnswer::NotFound)),
            Action::Finish(Outcome::Failed { .. })
        ));
        let mut m = Machine::new(empty);
        m.next(Event::Pay(PayAnswer::Unknown));
        assert!(matches!(
            m.next(Event::Cancel(CancelAnswer::Failed {
                code: "PROCESS_FAIL".into(),
                message: String::new()
            })),
            Action::Finish(Outcome::Unknown { .. })
        ));
    }

    #[test]
    fn out_of_order_answers_end_as_unknown() {
        let mut m = Machine::new(short());
        assert!(matches!(
            m.next(Event::Inquiry(InquiryAnswer::Success)),
            Action::Finish(Outcome::Unknown { .. })
        ));
        let mut m = Machine::new(short());
        m.next(Event::Pay(PayAnswer::Success));
        assert!(matches!(
            m.next(Event::Pay(PayAnswer::Success)),
            Action::Finish(Outcome::Unknown { .. })
        ));
    }
}
