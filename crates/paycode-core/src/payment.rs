//! The acquirer's payment and refund state machines: one enum of states, one of events, one
//! function each. The `match` has no catch-all arm, so a new state or event fails to compile
//! until every pair is decided. A transition returns its effects as data; the service writes the
//! new state and all effects in one database transaction.
//!
//! The wallet is the arbiter of "cancel versus confirm": it serializes the two, so a cancel it
//! confirms either voided a pending payment or reversed a paid one. The acquirer learns outcomes
//! in any order (synchronous answer, inquiry, `notifyPayment`), so events that arrive after a
//! final state are either benign repeats ([`Outcome::Ignored`]) or contradictions
//! ([`Outcome::Conflict`]) that are recorded for operators and change nothing.

use crate::ResultCode;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaymentState {
    Processing,
    Success,
    /// Failed with a reason code.
    Fail(ResultCode),
    Cancelled,
}

impl PaymentState {
    /// The `paymentStatus` wire value.
    pub fn status_str(self) -> &'static str {
        match self {
            PaymentState::Processing => "PROCESSING",
            PaymentState::Success => "SUCCESS",
            PaymentState::Fail(_) => "FAIL",
            PaymentState::Cancelled => "CANCELLED",
        }
    }

    pub fn is_final(self) -> bool {
        !matches!(self, PaymentState::Processing)
    }

    /// Rebuilds a state from its stored status and result code.
    pub fn from_stored(status: &str, code: &str) -> Option<PaymentState> {
        match status {
            "PROCESSING" => Some(PaymentState::Processing),
            "SUCCESS" => Some(PaymentState::Success),
            "FAIL" => ResultCode::parse(code).map(PaymentState::Fail),
            "CANCELLED" => Some(PaymentState::Cancelled),
            _ => None,
        }
    }

    /// The result code a merchant sees for a payment in this state.
    pub fn result_code(self) -> ResultCode {
        match self {
            PaymentState::Processing => ResultCode::PAYMENT_IN_PROCESS,
            PaymentState::Success => ResultCode::SUCCESS,
            PaymentState::Fail(code) => code,
            PaymentState::Cancelled => ResultCode::ORDER_IS_CLOSED,
        }
    }
}

impl fmt::Display for PaymentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PaymentState::Fail(code) => write!(f, "FAIL({code})"),
            s => f.write_str(s.status_str()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaymentEvent {
    /// The wallet reports the user was debited.
    WalletSucceeded,
    /// The wallet reports a final failure (nothing debited).
    WalletFailed(ResultCode),
    /// The wallet confirmed a cancel the merchant asked for (voided or reversed).
    MerchantCancelConfirmed,
    /// The wallet confirmed a cancel the acquirer sent because the payment expired.
    ExpiryCancelConfirmed,
    /// The acquirer's risk rules refused a new payment before any wallet call.
    RiskRejected(ResultCode),
}

impl fmt::Display for PaymentEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PaymentEvent::WalletSucceeded => f.write_str("WalletSucceeded"),
            PaymentEvent::WalletFailed(c) => write!(f, "WalletFailed({c})"),
            PaymentEvent::MerchantCancelConfirmed => f.write_str("MerchantCancelConfirmed"),
            PaymentEvent::ExpiryCancelConfirmed => f.write_str("ExpiryCancelConfirmed"),
            PaymentEvent::RiskRejected(c) => write!(f, "RiskRejected({c})"),
        }
    }
}

/// What must be written together with the new state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effect {
    /// Journal entry: the wallet owes us, we owe the merchant.
    PostPayment,
    /// Journal entry undoing the payment's entry in full.
    PostReversal,
    /// Outbox row: `PAYMENT_RESULT` notification to the merchant.
    NotifyMerchant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied {
        next: PaymentState,
        effects: &'static [Effect],
    },
    /// A repeat or a late message that changes nothing.
    Ignored,
    /// The wallet contradicts a final state: record it for operators, change nothing.
    Conflict(&'static str),
}

/// The payment transition table.
pub fn transition(state: PaymentState, event: PaymentEvent) -> Outcome {
    use Effect::*;
    use PaymentEvent as E;
    use PaymentState as S;
    match (state, event) {
        (S::Processing, E::WalletSucceeded) => Outcome::Applied {
            next: S::Success,
            effects: &[PostPayment, NotifyMerchant],
        },
        (S::Processing, E::WalletFailed(code)) => Outcome::Applied {
            next: S::Fail(code),
            effects: &[NotifyMerchant],
        },
        (S::Processing, E::MerchantCancelConfirmed) => Outcome::Applied {
            next: S::Cancelled,
            effects: &[],
        },
        (S::Processing, E::ExpiryCancelConfirmed) => Outcome::Applied {
            next: S::Fail(ResultCode::ORDER_IS_CLOSED),
            effects: &[NotifyMerchant],
        },
        // Risk decides on a payment being created, before the wallet sees it: nothing was
        // charged, and the merchant learns the outcome like any other failure.
        (S::Processing, E::RiskRejected(code)) => Outcome::Applied {
            next: S::Fail(code),
            effects: &[NotifyMerchant],
        },
        (S::Success | S::Fail(_) | S::Cancelled, E::RiskRejected(_)) => {
            Outcome::Conflict("a risk decision arrives only for a payment being created")
        }
        (S::Success, E::WalletSucceeded) => Outcome::Ignored,
        (S::Success, E::WalletFailed(_)) => {
            Outcome::Conflict("wallet reports failure of a payment it confirmed as paid")
        }
        // A cancel confirmed after success is a full reversal; an expiry cancel can only reach
        // a paid payment when the user's confirmation raced it, and the wallet reversed it.
        (S::Success, E::MerchantCancelConfirmed | E::ExpiryCancelConfirmed) => Outcome::Applied {
            next: S::Cancelled,
            effects: &[PostReversal],
        },
        // Closed by our cancel: the wallet reversed any confirmation that raced it.
        (S::Fail(ResultCode::ORDER_IS_CLOSED), E::WalletSucceeded) => Outcome::Ignored,
        (S::Fail(_), E::WalletSucceeded) => {
            Outcome::Conflict("wallet reports success of a payment it failed")
        }
        (S::Fail(_), E::WalletFailed(_)) => Outcome::Ignored,
        (S::Fail(_), E::MerchantCancelConfirmed | E::ExpiryCancelConfirmed) => Outcome::Ignored,
        // The wallet processed our cancel after (or instead of) the user's confirmation.
        (S::Cancelled, E::WalletSucceeded) => Outcome::Ignored,
        (S::Cancelled, E::WalletFailed(_)) => Outcome::Ignored,
        (S::Cancelled, E::MerchantCancelConfirmed | E::ExpiryCancelConfirmed) => Outcome::Ignored,
    }
}

/// What the merchant's cancel request leads to, decided before any wallet call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelDecision {
    /// Ask the wallet to void or reverse, then apply `MerchantCancelConfirmed`.
    AskWallet,
    /// Nothing to do: answer success (already cancelled, or failed so nothing was charged).
    AlreadyClosed,
    Reject(ResultCode),
}

/// Merchant cancel rules (SPEC §2.5).
pub fn decide_cancel(
    state: PaymentState,
    within_window: bool,
    has_refunds: bool,
) -> CancelDecision {
    match state {
        PaymentState::Processing => CancelDecision::AskWallet,
        PaymentState::Success if has_refunds => CancelDecision::Reject(ResultCode::PROCESS_FAIL),
        PaymentState::Success if !within_window => {
            CancelDecision::Reject(ResultCode::CANCEL_WINDOW_EXCEED)
        }
        PaymentState::Success => CancelDecision::AskWallet,
        PaymentState::Fail(_) | PaymentState::Cancelled => CancelDecision::AlreadyClosed,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefundState {
    Processing,
    Success,
    Fail(ResultCode),
}

impl RefundState {
    pub fn status_str(self) -> &'static str {
        match self {
            RefundState::Processing => "PROCESSING",
            RefundState::Success => "SUCCESS",
            RefundState::Fail(_) => "FAIL",
        }
    }

    pub fn from_stored(status: &str, code: &str) -> Option<RefundState> {
        match status {
            "PROCESSING" => Some(RefundState::Processing),
            "SUCCESS" => Some(RefundState::Success),
            "FAIL" => ResultCode::parse(code).map(RefundState::Fail),
            _ => None,
        }
    }

    pub fn result_code(self) -> ResultCode {
        match self {
            RefundState::Processing => ResultCode::UNKNOWN_EXCEPTION,
            RefundState::Success => ResultCode::SUCCESS,
            RefundState::Fail(code) => code,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundEvent {
    WalletRefunded,
    WalletRefundFailed(ResultCode),
}

/// The refund transition table: `Some(next)` with a journal entry and notification when it
/// reaches success, `None` when the event changes nothing.
pub fn refund_transition(state: RefundState, event: RefundEvent) -> Option<RefundState> {
    match (state, event) {
        (RefundState::Processing, RefundEvent::WalletRefunded) => Some(RefundState::Success),
        (RefundState::Processing, RefundEvent::WalletRefundFailed(c)) => Some(RefundState::Fail(c)),
        (RefundState::Success | RefundState::Fail(_), _) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render_table() -> String {
        let states = [
            PaymentState::Processing,
            PaymentState::Success,
            PaymentState::Fail(ResultCode::USER_BALANCE_NOT_ENOUGH),
            PaymentState::Fail(ResultCode::ORDER_IS_CLOSED),
            PaymentState::Cancelled,
        ];
        let events = [
            PaymentEvent::WalletSucceeded,
            PaymentEvent::WalletFailed(ResultCode::USER_BALANCE_NOT_ENOUGH),
            PaymentEvent::MerchantCancelConfirmed,
            PaymentEvent::ExpiryCancelConfirmed,
            PaymentEvent::RiskRejected(ResultCode::RISK_REJECT),
        ];
        let mut out = String::new();
        for s in states {
            for e in events {
                let cell = match transition(s, e) {
                    Outcome::Applied { next, effects } => format!("-> {next} {effects:?}"),
                    Outcome::Ignored => "ignored".to_string(),
                    Outcome::Conflict(why) => format!("CONFLICT: {why}"),
                };
                out.push_str(&format!("{s} + {e}: {cell}\n"));
            }
        }
        out
    }

    /// The whole table, as documentation and as a guard against accidental change.
    #[test]
    fn payment_transition_table() {
        let expected = "\
PROCESSING + WalletSucceeded: -> SUCCESS [PostPayment, NotifyMerchant]
PROCESSING + WalletFailed(USER_BALANCE_NOT_ENOUGH): -> FAIL(USER_BALANCE_NOT_ENOUGH) [NotifyMerchant]
PROCESSING + MerchantCancelConfirmed: -> CANCELLED []
PROCESSING + ExpiryCancelConfirmed: -> FAIL(ORDER_IS_CLOSED) [NotifyMerchant]
PROCESSING + RiskRejected(RISK_REJECT): -> FAIL(RISK_REJECT) [NotifyMerchant]
SUCCESS + WalletSucceeded: ignored
SUCCESS + WalletFailed(USER_BALANCE_NOT_ENOUGH): CONFLICT: wallet reports failure of a payment it confirmed as paid
SUCCESS + MerchantCancelConfirmed: -> CANCELLED [PostReversal]
SUCCESS + ExpiryCancelConfirmed: -> CANCELLED [PostReversal]
SUCCESS + RiskRejected(RISK_REJECT): CONFLICT: a risk decision arrives only for a payment being created
FAIL(USER_BALANCE_NOT_ENOUGH) + WalletSucceeded: CONFLICT: wallet reports success of a payment it failed
FAIL(USER_BALANCE_NOT_ENOUGH) + WalletFailed(USER_BALANCE_NOT_ENOUGH): ignored
FAIL(USER_BALANCE_NOT_ENOUGH) + MerchantCancelConfirmed: ignored
FAIL(USER_BALANCE_NOT_ENOUGH) + ExpiryCancelConfirmed: ignored
FAIL(USER_BALANCE_NOT_ENOUGH) + RiskRejected(RISK_REJECT): CONFLICT: a risk decision arrives only for a payment being created
FAIL(ORDER_IS_CLOSED) + WalletSucceeded: ignored
FAIL(ORDER_IS_CLOSED) + WalletFailed(USER_BALANCE_NOT_ENOUGH): ignored
FAIL(ORDER_IS_CLOSED) + MerchantCancelConfirmed: ignored
FAIL(ORDER_IS_CLOSED) + ExpiryCancelConfirmed: ignored
FAIL(ORDER_IS_CLOSED) + RiskRejected(RISK_REJECT): CONFLICT: a risk decision arrives only for a payment being created
CANCELLED + WalletSucceeded: ignored
CANCELLED + WalletFailed(USER_BALANCE_NOT_ENOUGH): ignored
CANCELLED + MerchantCancelConfirmed: ignored
CANCELLED + ExpiryCancelConfirmed: ignored
CANCELLED + RiskRejected(RISK_REJECT): CONFLICT: a risk decision arrives only for a payment being created
";
        assert_eq!(render_table(), expected);
    }

    #[test]
    fn every_path_reaches_exactly_one_final_state_and_money_nets_out() {
        // Over all event sequences of length 3, postings net to zero or one payment, and
        // they net to one payment exactly when the final state is SUCCESS.
        let events = [
            PaymentEvent::WalletSucceeded,
            PaymentEvent::WalletFailed(ResultCode::RISK_REJECT),
            PaymentEvent::MerchantCancelConfirmed,
            PaymentEvent::ExpiryCancelConfirmed,
            PaymentEvent::RiskRejected(ResultCode::RISK_REJECT),
        ];
        for a in events {
            for b in events {
                for c in events {
                    let mut state = PaymentState::Processing;
                    let mut net = 0i32;
                    for e in [a, b, c] {
                        if let Outcome::Applied { next, effects } = transition(state, e) {
                            assert!(!state.is_final() || next == PaymentState::Cancelled);
                            for eff in effects {
                                match eff {
                                    Effect::PostPayment => net += 1,
                                    Effect::PostReversal => net -= 1,
                                    Effect::NotifyMerchant => {}
                                }
                            }
                            state = next;
                        }
                        assert!(net == 0 || net == 1);
                        assert_eq!(net == 1, state == PaymentState::Success, "{a} {b} {c}");
                    }
                }
            }
        }
    }

    #[test]
    fn cancel_rules() {
        use CancelDecision::*;
        assert_eq!(
            decide_cancel(PaymentState::Processing, false, false),
            AskWallet
        );
        assert_eq!(decide_cancel(PaymentState::Success, true, false), AskWallet);
        assert_eq!(
            decide_cancel(PaymentState::Success, false, false),
            Reject(ResultCode::CANCEL_WINDOW_EXCEED)
        );
        assert_eq!(
            decide_cancel(PaymentState::Success, true, true),
            Reject(ResultCode::PROCESS_FAIL)
        );
        assert_eq!(
            decide_cancel(PaymentState::Cancelled, true, false),
            AlreadyClosed
        );
    }

    #[test]
    fn refund_reaches_one_final_state() {
        let s = refund_transition(RefundState::Processing, RefundEvent::WalletRefunded).unwrap();
        assert_eq!(s, RefundState::Success);
        assert_eq!(
            refund_transition(s, RefundEvent::WalletRefundFailed(ResultCode::PROCESS_FAIL)),
            None
        );
    }
}
