//! The wallet's payment state machine: one enum of stages, one of events, one function. The
//! `match` has no catch-all arm, so a new stage or event fails to compile until every pair is
//! decided. A transition returns what to write as data ([`Effect`]); the use cases in
//! `payments` and `challenges` write the row and every effect in the same write job that read
//! the stage, which is what makes "confirm versus cancel" and "refund twice" end with one outcome.
//!
//! The stored `state` column has four values ([`PayState`]); the stage adds what the other
//! columns say (cancelled, reversed, partly refunded), because those decide what a cancel or a
//! refund may still do. Pure: no I/O, no clock.

use paycode_core::ResultCode;
use std::fmt;

/// The stored state of a payment at the wallet (the `payments.state` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum PayState {
    /// Waiting for the user's password.
    Processing,
    Success,
    Fail,
    /// Cancelled by the acquirer before the wallet ever saw a `pay`: a later `pay` fails.
    Tombstone,
}

/// Where a payment is in its life: the stored state and the facts that decide what may follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Stage {
    /// No row yet: the `pay` (or a cancel that overtook it) is being decided.
    Absent,
    /// A password challenge waits for the user.
    Pending,
    /// Paid, nothing refunded.
    Paid,
    /// Paid and partly (or wholly) refunded: it can no longer be cancelled.
    Refunded,
    /// Paid, then cancelled by the acquirer: the amount went back to the user.
    Reversed,
    /// Failed; the acquirer has not cancelled it.
    Failed,
    /// Failed and cancelled by the acquirer.
    Closed,
    /// Cancelled before the wallet saw the payment.
    Tombstone,
}

impl Stage {
    /// The stage of a stored payment.
    pub(crate) fn of(state: PayState, cancelled: bool, reversed: bool, refunded: bool) -> Stage {
        match state {
            PayState::Processing => Stage::Pending,
            PayState::Success if reversed => Stage::Reversed,
            PayState::Success if refunded => Stage::Refunded,
            PayState::Success => Stage::Paid,
            PayState::Fail if cancelled => Stage::Closed,
            PayState::Fail => Stage::Failed,
            PayState::Tombstone => Stage::Tombstone,
        }
    }

    /// The `state` column of a payment at this stage; `None` for [`Stage::Absent`], which is
    /// never stored (no transition leads to it).
    pub(crate) fn stored(self) -> Option<PayState> {
        match self {
            Stage::Absent => None,
            Stage::Pending => Some(PayState::Processing),
            Stage::Paid | Stage::Refunded | Stage::Reversed => Some(PayState::Success),
            Stage::Failed | Stage::Closed => Some(PayState::Fail),
            Stage::Tombstone => Some(PayState::Tombstone),
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// What happens to a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Event {
    /// The `pay` passed every check and needs no password.
    Approved,
    /// The `pay` needs the user's password.
    Challenged,
    /// The `pay`, or the confirmation of a challenge, is refused with this code.
    Refused(ResultCode),
    /// The user gave the right password and the limits still allow the payment.
    Confirmed,
    /// The user declined the challenge.
    Declined,
    /// The challenge's deadline passed.
    TimedOut,
    /// The acquirer cancelled (voids a pending or failed payment, reverses a paid one).
    Cancelled,
    /// The acquirer refunds part of a paid payment.
    Refunded { amount_minor: i64 },
}

impl Event {
    /// The result code a payment failed by this event keeps.
    pub(crate) fn failure_code(self) -> Option<ResultCode> {
        match self {
            Event::Refused(code) => Some(code),
            Event::Declined => Some(ResultCode::USER_DECLINED),
            Event::TimedOut | Event::Cancelled => Some(ResultCode::ORDER_IS_CLOSED),
            Event::Approved | Event::Challenged | Event::Confirmed | Event::Refunded { .. } => None,
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Refused(code) => write!(f, "Refused({code})"),
            Event::Refunded { .. } => f.write_str("Refunded"),
            e => fmt::Debug::fmt(e, f),
        }
    }
}

/// What must be written together with the new stage, in this order after the row itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Effect {
    /// Result `SUCCESS`; paid and finished now.
    RecordSuccess,
    /// Result `PAYMENT_IN_PROCESS`: the challenge waits for the password.
    RecordPending,
    /// Result = the event's failure code and message; finished now.
    RecordFailure,
    /// Cancelled now (kept, so a repeated cancel answers the same time).
    RecordCancel,
    /// The user pays the amount (ledger `PAYMENT`).
    Debit,
    /// The whole amount goes back to the user (ledger `REVERSAL`); reversed now.
    CreditReversal,
    /// The refund's amount goes back to the user (ledger `REFUND`); the refunded total grows.
    CreditRefund,
    /// `notifyPayment` to the acquirer (outbox): the outcome was not in a synchronous answer.
    NotifyAcquirer,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Applied {
        next: Stage,
        effects: &'static [Effect],
    },
    /// Nothing changes: a repeat, or an event that came too late. Answer from the stored row.
    Unchanged,
    /// The request is refused with this code and nothing changes.
    Refused(ResultCode),
}

/// The wallet's payment transition table.
pub(crate) fn transition(stage: Stage, event: Event) -> Outcome {
    use Effect::*;
    use Event as E;
    use Stage as S;
    let applied = |next, effects| Outcome::Applied { next, effects };
    match (stage, event) {
        (S::Absent, E::Approved) => applied(S::Paid, &[RecordSuccess, Debit]),
        (S::Absent, E::Challenged) => applied(S::Pending, &[RecordPending]),
        (S::Absent, E::Refused(_)) => applied(S::Failed, &[RecordFailure]),
        (S::Absent, E::Cancelled) => applied(S::Tombstone, &[RecordFailure, RecordCancel]),
        (S::Absent, E::Confirmed | E::Declined | E::TimedOut | E::Refunded { .. }) => {
            Outcome::Refused(ResultCode::ORDER_NOT_EXIST)
        }
        // A `pay` for a stored payment is a replay: it is answered before the table.
        (S::Pending, E::Approved | E::Challenged) => Outcome::Unchanged,
        (S::Pending, E::Refused(_) | E::Declined | E::TimedOut) => {
            applied(S::Failed, &[RecordFailure, NotifyAcquirer])
        }
        (S::Pending, E::Confirmed) => applied(S::Paid, &[RecordSuccess, Debit, NotifyAcquirer]),
        // The acquirer asked: it learns the outcome from the cancel's answer.
        (S::Pending, E::Cancelled) => applied(S::Closed, &[RecordFailure, RecordCancel]),
        (S::Pending, E::Refunded { .. }) => Outcome::Refused(ResultCode::ORDER_STATUS_INVALID),
        (S::Paid, E::Cancelled) => applied(S::Reversed, &[CreditReversal, RecordCancel]),
        (S::Paid | S::Refunded, E::Refunded { .. }) => applied(S::Refunded, &[CreditRefund]),
        (S::Refunded, E::Cancelled) => Outcome::Refused(ResultCode::PROCESS_FAIL),
        (S::Failed, E::Cancelled) => applied(S::Closed, &[RecordCancel]),
        (S::Reversed | S::Failed | S::Closed | S::Tombstone, E::Refunded { .. }) => {
            Outcome::Refused(ResultCode::ORDER_STATUS_INVALID)
        }
        (S::Reversed | S::Closed | S::Tombstone, E::Cancelled) => Outcome::Unchanged,
        // Late answers to a challenge that is already final, and replays of the `pay`.
        (
            S::Paid | S::Refunded | S::Reversed | S::Failed | S::Closed | S::Tombstone,
            E::Approved | E::Challenged | E::Refused(_) | E::Confirmed | E::Declined | E::TimedOut,
        ) => Outcome::Unchanged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAGES: [Stage; 8] = [
        Stage::Absent,
        Stage::Pending,
        Stage::Paid,
        Stage::Refunded,
        Stage::Reversed,
        Stage::Failed,
        Stage::Closed,
        Stage::Tombstone,
    ];

    const EVENTS: [Event; 8] = [
        Event::Approved,
        Event::Challenged,
        Event::Refused(ResultCode::USER_BALANCE_NOT_ENOUGH),
        Event::Confirmed,
        Event::Declined,
        Event::TimedOut,
        Event::Cancelled,
        Event::Refunded { amount_minor: 1 },
    ];

    fn render_table() -> String {
        let mut out = String::new();
        for s in STAGES {
            for e in EVENTS {
                let cell = match transition(s, e) {
                    Outcome::Applied { next, effects } => format!("-> {next} {effects:?}"),
                    Outcome::Unchanged => "unchanged".to_string(),
                    Outcome::Refused(code) => format!("refused {code}"),
                };
                out.push_str(&format!("{s} + {e}: {cell}\n"));
            }
        }
        out
    }

    /// The whole table, as documentation and as a guard against accidental change.
    #[test]
    fn wallet_payment_transition_table() {
        let expected = "\
Absent + Approved: -> Paid [RecordSuccess, Debit]
Absent + Challenged: -> Pending [RecordPending]
Absent + Refused(USER_BALANCE_NOT_ENOUGH): -> Failed [RecordFailure]
Absent + Confirmed: refused ORDER_NOT_EXIST
Absent + Declined: refused ORDER_NOT_EXIST
Absent + TimedOut: refused ORDER_NOT_EXIST
Absent + Cancelled: -> Tombstone [RecordFailure, RecordCancel]
Absent + Refunded: refused ORDER_NOT_EXIST
Pending + Approved: unchanged
Pending + Challenged: unchanged
Pending + Refused(USER_BALANCE_NOT_ENOUGH): -> Failed [RecordFailure, NotifyAcquirer]
Pending + Confirmed: -> Paid [RecordSuccess, Debit, NotifyAcquirer]
Pending + Declined: -> Failed [RecordFailure, NotifyAcquirer]
Pending + TimedOut: -> Failed [RecordFailure, NotifyAcquirer]
Pending + Cancelled: -> Closed [RecordFailure, RecordCancel]
Pending + Refunded: refused ORDER_STATUS_INVALID
Paid + Approved: unchanged
Paid + Challenged: unchanged
Paid + Refused(USER_BALANCE_NOT_ENOUGH): unchanged
Paid + Confirmed: unchanged
Paid + Declined: unchanged
Paid + TimedOut: unchanged
Paid + Cancelled: -> Reversed [CreditReversal, RecordCancel]
Paid + Refunded: -> Refunded [CreditRefund]
Refunded + Approved: unchanged
Refunded + Challenged: unchanged
Refunded + Refused(USER_BALANCE_NOT_ENOUGH): unchanged
Refunded + Confirmed: unchanged
Refunded + Declined: unchanged
Refunded + TimedOut: unchanged
Refunded + Cancelled: refused PROCESS_FAIL
Refunded + Refunded: -> Refunded [CreditRefund]
Reversed + Approved: unchanged
Reversed + Challenged: unchanged
Reversed + Refused(USER_BALANCE_NOT_ENOUGH): unchanged
Reversed + Confirmed: unchanged
Reversed + Declined: unchanged
Reversed + TimedOut: unchanged
Reversed + Cancelled: unchanged
Reversed + Refunded: refused ORDER_STATUS_INVALID
Failed + Approved: unchanged
Failed + Challenged: unchanged
Failed + Refused(USER_BALANCE_NOT_ENOUGH): unchanged
Failed + Confirmed: unchanged
Failed + Declined: unchanged
Failed + TimedOut: unchanged
Failed + Cancelled: -> Closed [RecordCancel]
Failed + Refunded: refused ORDER_STATUS_INVALID
Closed + Approved: unchanged
Closed + Challenged: unchanged
Closed + Refused(USER_BALANCE_NOT_ENOUGH): unchanged
Closed + Confirmed: unchanged
Closed + Declined: unchanged
Closed + TimedOut: unchanged
Closed + Cancelled: unchanged
Closed + Refunded: refused ORDER_STATUS_INVALID
Tombstone + Approved: unchanged
Tombstone + Challenged: unchanged
Tombstone + Refused(USER_BALANCE_NOT_ENOUGH): unchanged
Tombstone + Confirmed: unchanged
Tombstone + Declined: unchanged
Tombstone + TimedOut: unchanged
Tombstone + Cancelled: unchanged
Tombstone + Refunded: refused ORDER_STATUS_INVALID
";
        assert_eq!(render_table(), expected);
    }

    /// Every transition is consistent with what the row will say afterwards: a failure is
    /// written only by an event that names its code, money moves at most once per event, the
    /// acquirer is told only of outcomes it did not ask for, and no transition leads back to
    /// "no row".
    #[test]
    fn effects_agree_with_the_stages() {
        for s in STAGES {
            for e in EVENTS {
                let Outcome::Applied { next, effects } = transition(s, e) else {
                    continue;
                };
                let has = |x: Effect| effects.contains(&x);
                assert!(next.stored().is_some(), "{s} + {e} leads to {next}");
                assert!(!has(Effect::RecordFailure) || e.failure_code().is_some());
                let n_money = [Effect::Debit, Effect::CreditReversal, Effect::CreditRefund]
                    .iter()
                    .filter(|x| has(**x))
                    .count();
                assert!(n_money <= 1, "{s} + {e} moves money twice");
                assert_eq!(has(Effect::Debit), next == Stage::Paid, "{s} + {e}");
                if has(Effect::NotifyAcquirer) {
                    assert_eq!(s, Stage::Pending, "only a challenge ends asynchronously");
                    assert!(matches!(next, Stage::Paid | Stage::Failed));
                }
                if has(Effect::RecordCancel) {
                    assert_eq!(e, Event::Cancelled);
                }
            }
        }
    }

    /// A stored row maps to exactly the stage whose stored state it has.
    #[test]
    fn stages_round_trip_through_the_stored_state() {
        for state in [
            PayState::Processing,
            PayState::Success,
            PayState::Fail,
            PayState::Tombstone,
        ] {
            for facts in 0..8u8 {
                let stage = Stage::of(state, facts & 1 != 0, facts & 2 != 0, facts & 4 != 0);
                assert_eq!(stage.stored(), Some(state), "{state:?} {facts}");
            }
        }
    }

    /// Along any sequence of events, money nets out: once reversed, the user got back exactly
    /// what they paid, and nothing is debited after a payment became final.
    #[test]
    fn money_nets_out_on_every_path() {
        fn walk(stage: Stage, depth: usize, debits: i32, credits: i32) {
            if depth == 0 {
                return;
            }
            for e in EVENTS {
                if let Outcome::Applied { next, effects } = transition(stage, e) {
                    let d = debits + i32::from(effects.contains(&Effect::Debit));
                    let c = credits + i32::from(effects.contains(&Effect::CreditReversal));
                    assert!(d <= 1, "debited twice reaching {next}");
                    assert!(c <= d, "reversed more than paid reaching {next}");
                    if next == Stage::Reversed {
                        assert_eq!(c, d);
                    }
                    walk(next, depth - 1, d, c);
                }
            }
        }
        walk(Stage::Absent, 6, 0, 0);
    }
}
