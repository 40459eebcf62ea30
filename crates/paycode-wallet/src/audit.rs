//! The wallet's audit: re-checks its invariants from the stored rows. Per user, balance = sum of
//! ledger rows, never negative, and the daily totals agree with the payments; per payment, the
//! ledger rows match its state (one debit when paid, one credit back when reversed, refund
//! credits = refunded total ≤ paid).

use crate::payment_state::PayState;
use crate::store;
use crate::{Inner, WalletError};
use std::sync::Arc;

/// One violated invariant found by [`crate::Wallet::audit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFinding {
    pub subject: String,
    pub problem: String,
}

pub(crate) async fn audit(inner: &Arc<Inner>) -> Result<Vec<AuditFinding>, WalletError> {
    inner
        .read_store(|c| {
            let mut findings = Vec::new();
            for u in store::audit::user_sums(c)? {
                let (name, balance, sum) = (u.name, u.balance_minor, u.ledger_sum_minor);
                if balance != sum {
                    findings.push(AuditFinding {
                        subject: format!("user {name}"),
                        problem: format!("balance {balance} but ledger sums to {sum}"),
                    });
                }
                if balance < 0 {
                    findings.push(AuditFinding {
                        subject: format!("user {name}"),
                        problem: format!("negative balance {balance}"),
                    });
                }
            }
            // The daily totals the limit check reads agree with the payments they summarise.
            for d in store::audit::daily_mismatches(c)? {
                findings.push(AuditFinding {
                    subject: format!("user {}", d.user_name),
                    problem: format!(
                        "day {}: daily total {} but its payments sum to {}",
                        d.day, d.stored_minor, d.expected_minor
                    ),
                });
            }
            for p in store::audit::payment_sums(c)? {
                let mut bad = |problem: String| {
                    findings.push(AuditFinding {
                        subject: format!("payment {}", p.payment_request_id),
                        problem,
                    })
                };
                let (amount, refunded) = (p.amount_minor, p.refunded_minor);
                let paid = p.state == PayState::Success;
                let (want_debit, want_n) = if paid { (-amount, 1) } else { (0, 0) };
                if p.debit_minor != want_debit || p.n_debits != want_n {
                    bad(format!(
                        "state {:?} but {} debit rows summing to {}",
                        p.state, p.n_debits, p.debit_minor
                    ));
                }
                let want_reversal = if p.reversed { amount } else { 0 };
                if p.reversal_minor != want_reversal {
                    bad(format!(
                        "reversal credits {}, expected {want_reversal}",
                        p.reversal_minor
                    ));
                }
                if p.refund_credit_minor != refunded || p.refund_rows_minor != refunded {
                    bad(format!(
                        "refunded {refunded}, ledger {}, refund rows {}",
                        p.refund_credit_minor, p.refund_rows_minor
                    ));
                }
                if refunded + want_reversal > amount.max(0) && paid {
                    bad(format!(
                        "refunds {refunded} plus reversal {want_reversal} exceed paid {amount}"
                    ));
                }
            }
            Ok(findings)
        })
        .await
}
