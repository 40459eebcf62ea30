//! Double-entry journal entries. An entry cannot be built unbalanced: [`JournalEntry::new`]
//! checks that, per currency, debits equal credits, and the fields are private. The ledger is
//! append-only; corrections are reversing entries ([`JournalEntry::reversed`]).
//!
//! Account names are structured text (`kind:owner:currency`), built only by [`Account`], so that
//! the store and `paycode audit` can group by them without a join.

use crate::{Currency, Money};
use std::collections::BTreeMap;
use std::fmt;

/// The accounts of the acquirer's books.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Account {
    /// What a wallet owes the acquirer for payments it confirmed (asset).
    WalletReceivable { wallet: String },
    /// What the acquirer owes a merchant (liability).
    MerchantPayable { merchant: String },
    /// Merchant discount fees earned (revenue).
    FeeRevenue,
    /// The acquirer's position in a currency from conversions.
    FxPosition,
    /// Money paid out to a merchant at settlement.
    SettlementPaid { merchant: String },
    /// Money received from a wallet at clearing.
    WalletCleared { wallet: String },
}

impl Account {
    /// The stored name for this account in `currency`.
    pub fn name(&self, currency: Currency) -> String {
        match self {
            Account::WalletReceivable { wallet } => {
                format!("wallet_receivable:{wallet}:{currency}")
            }
            Account::MerchantPayable { merchant } => {
                format!("merchant_payable:{merchant}:{currency}")
            }
            Account::FeeRevenue => format!("fee_revenue::{currency}"),
            Account::FxPosition => format!("fx_position::{currency}"),
            Account::SettlementPaid { merchant } => {
                format!("settlement_paid:{merchant}:{currency}")
            }
            Account::WalletCleared { wallet } => format!("wallet_cleared:{wallet}:{currency}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Debit,
    Credit,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Debit => "D",
            Side::Credit => "C",
        }
    }

    fn flip(self) -> Side {
        match self {
            Side::Debit => Side::Credit,
            Side::Credit => Side::Debit,
        }
    }
}

/// One line of an entry: a positive amount on one side of one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    account: String,
    side: Side,
    amount: Money,
}

impl Posting {
    pub fn debit(account: &Account, amount: Money) -> Posting {
        Posting {
            account: account.name(amount.currency()),
            side: Side::Debit,
            amount,
        }
    }

    pub fn credit(account: &Account, amount: Money) -> Posting {
        Posting {
            account: account.name(amount.currency()),
            side: Side::Credit,
            amount,
        }
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    pub fn side(&self) -> Side {
        self.side
    }

    pub fn amount(&self) -> Money {
        self.amount
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("an entry needs at least two postings")]
    TooFewPostings,
    #[error("posting amounts must be positive, got {0}")]
    NonPositive(Money),
    #[error("entry does not balance in {currency}: debits {debits_minor}, credits {credits_minor}")]
    Unbalanced {
        currency: Currency,
        debits_minor: i64,
        credits_minor: i64,
    },
    #[error("amount overflows")]
    Overflow,
}

/// A balanced set of postings describing one movement of money.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    kind: &'static str,
    postings: Vec<Posting>,
}

impl JournalEntry {
    /// Builds an entry; fails unless every currency balances.
    pub fn new(kind: &'static str, postings: Vec<Posting>) -> Result<JournalEntry, LedgerError> {
        if postings.len() < 2 {
            return Err(LedgerError::TooFewPostings);
        }
        let mut sums: BTreeMap<Currency, (i64, i64)> = BTreeMap::new();
        for p in &postings {
            if !p.amount.is_positive() {
                return Err(LedgerError::NonPositive(p.amount));
            }
            let s = sums.entry(p.amount.currency()).or_insert((0, 0));
            let slot = match p.side {
                Side::Debit => &mut s.0,
                Side::Credit => &mut s.1,
            };
            *slot = slot
                .checked_add(p.amount.amount_minor())
                .ok_or(LedgerError::Overflow)?;
        }
        for (currency, (debits_minor, credits_minor)) in sums {
            if debits_minor != credits_minor {
                return Err(LedgerError::Unbalanced {
                    currency,
                    debits_minor,
                    credits_minor,
                });
            }
        }
        Ok(JournalEntry { kind, postings })
    }

    /// A simple two-line entry moving `amount` from `credit` to `debit`.
    pub fn transfer(
        kind: &'static str,
        debit: &Account,
        credit: &Account,
        amount: Money,
    ) -> Result<JournalEntry, LedgerError> {
        JournalEntry::new(
            kind,
            vec![
                Posting::debit(debit, amount),
                Posting::credit(credit, amount),
            ],
        )
    }

    /// The entry that undoes this one.
    pub fn reversed(&self, kind: &'static str) -> JournalEntry {
        JournalEntry {
            kind,
            postings: self
                .postings
                .iter()
                .map(|p| Posting {
                    account: p.account.clone(),
                    side: p.side.flip(),
                    amount: p.amount,
                })
                .collect(),
        }
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }

    pub fn postings(&self) -> &[Posting] {
        &self.postings
    }
}

impl fmt::Display for JournalEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.kind)?;
        for p in &self.postings {
            write!(f, " {} {} {};", p.side.as_str(), p.account, p.amount)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sgd(v: i64) -> Money {
        Money::new(v, Currency::parse("SGD").unwrap())
    }

    #[test]
    fn entries_must_balance_per_currency() {
        let w = Account::WalletReceivable {
            wallet: "sgpay".into(),
        };
        let m = Account::MerchantPayable {
            merchant: "M1".into(),
        };
        let e = JournalEntry::transfer("payment", &w, &m, sgd(1250)).unwrap();
        assert_eq!(e.postings().len(), 2);
        assert_eq!(
            e.to_string(),
            "payment: D wallet_receivable:sgpay:SGD 12.50 SGD; C merchant_payable:M1:SGD 12.50 SGD;"
        );
        let r = e.reversed("reversal");
        assert_eq!(r.postings()[0].side(), Side::Credit);
        assert!(matches!(
            JournalEntry::new(
                "x",
                vec![Posting::debit(&w, sgd(2)), Posting::credit(&m, sgd(1))]
            ),
            Err(LedgerError::Unbalanced { .. })
        ));
        let cny = Money::new(2, Currency::parse("CNY").unwrap());
        assert!(matches!(
            JournalEntry::new(
                "x",
                vec![Posting::debit(&w, sgd(2)), Posting::credit(&m, cny)]
            ),
            Err(LedgerError::Unbalanced { .. })
        ));
        assert_eq!(
            JournalEntry::new(
                "x",
                vec![Posting::debit(&w, sgd(0)), Posting::credit(&m, sgd(0))]
            ),
            Err(LedgerError::NonPositive(sgd(0)))
        );
        assert_eq!(
            JournalEntry::new("x", vec![]),
            Err(LedgerError::TooFewPostings)
        );
    }
}
