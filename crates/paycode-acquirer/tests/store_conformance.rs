//! The acquirer's storage interface (`paycode_acquirer::store`), function by function, on
//! SQLite always and on PostgreSQL when `PAYCODE_TEST_DATABASE_URL` is set; every test opens
//! a fresh store (a new SQLite file, a new PostgreSQL schema) on each engine.
//!
//! Three parts: what each function returns and leaves (rows round-trip with every field,
//! missing ids, named keys, orderings, leases, counters, corrupt values); the invariants the
//! service's units keep when several run at once, on SQLite and on PostgreSQL both with group
//! commit and with one transaction per unit on two handles (two processes on one store); and
//! the re-run of a unit after a serialization failure. The racing units are composed from the
//! store functions exactly as `service.rs` composes them: lock the payment, look the request
//! up, decide, write.

use paycode_acquirer::store::audit::{self, SettledEvent};
use paycode_acquirer::store::registry::{self, NewClient, NewMerchant, NewWallet};
use paycode_acquirer::store::settlement::{self, BatchRow, ClearingRow, Group, ItemRow};
use paycode_acquirer::store::{
    self, NewNotification, NotificationKind, NotificationStatus, OutboxRow, PaymentRow, RefundRow,
    StoreError, StoreResult, risk,
};
use paycode_core::guess::SourceLimit;
use paycode_core::payment::{Effect, Outcome, PaymentEvent, PaymentState, RefundState, transition};
use paycode_core::settlement::Movement;
use paycode_core::{Currency, Money, ResultCode};
use paycode_db::Db;
use paycode_db::sql::{Connection, Engine};
use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

/// 2026-05-28T20:26:40Z: all stored times are near it.
const T0: i64 = 1_780_000_000_000;
const DAY_MS: i64 = 86_400_000;
const CLIENT: &str = "client-1";

// ------------------------------------------------------------------------------- harness

use paycode_db::testing::TestStore as Store;

/// A fresh store on SQLite and, when configured, on PostgreSQL: for tests of one function at
/// a time.
fn stores(name: &str) -> Vec<Store> {
    paycode_db::testing::stores(name, &store::migrations())
}

/// SQLite, and two PostgreSQL handles of one schema standing for two processes, with and
/// without group commit: for the races.
fn racing_stores(name: &str) -> Vec<Store> {
    paycode_db::testing::racing_stores(name, &store::migrations())
}

/// Both values print the same (the rows have no `PartialEq`; `Debug` shows every field).
#[track_caller]
fn same<T: Debug>(label: &str, got: &T, want: &T) {
    assert_eq!(format!("{got:?}"), format!("{want:?}"), "{label}");
}

#[track_caller]
fn corrupt<T: Debug>(label: &str, got: StoreResult<T>, fragments: &[&str]) {
    match got {
        Err(StoreError::Corrupt(why)) => {
            for f in fragments {
                assert!(why.contains(f), "{label}: {why:?} lacks {f:?}");
            }
        }
        other => panic!("{label}: want a corrupt row, got {other:?}"),
    }
}

#[track_caller]
fn unique<T: Debug>(label: &str, got: StoreResult<T>, key: &str) {
    match got {
        Err(StoreError::Unique { key: k }) => assert_eq!(k, key, "{label}"),
        other => panic!("{label}: want a unique violation on {key}, got {other:?}"),
    }
}

// ------------------------------------------------------------------------------- fixtures

/// A processing payment of 10.00 SGD with every optional field set.
fn payment(id: &str) -> PaymentRow {
    PaymentRow {
        payment_id: id.to_string(),
        client_id: CLIENT.to_string(),
        payment_request_id: format!("req-{id}"),
        request_hash: format!("hash-{id}"),
        reference_merchant_id: "M1".to_string(),
        reference_store_id: Some("S1".to_string()),
        merchant_name: "Shop".to_string(),
        store_name: Some("Shop at the corner".to_string()),
        terminal_id: Some("T1".to_string()),
        amount_minor: 1_000,
        currency: "SGD".to_string(),
        wallet: "walleta".to_string(),
        psp_name: "WalletA".to_string(),
        code_masked: "**************1234".to_string(),
        pay_to_minor: 1_000,
        pay_to_currency: "SGD".to_string(),
        payment_quote: Some(r#"{"quoteId":"Q1"}"#.to_string()),
        settle_minor: 1_000,
        settle_currency: "SGD".to_string(),
        settlement_quote: Some(r#"{"quoteId":"Q2"}"#.to_string()),
        fee_minor: 20,
        state: PaymentState::Processing,
        result_code: ResultCode::PAYMENT_IN_PROCESS,
        result_message: "waiting for the user".to_string(),
        wallet_payment_id: Some(format!("WP-{id}")),
        psp_customer_id: Some("CUST-1".to_string()),
        notify_url: Some("https://merchant.example/notify".to_string()),
        created_ms: T0,
        expires_ms: T0 + 60_000,
        paid_ms: None,
        cancelled_ms: None,
        cancel_requested_ms: None,
        updated_ms: T0,
        next_check_ms: Some(T0 + 5_000),
        n_checks: 0,
        buyer: Some("28101212345678".to_string()),
    }
}

/// The same payment, paid at `paid_ms`.
fn paid(id: &str, paid_ms: i64) -> PaymentRow {
    PaymentRow {
        state: PaymentState::Success,
        result_code: ResultCode::SUCCESS,
        result_message: String::new(),
        paid_ms: Some(paid_ms),
        updated_ms: paid_ms,
        next_check_ms: None,
        ..payment(id)
    }
}

/// A processing refund of `amount_minor` of payment `payment_id`, every optional field set.
fn refund(id: &str, payment_id: &str, amount_minor: i64) -> RefundRow {
    RefundRow {
        refund_id: id.to_string(),
        client_id: CLIENT.to_string(),
        refund_request_id: format!("rreq-{id}"),
        request_hash: format!("rhash-{id}"),
        payment_id: payment_id.to_string(),
        amount_minor,
        currency: "SGD".to_string(),
        wallet_amount_minor: amount_minor,
        wallet_currency: "SGD".to_string(),
        settle_minor: amount_minor,
        settle_currency: "SGD".to_string(),
        settlement_quote: Some(r#"{"quoteId":"Q3"}"#.to_string()),
        fee_minor: 0,
        state: RefundState::Processing,
        result_code: ResultCode::UNKNOWN_EXCEPTION,
        result_message: "asking the wallet".to_string(),
        reason: Some("broken".to_string()),
        notify_url: Some("https://merchant.example/refunds".to_string()),
        created_ms: T0 + 10_000,
        refunded_ms: None,
        next_check_ms: Some(T0 + 20_000),
    }
}

fn money(minor: i64, currency: &str) -> Money {
    Money::new(minor, Currency::parse(currency).expect("a known currency"))
}

/// A payment's movement, as the service prices it (`service::payment_movement`).
fn movement(p: &PaymentRow) -> Movement {
    Movement {
        wallet: p.wallet.clone(),
        merchant: format!("{}/{}", p.client_id, p.reference_merchant_id),
        wallet_amount: money(p.pay_to_minor, &p.pay_to_currency),
        settlement_amount: money(p.settle_minor, &p.settle_currency),
        fee: money(p.fee_minor, &p.settle_currency),
    }
}

fn refund_movement(p: &PaymentRow, r: &RefundRow) -> Movement {
    Movement {
        wallet_amount: money(r.wallet_amount_minor, &r.wallet_currency),
        settlement_amount: money(r.settle_minor, &r.settle_currency),
        fee: money(r.fee_minor, &r.settle_currency),
        ..movement(p)
    }
}

const WALLET_ACCOUNT: &str = "wallet_receivable:walleta:SGD";
const MERCHANT_ACCOUNT: &str = "merchant_payable:client-1/M1:SGD";
const FEE_ACCOUNT: &str = "fee_revenue::SGD";

fn payment_entry(p: &PaymentRow) -> paycode_core::ledger::JournalEntry {
    paycode_core::settlement::payment_entry(&movement(p)).expect("a valid movement")
}

fn item(transaction_id: &str, kind: &str, event_ms: i64) -> ItemRow {
    ItemRow {
        transaction_id: transaction_id.to_string(),
        kind: kind.to_string(),
        payment_id: transaction_id.to_string(),
        merchant: "client-1/M1".to_string(),
        client_id: CLIENT.to_string(),
        reference_merchant_id: "M1".to_string(),
        reference_store_id: Some("S1".to_string()),
        transaction_request_id: format!("req-{transaction_id}"),
        payment_method_type: "CONNECT_WALLET".to_string(),
        wallet: "walleta".to_string(),
        psp_name: "WalletA".to_string(),
        amount_minor: 1_000,
        currency: "USD".to_string(),
        wallet_amount_minor: 1_350,
        wallet_currency: "SGD".to_string(),
        settle_minor: 1_000,
        settle_currency: "USD".to_string(),
        quote_price: Some("1.35".to_string()),
        fee_minor: 20,
        event_ms,
        settle_due_ms: event_ms + 1_000,
        batch_id: None,
        clearing_due_ms: event_ms + 2_000,
        clearing_id: None,
    }
}

fn merchant_group() -> Group {
    Group {
        owner: "client-1/M1".to_string(),
        currency: "USD".to_string(),
        client_id: CLIENT.to_string(),
        reference_merchant_id: "M1".to_string(),
    }
}

fn wallet_group() -> Group {
    Group {
        owner: "walleta".to_string(),
        currency: "SGD".to_string(),
        client_id: String::new(),
        reference_merchant_id: String::new(),
    }
}

fn batch(id: &str, seq: i64, closed_ms: i64) -> BatchRow {
    BatchRow {
        batch_id: id.to_string(),
        merchant: "client-1/M1".to_string(),
        currency: "USD".to_string(),
        business_day: 20_600,
        seq,
        utc_offset_s: 28_800,
        cutoff_local_s: 79_200,
        item_count: 2,
        gross_minor: 2_000,
        fee_minor: 40,
        net_minor: 1_960,
        entry_id: Some(7),
        closed_ms,
    }
}

fn clearing(id: &str, seq: i64, closed_ms: i64) -> ClearingRow {
    ClearingRow {
        clearing_id: id.to_string(),
        wallet: "walleta".to_string(),
        currency: "SGD".to_string(),
        business_day: 20_600,
        seq,
        item_count: 2,
        net_minor: 2_700,
        entry_id: None,
        closed_ms,
    }
}

fn notification<'a>(payment_id: &'a str, body: &'a str) -> NewNotification<'a> {
    NewNotification {
        kind: NotificationKind::PaymentResult,
        payment_id,
        refund_id: None,
        client_id: CLIENT,
        url: "https://merchant.example/notify",
        body,
    }
}

// ------------------------------------------------------------------------------- units

/// The `pay` unit's storage part (`Acquirer::pay`): the request looked up (and locked) first,
/// the risk attempt counted, the payment and its timeline event written. Whether it created.
fn pay_unit(c: &Connection<'_>, row: &PaymentRow) -> StoreResult<bool> {
    if store::payment_by_request_id(c, &row.client_id, &row.payment_request_id)?.is_some() {
        return Ok(false);
    }
    let merchant = format!("{}/{}", row.client_id, row.reference_merchant_id);
    risk::count_attempt(
        c,
        &merchant,
        &row.currency,
        row.amount_minor,
        row.created_ms,
    )?;
    store::insert_payment(c, row)?;
    store::add_event(c, &row.payment_id, "CREATED", "pay", row.created_ms)?;
    Ok(true)
}

/// `Acquirer::apply`: the payment locked, the transition table asked, the state and every
/// effect written together.
fn apply_unit(
    c: &Connection<'_>,
    payment_id: &str,
    event: PaymentEvent,
    now_ms: i64,
) -> StoreResult<Outcome> {
    let mut p = store::payment_by_id(c, payment_id)?
        .ok_or_else(|| StoreError::NotFound(format!("payment {payment_id}")))?;
    let outcome = transition(p.state, event);
    if let Outcome::Applied { next, effects } = &outcome {
        p.state = *next;
        p.result_code = next.result_code();
        match next {
            PaymentState::Success => p.paid_ms = Some(now_ms),
            PaymentState::Cancelled => p.cancelled_ms = Some(now_ms),
            _ => {}
        }
        p.next_check_ms = None;
        p.updated_ms = now_ms;
        store::update_payment(c, &p)?;
        for effect in effects.iter() {
            match effect {
                Effect::PostPayment => {
                    store::post_entry(c, &payment_entry(&p), Some(payment_id), None, now_ms)?;
                }
                Effect::PostReversal => {
                    let entry = paycode_core::settlement::cancel_entry(&movement(&p))
                        .expect("a valid movement");
                    store::post_entry(c, &entry, Some(payment_id), None, now_ms)?;
                }
                Effect::NotifyMerchant => {
                    store::enqueue_notification(c, &notification(payment_id, "{}"), now_ms)?;
                }
            }
        }
        store::add_event(c, payment_id, "STATE", &format!("-> {next}"), now_ms)?;
    }
    Ok(outcome)
}

/// Why the refund unit refused a refund.
#[derive(Debug, PartialEq, Eq)]
enum Refused {
    NotPaid,
    CancelUnderWay,
    AmountExceeded,
}

/// The `refund` unit's storage part (`Acquirer::refund`): the payment locked first, then the
/// request looked up, then the live refunds summed against the amount paid.
fn refund_unit(c: &Connection<'_>, row: &RefundRow) -> StoreResult<Result<RefundRow, Refused>> {
    let p = store::payment_by_id(c, &row.payment_id)?
        .ok_or_else(|| StoreError::NotFound(format!("payment {}", row.payment_id)))?;
    if let Some(r) = store::refund_by_request_id(c, &row.client_id, &row.refund_request_id)? {
        return Ok(Ok(r));
    }
    if p.state != PaymentState::Success {
        return Ok(Err(Refused::NotPaid));
    }
    if p.cancel_requested_ms.is_some() {
        return Ok(Err(Refused::CancelUnderWay));
    }
    let refunded: i64 = store::refunds_of_payment(c, &p.payment_id)?
        .iter()
        .filter(|r| !matches!(r.state, RefundState::Fail(_)))
        .map(|r| r.amount_minor)
        .sum();
    if refunded + row.amount_minor > p.amount_minor {
        return Ok(Err(Refused::AmountExceeded));
    }
    store::insert_refund(c, row)?;
    store::add_event(c, &p.payment_id, "REFUND", "requested", row.created_ms)?;
    Ok(Ok(row.clone()))
}

/// `Acquirer::apply_refund` with the wallet's success: the refund and its entry together.
fn refund_succeeded_unit(c: &Connection<'_>, refund_id: &str, now_ms: i64) -> StoreResult<bool> {
    let mut r = store::refund_by_id(c, refund_id)?
        .ok_or_else(|| StoreError::NotFound(format!("refund {refund_id}")))?;
    if r.state != RefundState::Processing {
        return Ok(false);
    }
    let p = store::payment_by_id(c, &r.payment_id)?
        .ok_or_else(|| StoreError::NotFound(format!("payment {}", r.payment_id)))?;
    r.state = RefundState::Success;
    r.result_code = ResultCode::SUCCESS;
    r.refunded_ms = Some(now_ms);
    r.next_check_ms = None;
    store::update_refund(c, &r)?;
    let entry =
        paycode_core::settlement::refund_entry(&refund_movement(&p, &r)).expect("a valid movement");
    store::post_entry(c, &entry, Some(&p.payment_id), Some(refund_id), now_ms)?;
    Ok(true)
}

/// The merchant cancel's first unit (`Acquirer::cancel`): refused while refunds are live,
/// else the payment marked so that new refunds wait.
fn cancel_request_unit(c: &Connection<'_>, payment_id: &str, now_ms: i64) -> StoreResult<bool> {
    let mut p = store::payment_by_id(c, payment_id)?
        .ok_or_else(|| StoreError::NotFound(format!("payment {payment_id}")))?;
    let busy = store::refunds_of_payment(c, payment_id)?
        .iter()
        .any(|r| !matches!(r.state, RefundState::Fail(_)));
    if busy {
        return Ok(false);
    }
    p.cancel_requested_ms = Some(now_ms);
    store::update_payment(c, &p)?;
    Ok(true)
}

/// Every account balance, debit-positive, and whether the audit finds the ledger consistent.
fn ledger_of(s: &Store) -> (i64, i64, i64, i64) {
    s.r(|c| {
        let mut findings = 0;
        audit::each_unbalanced_entry(c, |_| {
            findings += 1;
            Ok(())
        })?;
        audit::each_balance_mismatch(c, |_| {
            findings += 1;
            Ok(())
        })?;
        Ok((
            store::account_balance(c, WALLET_ACCOUNT)?,
            store::account_balance(c, MERCHANT_ACCOUNT)?,
            store::account_balance(c, FEE_ACCOUNT)?,
            findings,
        ))
    })
}

/// Runs `f(i, db)` on `n` threads at once, each on handle `i % handles` of the store.
fn race<R: Send>(s: &Store, n: usize, f: impl Fn(usize, &Db) -> R + Sync) -> Vec<R> {
    let start = Barrier::new(n);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (start, f, db) = (&start, &f, &s.dbs[i % s.dbs.len()]);
                scope.spawn(move || {
                    start.wait();
                    f(i, db)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a racing thread does not panic"))
            .collect()
    })
}

// ------------------------------------------------------------------------------- payments

#[test]
fn a_payment_reads_back_with_every_field_by_id_and_by_request_id() {
    for s in stores("pay_round_trip") {
        let full = PaymentRow {
            paid_ms: Some(T0 + 1),
            cancelled_ms: Some(T0 + 2),
            cancel_requested_ms: Some(T0 + 3),
            n_checks: 4,
            ..paid("P1", T0 + 1)
        };
        let bare = PaymentRow {
            reference_store_id: None,
            store_name: None,
            terminal_id: None,
            payment_quote: None,
            settlement_quote: None,
            wallet_payment_id: None,
            psp_customer_id: None,
            notify_url: None,
            next_check_ms: None,
            result_message: String::new(),
            ..payment("P2")
        };
        let (a, b) = (full.clone(), bare.clone());
        s.w(move |c| {
            store::insert_payment(c, &a)?;
            store::insert_payment(c, &b)
        });
        for want in [&full, &bare] {
            let id = want.payment_id.clone();
            let by_id = s.r(|c| store::payment_by_id(c, &id));
            same(s.label, &by_id, &Some(want.clone()));
            let rid = want.payment_request_id.clone();
            let by_request = s.r(|c| store::payment_by_request_id(c, CLIENT, &rid));
            same(s.label, &by_request, &Some(want.clone()));
            // The same reads inside a write unit, where they lock on PostgreSQL.
            let in_unit = s.w(move |c| store::payment_by_id(c, &id));
            same(s.label, &in_unit, &Some(want.clone()));
        }
        assert!(s.r(|c| store::payment_by_id(c, "P3")).is_none());
        assert!(
            s.r(|c| store::payment_by_request_id(c, CLIENT, "req-P3"))
                .is_none()
        );
        assert!(
            s.r(|c| store::payment_by_request_id(c, "client-2", "req-P1"))
                .is_none(),
            "{}: a request id is looked up per client",
            s.label
        );
        s.r(store::ping);
    }
}

#[test]
fn an_update_writes_the_mutable_fields_only_and_a_missing_payment_is_not_found() {
    for s in stores("pay_update") {
        let p = payment("P1");
        let first = p.clone();
        s.w(move |c| store::insert_payment(c, &first));
        let changed = PaymentRow {
            state: PaymentState::Fail(ResultCode::RISK_REJECT),
            result_code: ResultCode::RISK_REJECT,
            result_message: "refused".to_string(),
            wallet_payment_id: Some("WP-other".to_string()),
            psp_customer_id: Some("CUST-2".to_string()),
            paid_ms: Some(T0 + 10),
            cancelled_ms: Some(T0 + 11),
            cancel_requested_ms: Some(T0 + 12),
            updated_ms: T0 + 13,
            next_check_ms: None,
            n_checks: 9,
            // Not mutable: the update must leave these as they were inserted.
            amount_minor: 1,
            merchant_name: "Other".to_string(),
            fee_minor: 0,
            ..p.clone()
        };
        let u = changed.clone();
        s.w(move |c| store::update_payment(c, &u));
        let want = PaymentRow {
            amount_minor: p.amount_minor,
            merchant_name: p.merchant_name.clone(),
            fee_minor: p.fee_minor,
            ..changed
        };
        same(
            s.label,
            &s.r(|c| store::payment_by_id(c, "P1")),
            &Some(want),
        );
        match s.try_w(|c| store::update_payment(c, &payment("P9"))) {
            Err(StoreError::NotFound(what)) => assert_eq!(what, "payment P9", "{}", s.label),
            other => panic!("{}: {other:?}", s.label),
        }
    }
}

#[test]
fn a_duplicate_payment_is_a_unique_error_naming_its_key() {
    for s in stores("pay_unique") {
        s.w(|c| store::insert_payment(c, &payment("P1")));
        let same_id = PaymentRow {
            payment_request_id: "req-other".to_string(),
            ..payment("P1")
        };
        unique(
            s.label,
            s.try_w(move |c| store::insert_payment(c, &same_id)),
            "payments.payment_id",
        );
        let same_request = PaymentRow {
            payment_request_id: "req-P1".to_string(),
            ..payment("P2")
        };
        unique(
            s.label,
            s.try_w(move |c| store::insert_payment(c, &same_request)),
            "payments.client_id, payments.payment_request_id",
        );
        // Another client may use the same request id.
        let other_client = PaymentRow {
            client_id: "client-2".to_string(),
            payment_request_id: "req-P1".to_string(),
            ..payment("P3")
        };
        s.w(move |c| store::insert_payment(c, &other_client));
        let n = s.r(|c| {
            let mut n = 0;
            audit::each_payment_id(c, |_| {
                n += 1;
                Ok(())
            })?;
            Ok(n)
        });
        assert_eq!(n, 2, "{}: the failed inserts left nothing", s.label);
    }
}

#[test]
fn due_payments_are_listed_oldest_first_and_a_check_claim_is_won_once() {
    for s in stores("pay_due") {
        s.w(|c| {
            for (id, next) in [("P1", Some(T0 + 300)), ("P2", Some(T0 + 100)), ("P3", None)] {
                store::insert_payment(
                    c,
                    &PaymentRow {
                        next_check_ms: next,
                        ..payment(id)
                    },
                )?;
            }
            store::insert_payment(c, &paid("P4", T0))
        });
        let due = |now: i64, limit: usize| -> Vec<String> {
            s.r(|c| store::payments_due(c, now, limit))
                .into_iter()
                .map(|p| p.payment_id)
                .collect()
        };
        assert_eq!(due(T0 + 300, 10), ["P2", "P1"], "{}", s.label);
        assert_eq!(due(T0 + 300, 1), ["P2"], "{}", s.label);
        assert_eq!(due(T0 + 299, 10), ["P2"], "{}", s.label);
        assert!(due(T0 + 99, 10).is_empty(), "{}", s.label);
        // The first claim of what was seen wins and leases the payment; a second claim of the
        // same sighting loses; a paid payment cannot be claimed.
        let claim = |id: &'static str, seen: i64, until: i64| {
            s.w(move |c| store::claim_payment_check(c, id, seen, until))
        };
        assert!(claim("P2", T0 + 100, T0 + 10_100), "{}", s.label);
        assert!(!claim("P2", T0 + 100, T0 + 10_100), "{}", s.label);
        assert!(!claim("P4", T0, T0 + 10_200), "{}", s.label);
        assert!(!claim("P9", T0, T0 + 1), "{}", s.label);
        let p2 = s.r(|c| store::payment_by_id(c, "P2")).expect("P2 exists");
        assert_eq!(
            (p2.next_check_ms, p2.n_checks),
            (Some(T0 + 10_100), 1),
            "{}",
            s.label
        );
        assert_eq!(due(T0 + 10_099, 10), ["P1"], "{}", s.label);
        // Once the lease runs out the payment is due again, and the next claim takes it over.
        assert_eq!(due(T0 + 10_100, 10), ["P1", "P2"], "{}", s.label);
        assert!(claim("P2", T0 + 10_100, T0 + 20_000), "{}", s.label);
        assert_eq!(
            s.r(|c| store::payment_by_id(c, "P2")).map(|p| p.n_checks),
            Some(2)
        );
    }
}

/// A stored value the acquirer never writes reads as `Corrupt` naming the row: one per kind
/// of parsed column (status, result code, time, optional time, and a value of the wrong type).
#[test]
fn a_payment_value_the_acquirer_never_writes_is_corrupt() {
    for s in stores("pay_corrupt") {
        s.w(|c| store::insert_payment(c, &payment("P1")));
        let check = |set: &str, fragments: &[&str]| {
            s.sql(&format!(
                "UPDATE payments SET {set} WHERE payment_id = 'P1'"
            ));
            corrupt(
                &format!("{} {set}", s.label),
                s.try_r(|c| store::payment_by_id(c, "P1")),
                fragments,
            );
            s.sql(
                "UPDATE payments SET status = 'PROCESSING', result_code = 'PAYMENT_IN_PROCESS', \
                 created_ms = 1780000000000, paid_ms = NULL WHERE payment_id = 'P1'",
            );
            assert!(s.r(|c| store::payment_by_id(c, "P1")).is_some());
        };
        check("status = 'PAID'", &["payment P1", "\"PAID\""]);
        check(
            "status = 'FAIL', result_code = 'NO_SUCH_CODE'",
            &["payment P1", "NO_SUCH_CODE"],
        );
        check("created_ms = -5", &["payment P1", "-5"]);
        check("paid_ms = 9223372036854775807", &["payment P1"]);
        // A list read fails whole rather than skipping the row.
        s.sql("UPDATE payments SET status = 'X' WHERE payment_id = 'P1'");
        corrupt(
            s.label,
            s.try_r(|c| store::payments_due(c, T0 + 10_000, 10)),
            &["payment P1"],
        );
        if s.engine() == Engine::Sqlite {
            // Only SQLite can hold text in an integer column.
            s.sql("UPDATE payments SET status = 'PROCESSING', created_ms = 'soon'");
            corrupt(
                s.label,
                s.try_r(|c| store::payment_by_id(c, "P1")),
                &["column 26"],
            );
        }
    }
}

// ------------------------------------------------------------------------------- refunds

#[test]
fn refunds_read_back_with_every_field_and_list_in_order() {
    for s in stores("refund_round_trip") {
        let r1 = refund("R1", "P1", 100);
        let r2 = RefundRow {
            created_ms: T0 + 5_000,
            next_check_ms: Some(T0 + 30_000),
            ..refund("R2", "P1", 200)
        };
        let r3 = RefundRow {
            settlement_quote: None,
            reason: None,
            notify_url: None,
            next_check_ms: None,
            state: RefundState::Fail(ResultCode::REFUND_WINDOW_EXCEED),
            result_code: ResultCode::REFUND_WINDOW_EXCEED,
            ..refund("R0", "P1", 300)
        };
        let rows = [r1.clone(), r2.clone(), r3.clone()];
        s.w(move |c| {
            store::insert_payment(c, &paid("P1", T0))?;
            store::insert_payment(c, &paid("P2", T0))?;
            for r in &rows {
                store::insert_refund(c, r)?;
            }
            Ok(())
        });
        same(
            s.label,
            &s.r(|c| store::refund_by_id(c, "R1")),
            &Some(r1.clone()),
        );
        same(
            s.label,
            &s.r(|c| store::refund_by_request_id(c, CLIENT, "rreq-R0")),
            &Some(r3.clone()),
        );
        same(
            s.label,
            &s.w(|c| store::refund_by_id(c, "R2")),
            &Some(r2.clone()),
        );
        assert!(s.r(|c| store::refund_by_id(c, "R9")).is_none());
        assert!(
            s.r(|c| store::refund_by_request_id(c, "client-2", "rreq-R1"))
                .is_none()
        );
        // By creation time, then id.
        same(
            s.label,
            &s.r(|c| store::refunds_of_payment(c, "P1")),
            &vec![r2.clone(), r3.clone(), r1.clone()],
        );
        assert!(s.r(|c| store::refunds_of_payment(c, "P2")).is_empty());
        let due = |now: i64, limit: usize| -> Vec<String> {
            s.r(|c| store::refunds_due(c, now, limit))
                .into_iter()
                .map(|r| r.refund_id)
                .collect()
        };
        assert_eq!(due(T0 + 30_000, 10), ["R1", "R2"], "{}", s.label);
        assert_eq!(due(T0 + 30_000, 1), ["R1"], "{}", s.label);
        assert!(due(T0 + 19_999, 10).is_empty(), "{}", s.label);
        // The update writes the outcome and leaves the request as it was.
        let done = RefundRow {
            state: RefundState::Success,
            result_code: ResultCode::SUCCESS,
            result_message: String::new(),
            refunded_ms: Some(T0 + 40_000),
            next_check_ms: None,
            fee_minor: 2,
            amount_minor: 1,
            reason: Some("changed".to_string()),
            ..r1.clone()
        };
        let d = done.clone();
        s.w(move |c| store::update_refund(c, &d));
        let want = RefundRow {
            amount_minor: r1.amount_minor,
            reason: r1.reason.clone(),
            ..done
        };
        same(s.label, &s.r(|c| store::refund_by_id(c, "R1")), &Some(want));
        match s.try_w(|c| store::update_refund(c, &refund("R9", "P1", 1))) {
            Err(StoreError::NotFound(what)) => assert_eq!(what, "refund R9", "{}", s.label),
            other => panic!("{}: {other:?}", s.label),
        }
        unique(
            s.label,
            s.try_w(|c| {
                store::insert_refund(
                    c,
                    &RefundRow {
                        refund_request_id: "rreq-other".to_string(),
                        ..refund("R1", "P1", 1)
                    },
                )
            }),
            "refunds.refund_id",
        );
        unique(
            s.label,
            s.try_w(|c| {
                store::insert_refund(
                    c,
                    &RefundRow {
                        refund_request_id: "rreq-R1".to_string(),
                        ..refund("R5", "P1", 1)
                    },
                )
            }),
            "refunds.client_id, refunds.refund_request_id",
        );
    }
}

/// The reconciler's claim of a refund is a compare-and-set on the check time it saw: won once,
/// and lost when another process finished the refund meanwhile, which is then left as it is
/// (a stale copy written back would put a paid refund back to PROCESSING and pay it twice).
#[test]
fn a_refund_check_is_claimed_once_and_never_over_a_finished_refund() {
    for s in stores("refund_claim") {
        let r1 = RefundRow {
            next_check_ms: Some(T0 + 20_000),
            ..refund("R1", "P1", 100)
        };
        let row = r1.clone();
        s.w(move |c| {
            store::insert_payment(c, &paid("P1", T0))?;
            store::insert_refund(c, &row)
        });
        let claim =
            |seen: i64, until: i64| s.w(move |c| store::claim_refund_check(c, "R1", seen, until));
        assert!(claim(T0 + 20_000, T0 + 50_000), "{}", s.label);
        assert!(!claim(T0 + 20_000, T0 + 50_000), "{}: one winner", s.label);
        assert!(!s.w(|c| store::claim_refund_check(c, "R9", T0, T0 + 1)));
        let leased = s.r(|c| store::refund_by_id(c, "R1")).expect("R1 exists");
        assert_eq!(leased.next_check_ms, Some(T0 + 50_000), "{}", s.label);
        assert_eq!(
            leased.state, r1.state,
            "{}: a claim changes no state",
            s.label
        );
        // Another process records the wallet's success meanwhile.
        let done = RefundRow {
            state: RefundState::Success,
            result_code: ResultCode::SUCCESS,
            refunded_ms: Some(T0 + 30_000),
            next_check_ms: None,
            ..leased
        };
        let d = done.clone();
        s.w(move |c| store::update_refund(c, &d));
        assert!(
            !claim(T0 + 50_000, T0 + 80_000),
            "{}: a finished refund cannot be claimed",
            s.label
        );
        same(s.label, &s.r(|c| store::refund_by_id(c, "R1")), &Some(done));
        assert!(s.r(|c| store::refunds_due(c, T0 + 90_000, 10)).is_empty());
    }
}

#[test]
fn a_refund_value_the_acquirer_never_writes_is_corrupt() {
    for s in stores("refund_corrupt") {
        s.w(|c| {
            store::insert_payment(c, &paid("P1", T0))?;
            store::insert_refund(c, &refund("R1", "P1", 100))
        });
        for (set, fragments) in [
            ("status = 'REFUNDED'", &["refund R1", "REFUNDED"][..]),
            ("status = 'FAIL', result_code = ''", &["refund R1"][..]),
            ("created_ms = -1", &["refund R1", "-1"][..]),
            ("refunded_ms = -2", &["refund R1", "-2"][..]),
        ] {
            s.sql(&format!("UPDATE refunds SET {set}"));
            let label = format!("{} {set}", s.label);
            corrupt(&label, s.try_r(|c| store::refund_by_id(c, "R1")), fragments);
            corrupt(
                &label,
                s.try_r(|c| store::refunds_of_payment(c, "P1")),
                fragments,
            );
            s.sql(
                "UPDATE refunds SET status = 'PROCESSING', result_code = 'UNKNOWN_EXCEPTION', \
                 created_ms = 1780000010000, refunded_ms = NULL",
            );
        }
        assert!(s.r(|c| store::refund_by_id(c, "R1")).is_some());
    }
}

// ------------------------------------------------------------------------------- journal

#[test]
fn an_entry_appends_its_postings_and_moves_the_balances() {
    for s in stores("journal") {
        let p = paid("P1", T0);
        let q = p.clone();
        let (e1, e2) = s.w(move |c| {
            store::insert_payment(c, &q)?;
            let e1 = store::post_entry(c, &payment_entry(&q), Some("P1"), None, T0)?;
            let r = refund("R1", "P1", 400);
            store::insert_refund(c, &r)?;
            let entry = paycode_core::settlement::refund_entry(&refund_movement(&q, &r))
                .expect("a valid movement");
            let e2 = store::post_entry(c, &entry, Some("P1"), Some("R1"), T0 + 1)?;
            Ok((e1, e2))
        });
        assert!(e2 > e1, "{}: entry ids grow", s.label);
        let lines: Vec<(i64, String, Option<String>, String, String, i64)> = s
            .r(|c| store::postings_of_payment(c, "P1"))
            .into_iter()
            .map(|l| {
                assert_eq!(l.payment_id.as_deref(), Some("P1"));
                assert_eq!(l.currency, "SGD");
                (
                    l.entry_id,
                    l.kind,
                    l.refund_id,
                    l.account,
                    l.side,
                    l.amount_minor,
                )
            })
            .collect();
        let line = |e: i64, kind: &str, refund: Option<&str>, account: &str, side: &str, n| {
            (
                e,
                kind.to_string(),
                refund.map(str::to_string),
                account.to_string(),
                side.to_string(),
                n,
            )
        };
        // The FX legs net to nothing when wallet and settlement currency are one.
        assert_eq!(
            lines,
            [
                line(e1, "payment", None, WALLET_ACCOUNT, "D", 1_000),
                line(e1, "payment", None, MERCHANT_ACCOUNT, "C", 980),
                line(e1, "payment", None, FEE_ACCOUNT, "C", 20),
                line(e2, "refund", Some("R1"), WALLET_ACCOUNT, "C", 400),
                line(e2, "refund", Some("R1"), MERCHANT_ACCOUNT, "D", 400),
            ],
            "{}",
            s.label
        );
        assert!(s.r(|c| store::postings_of_payment(c, "P2")).is_empty());
        assert_eq!(ledger_of(&s), (600, -580, -20, 0), "{}", s.label);
        assert_eq!(s.r(|c| store::account_balance(c, "no_such_account")), 0);
        let balances: Vec<(String, String, i64)> = s
            .r(store::balances)
            .into_iter()
            .map(|b| (b.account, b.currency, b.balance_minor))
            .collect();
        assert_eq!(
            balances,
            [
                (FEE_ACCOUNT.to_string(), "SGD".to_string(), -20),
                (MERCHANT_ACCOUNT.to_string(), "SGD".to_string(), -580),
                (WALLET_ACCOUNT.to_string(), "SGD".to_string(), 600),
            ],
            "{}: by account",
            s.label
        );
        // The audit's view of the same entries.
        assert_eq!(s.r(audit::count_entries), 2);
        assert_eq!(s.r(audit::count_accounts), 3);
        let (kind, postings) = s.r(move |c| audit::entry_by_id(c, e2)).expect("entry 2");
        assert_eq!(kind, "refund");
        assert_eq!(
            postings,
            [
                (
                    WALLET_ACCOUNT.to_string(),
                    "C".to_string(),
                    400,
                    "SGD".to_string()
                ),
                (
                    MERCHANT_ACCOUNT.to_string(),
                    "D".to_string(),
                    400,
                    "SGD".to_string()
                ),
            ]
        );
        assert!(s.r(move |c| audit::entry_by_id(c, e2 + 100)).is_none());
    }
}

// ------------------------------------------------------------------------------- outbox

#[test]
fn notifications_are_claimed_under_a_lease_and_their_attempts_recorded() {
    for s in stores("outbox") {
        s.w(|c| {
            store::enqueue_notification(c, &notification("P1", "b1"), T0 + 2)?;
            store::enqueue_notification(c, &notification("P2", "b2"), T0 + 1)?;
            store::enqueue_notification(
                c,
                &NewNotification {
                    kind: NotificationKind::RefundResult,
                    refund_id: Some("R1"),
                    ..notification("P1", "b3")
                },
                T0 + 3,
            )
        });
        assert_eq!(s.r(store::count_outbox_pending), 3);
        assert!(!s.r(|c| store::any_notification_due(c, T0)), "{}", s.label);
        assert!(
            s.r(|c| store::any_notification_due(c, T0 + 1)),
            "{}",
            s.label
        );
        let ids = |rows: &[OutboxRow]| rows.iter().map(|r| r.body.clone()).collect::<Vec<_>>();
        // Oldest due first, at most `limit`; a claimed row is leased until `lease_until_ms`.
        let first = s.w(|c| store::claim_due_notifications(c, T0 + 10, T0 + 1_000, 2));
        assert_eq!(ids(&first), ["b2", "b1"], "{}", s.label);
        let b2 = &first[0];
        assert_eq!(
            (
                b2.kind.as_str(),
                b2.payment_id.as_str(),
                b2.refund_id.as_deref(),
                b2.client_id.as_str(),
                b2.url.as_str(),
                b2.status.as_str(),
                b2.n_attempts,
                b2.next_attempt_ms,
                b2.last_error.as_deref(),
                b2.created_ms,
                b2.delivered_ms,
            ),
            (
                "PAYMENT_RESULT",
                "P2",
                None,
                CLIENT,
                "https://merchant.example/notify",
                "PENDING",
                0,
                T0 + 1,
                None,
                T0 + 1,
                None,
            ),
            "{}: the row as it was when claimed",
            s.label
        );
        let second = s.w(|c| store::claim_due_notifications(c, T0 + 10, T0 + 1_000, 10));
        assert_eq!(
            ids(&second),
            ["b3"],
            "{}: the leased rows are skipped",
            s.label
        );
        assert_eq!(second[0].refund_id.as_deref(), Some("R1"));
        assert!(
            s.w(|c| store::claim_due_notifications(c, T0 + 999, T0 + 2_000, 10))
                .is_empty()
        );
        // The lease runs out: the rows are due again and another worker takes them over.
        let again = s.w(|c| store::claim_due_notifications(c, T0 + 1_000, T0 + 2_000, 10));
        assert_eq!(again.len(), 3, "{}", s.label);
        let id_of = |body: &str| {
            again
                .iter()
                .find(|r| r.body == body)
                .map(|r| r.outbox_id)
                .expect("claimed again")
        };
        let (b1, b2, b3) = (id_of("b1"), id_of("b2"), id_of("b3"));
        s.w(move |c| {
            store::record_notification_attempt(
                c,
                b1,
                NotificationStatus::Delivered,
                T0 + 5_000,
                None,
                T0 + 1_500,
            )?;
            store::record_notification_attempt(
                c,
                b2,
                NotificationStatus::Pending,
                T0 + 6_000,
                Some("503"),
                T0 + 1_600,
            )?;
            store::record_notification_attempt(
                c,
                b3,
                NotificationStatus::Parked,
                T0 + 7_000,
                Some("gone"),
                T0 + 1_700,
            )
        });
        let all = s.r(|c| store::notifications(c, None, 10));
        /// Id, status, attempts, last error and delivery time of a notification.
        type Attempt<'a> = (i64, &'a str, i64, Option<&'a str>, Option<i64>);
        let view: Vec<Attempt> = all
            .iter()
            .map(|r| {
                (
                    r.outbox_id,
                    r.status.as_str(),
                    r.n_attempts,
                    r.last_error.as_deref(),
                    r.delivered_ms,
                )
            })
            .collect();
        let mut want = vec![
            (b1, "DELIVERED", 1, None, Some(T0 + 1_500)),
            (b2, "PENDING", 1, Some("503"), None),
            (b3, "PARKED", 1, Some("gone"), None),
        ];
        want.sort_by_key(|w| -w.0);
        assert_eq!(view, want, "{}: newest first", s.label);
        assert_eq!(s.r(|c| store::notifications(c, None, 1)).len(), 1);
        let parked = s.r(|c| store::notifications(c, Some(NotificationStatus::Parked), 10));
        assert_eq!(ids(&parked), ["b3"], "{}", s.label);
        assert_eq!(s.r(store::count_outbox_pending), 1);
        let of_p1 = s.r(|c| store::notifications_of_payment(c, "P1"));
        assert_eq!(ids(&of_p1), ["b1", "b3"], "{}: by id", s.label);
        assert!(s.r(|c| store::notifications_of_payment(c, "P9")).is_empty());
        // A resend puts a delivered or parked row back in the queue, due now.
        assert!(s.w(move |c| store::resend_notification(c, b3, T0 + 8_000)));
        assert!(!s.w(|c| store::resend_notification(c, 999_999, T0)));
        let due = s.w(|c| store::claim_due_notifications(c, T0 + 8_000, T0 + 9_000, 10));
        assert_eq!(ids(&due), ["b2", "b3"], "{}", s.label);
        assert_eq!(s.r(store::count_outbox_pending), 2);
    }
}

#[test]
fn a_payments_timeline_reads_back_in_order() {
    for s in stores("events") {
        s.w(|c| {
            store::add_event(c, "P1", "CREATED", "pay 1000 SGD", T0 + 5)?;
            store::add_event(c, "P2", "CREATED", "other", T0)?;
            store::add_event(c, "P1", "STATE", "PROCESSING -> SUCCESS", T0 + 1)
        });
        let events: Vec<(i64, String, String)> = s
            .r(|c| store::events_of_payment(c, "P1"))
            .into_iter()
            .map(|e| (e.at_ms, e.kind, e.detail))
            .collect();
        assert_eq!(
            events,
            [
                (T0 + 5, "CREATED".to_string(), "pay 1000 SGD".to_string()),
                (
                    T0 + 1,
                    "STATE".to_string(),
                    "PROCESSING -> SUCCESS".to_string()
                ),
            ],
            "{}: in the order written",
            s.label
        );
        assert!(s.r(|c| store::events_of_payment(c, "P9")).is_empty());
    }
}

// ------------------------------------------------------------------------------- quotes

#[test]
fn quotes_are_kept_once_and_the_rate_file_is_replaced_whole() {
    for s in stores("quotes") {
        let quote = paycode_proto::Quote {
            quote_id: "Q1".to_string(),
            quote_currency_pair: "USD/SGD".to_string(),
            quote_price: "1.35".to_string(),
            quote_start_time: None,
            quote_expiry_time: None,
            guaranteed: true,
        };
        let q = quote.clone();
        s.w(move |c| {
            store::insert_quote(c, &q, T0, T0 + 60_000, "PAYMENT")?;
            // A quote given out twice (a repeated pay) is kept once, as first stored.
            store::insert_quote(
                c,
                &paycode_proto::Quote {
                    quote_price: "9".to_string(),
                    ..q.clone()
                },
                T0,
                T0,
                "SETTLEMENT",
            )
        });
        let stored: Vec<(String, String, String, i64, i64, String)> = s.r(|c| {
            Ok(c.query_all_cached(
                "SELECT quote_id, pair, price, start_ms, expiry_ms, purpose FROM quotes",
                [],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                },
            )?)
        });
        assert_eq!(
            stored,
            [(
                "Q1".to_string(),
                "USD/SGD".to_string(),
                "1.35".to_string(),
                T0,
                T0 + 60_000,
                "PAYMENT".to_string()
            )],
            "{}",
            s.label
        );
        assert_eq!(s.r(store::rate_file), None);
        s.w(|c| store::set_rate_file(c, "USD SGD 1.35\n", T0));
        s.w(|c| store::set_rate_file(c, "USD SGD 1.36\n", T0 + 1));
        assert_eq!(s.r(store::rate_file).as_deref(), Some("USD SGD 1.36\n"));
    }
}

// ------------------------------------------------------------------------------- registry

#[test]
fn the_registry_rows_read_back_and_an_upsert_replaces_them() {
    for s in stores("registry") {
        let key_a = paycode_sign::PrivateKey::generate()
            .expect("a key")
            .public_key();
        let key_b = paycode_sign::PrivateKey::generate()
            .expect("a key")
            .public_key();
        let (ka, kb) = (key_a.clone(), key_b.clone());
        s.w(move |c| {
            for (id, name) in [("client-1", "First"), ("client-2", "Second")] {
                let n = NewClient {
                    client_id: id,
                    name,
                    notify_url: Some("https://c.example/n"),
                };
                registry::upsert_client(c, &n, T0)?;
            }
            // Upserting again replaces the name and URL, keeping the client active.
            let renamed = NewClient {
                client_id: "client-2",
                name: "Renamed",
                notify_url: None,
            };
            registry::upsert_client(c, &renamed, T0 + 1)?;
            registry::upsert_client_key(c, "client-1", 1, &ka, false)?;
            registry::upsert_client_key(c, "client-1", 2, &kb, true)?;
            registry::upsert_client_key(c, "client-2", 1, &ka, true)?;
            registry::upsert_client_key(c, "client-2", 1, &kb, false)?;
            let currencies = ["SGD".to_string(), "USD".to_string()];
            let mut m = NewMerchant {
                client_id: "client-1",
                reference_merchant_id: "M1",
                name: "Shop",
                mcc: "5411",
                currencies: &currencies,
                settlement_currency: "USD",
                max_amount_minor: Some(50_000),
                notify_url: Some("https://m.example/n"),
                active: true,
                fee_bps: 150,
                time_zone: "Asia/Singapore",
                cutoff_minutes: 1_320,
            };
            registry::upsert_merchant(c, &m)?;
            m.reference_merchant_id = "M2";
            m.max_amount_minor = None;
            m.notify_url = None;
            m.active = false;
            registry::upsert_merchant(c, &m)?;
            m.name = "Shop two";
            registry::upsert_merchant(c, &m)?;
            let store_1 = paycode_acquirer::registry::Store {
                reference_store_id: "S1".to_string(),
                name: "Corner".to_string(),
                mcc: "5812".to_string(),
            };
            registry::upsert_store(c, "client-1", "M1", &store_1)?;
            registry::upsert_store(
                c,
                "client-1",
                "M1",
                &paycode_acquirer::registry::Store {
                    name: "Corner shop".to_string(),
                    ..store_1.clone()
                },
            )?;
            let w = NewWallet {
                name: "walleta",
                psp_name: "WalletA",
                base_url: "http://wallet-a.example",
                public_key: &ka,
                currencies: &currencies,
                enabled: true,
            };
            registry::upsert_wallet(c, &w)?;
            registry::upsert_wallet(
                c,
                &NewWallet {
                    name: "walletb",
                    enabled: false,
                    public_key: &kb,
                    ..w
                },
            )?;
            registry::upsert_route(c, "CII", "281005", "walleta", 10)?;
            registry::upsert_route(c, "REGEX", "^28", "walletb", 5)?;
            registry::upsert_route(c, "CII", "289999", "walletb", 10)?;
            // The same kind and pattern again replaces its route.
            registry::upsert_route(c, "CII", "281005", "walletb", 1)
        });
        let mut clients: Vec<(String, String, bool, Option<String>)> = s
            .r(registry::clients)
            .into_iter()
            .map(|c| (c.client_id, c.name, c.active, c.notify_url))
            .collect();
        clients.sort();
        assert_eq!(
            clients,
            [
                (
                    "client-1".into(),
                    "First".into(),
                    true,
                    Some("https://c.example/n".into())
                ),
                ("client-2".into(), "Renamed".into(), true, None),
            ],
            "{}",
            s.label
        );
        assert!(s.w(|c| registry::set_client_status(c, "client-1", false)));
        assert!(!s.w(|c| registry::set_client_status(c, "client-9", true)));
        let active: Vec<bool> = {
            let mut v: Vec<(String, bool)> = s
                .r(registry::clients)
                .into_iter()
                .map(|c| (c.client_id, c.active))
                .collect();
            v.sort();
            v.into_iter().map(|x| x.1).collect()
        };
        assert_eq!(active, [false, true], "{}", s.label);
        assert!(s.w(|c| registry::set_client_status(c, "client-1", true)));
        assert_eq!(
            s.r(registry::clients).iter().filter(|c| c.active).count(),
            2
        );
        let keys: Vec<(String, i64, String)> = s
            .r(registry::active_client_keys)
            .into_iter()
            .map(|k| (k.client_id, k.key_version, k.public_key))
            .collect();
        assert_eq!(
            keys,
            [("client-1".to_string(), 2, key_b.to_base64())],
            "{}: only active keys, as last upserted",
            s.label
        );
        let mut merchants = s.r(registry::merchants);
        merchants.sort_by(|a, b| a.reference_merchant_id.cmp(&b.reference_merchant_id));
        let view: Vec<_> = merchants
            .iter()
            .map(|m| {
                (
                    m.client_id.as_str(),
                    m.reference_merchant_id.as_str(),
                    m.name.as_str(),
                    m.mcc.as_str(),
                    m.active,
                    m.currencies.as_str(),
                    m.settlement_currency.as_str(),
                    m.max_amount_minor,
                    m.notify_url.as_deref(),
                    m.fee_bps,
                    m.time_zone.as_str(),
                    m.cutoff_minutes,
                )
            })
            .collect();
        assert_eq!(
            view,
            [
                (
                    "client-1",
                    "M1",
                    "Shop",
                    "5411",
                    true,
                    "SGD,USD",
                    "USD",
                    Some(50_000),
                    Some("https://m.example/n"),
                    150,
                    "Asia/Singapore",
                    1_320
                ),
                (
                    "client-1",
                    "M2",
                    "Shop two",
                    "5411",
                    false,
                    "SGD,USD",
                    "USD",
                    None,
                    None,
                    150,
                    "Asia/Singapore",
                    1_320
                ),
            ],
            "{}",
            s.label
        );
        let stores_read: Vec<(String, String, String, String, String)> = s
            .r(registry::stores)
            .into_iter()
            .map(|(c, m, st)| (c, m, st.reference_store_id, st.name, st.mcc))
            .collect();
        assert_eq!(
            stores_read,
            [(
                "client-1".into(),
                "M1".into(),
                "S1".into(),
                "Corner shop".into(),
                "5812".into()
            )],
            "{}",
            s.label
        );
        let mut wallets: Vec<(String, String, String, String, String, bool)> = s
            .r(registry::wallets)
            .into_iter()
            .map(|w| {
                (
                    w.name,
                    w.psp_name,
                    w.base_url,
                    w.public_key,
                    w.currencies,
                    w.enabled,
                )
            })
            .collect();
        wallets.sort();
        assert_eq!(
            wallets,
            [
                (
                    "walleta".into(),
                    "WalletA".into(),
                    "http://wallet-a.example".into(),
                    key_a.to_base64(),
                    "SGD,USD".into(),
                    true
                ),
                (
                    "walletb".into(),
                    "WalletA".into(),
                    "http://wallet-a.example".into(),
                    key_b.to_base64(),
                    "SGD,USD".into(),
                    false
                ),
            ],
            "{}",
            s.label
        );
        let routes: Vec<(String, String, String, i64)> = s
            .r(registry::routes)
            .into_iter()
            .map(|r| {
                assert!(r.route_id > 0);
                (r.kind, r.pattern, r.wallet, r.priority)
            })
            .collect();
        assert_eq!(
            routes,
            [
                ("CII".into(), "281005".into(), "walletb".into(), 1),
                ("REGEX".into(), "^28".into(), "walletb".into(), 5),
                ("CII".into(), "289999".into(), "walletb".into(), 10),
            ],
            "{}: by priority, then id",
            s.label
        );
    }
}

// ------------------------------------------------------------------------------- risk

#[test]
fn the_risk_rules_counters_and_seen_codes_are_kept_per_day() {
    for s in stores("risk") {
        assert_eq!(s.r(risk::stored_rules), None);
        assert_eq!(s.r(risk::rules_version), 0);
        assert_eq!(s.w(|c| risk::store_rules(c, r#"{"rules":[]}"#, T0)), 1);
        assert_eq!(s.w(|c| risk::store_rules(c, r#"{"rules":[1]}"#, T0 + 1)), 2);
        assert_eq!(
            s.w(|c| risk::store_rules(c, r#"{"rules":[1]}"#, T0 + 2)),
            2,
            "{}: the same text keeps its version",
            s.label
        );
        assert_eq!(
            s.r(risk::stored_rules),
            Some((r#"{"rules":[1]}"#.to_string(), 2))
        );
        assert_eq!(s.r(risk::rules_version), 2);

        let day = T0 - T0.rem_euclid(DAY_MS);
        s.w(move |c| {
            risk::count_attempt(c, "client-1/M1", "SGD", 300, day + 10)?;
            risk::count_attempt(c, "client-1/M1", "SGD", 200, day + DAY_MS - 1)?;
            risk::count_attempt(c, "client-1/M1", "USD", 7, day + 20)?;
            risk::count_attempt(c, "client-1/M2", "SGD", 1_000, day + 30)?;
            risk::count_attempt(c, "client-1/M1", "SGD", 50, day + DAY_MS)
        });
        let today = |m: &'static str, cur: &'static str, at: i64| {
            s.r(move |c| risk::merchant_today(c, m, cur, at))
        };
        assert_eq!(today("client-1/M1", "SGD", day), (500, 3), "{}", s.label);
        assert_eq!(today("client-1/M1", "USD", day + 5), (7, 3), "{}", s.label);
        assert_eq!(today("client-1/M1", "EUR", day), (0, 3), "{}", s.label);
        assert_eq!(
            today("client-1/M1", "SGD", day + DAY_MS),
            (50, 1),
            "{}",
            s.label
        );
        assert_eq!(today("client-1/M9", "SGD", day), (0, 0), "{}", s.label);

        let (k1, k2) = (vec![1u8; 16], vec![2u8; 16]);
        let (a, b) = (k1.clone(), k2.clone());
        s.w(move |c| {
            risk::remember_code(c, &a, "P1", day - DAY_MS)?;
            risk::remember_code(c, &a, "P1-again", day - DAY_MS)?;
            risk::remember_code(c, &b, "P2", day - 3 * DAY_MS)
        });
        let seen = |key: &[u8], at: i64| {
            let key = key.to_vec();
            s.r(move |c| risk::code_seen(c, &key, at))
        };
        assert!(seen(&k1, day), "{}: seen yesterday", s.label);
        assert!(seen(&k1, day - DAY_MS), "{}: seen today", s.label);
        assert!(
            !seen(&k1, day + DAY_MS),
            "{}: two days ago is forgotten",
            s.label
        );
        assert!(!seen(&k2, day), "{}", s.label);
        assert!(!seen(&[3u8; 16], day), "{}", s.label);
        // Stale means from before yesterday; a prune takes at most `limit`.
        assert!(s.r(move |c| risk::any_stale_seen_codes(c, day)));
        assert!(!s.r(move |c| risk::any_stale_seen_codes(c, day - 2 * DAY_MS)));
        s.w(move |c| risk::remember_code(c, &[4u8; 16], "P4", day - 4 * DAY_MS));
        assert_eq!(s.w(move |c| risk::prune_seen_codes(c, day, 1)), 1);
        assert_eq!(s.w(move |c| risk::prune_seen_codes(c, day, 10)), 1);
        assert_eq!(s.w(move |c| risk::prune_seen_codes(c, day, 10)), 0);
        assert!(!s.r(move |c| risk::any_stale_seen_codes(c, day)));
        assert!(seen(&k1, day), "{}: a prune keeps yesterday", s.label);
    }
}

// ------------------------------------------------------------------------------- guesses

#[test]
fn guessing_counters_count_in_their_window_and_are_pruned() {
    let limit = SourceLimit {
        failures_max: 3,
        window_s: 60,
    };
    for s in stores("guesses") {
        use paycode_acquirer::store::guesses;
        assert_eq!(s.r(|c| guesses::load(c, "c\u{1f}client-1")), None);
        s.w(move |c| {
            guesses::count_failure(c, "c\u{1f}client-1", limit, T0)?;
            guesses::count_failure(c, "c\u{1f}client-1", limit, T0 + 59_999)?;
            guesses::count_failure(c, "m\u{1f}client-1\u{1f}M1", limit, T0 + 10)
        });
        let counter = s
            .r(|c| guesses::load(c, "c\u{1f}client-1"))
            .expect("a counter");
        assert_eq!(
            (counter.window_start_ms, counter.failures),
            (T0, 2),
            "{}",
            s.label
        );
        // A failure after the window starts a new one.
        s.w(move |c| guesses::count_failure(c, "c\u{1f}client-1", limit, T0 + 60_000));
        let counter = s
            .r(|c| guesses::load(c, "c\u{1f}client-1"))
            .expect("a counter");
        assert_eq!(
            (counter.window_start_ms, counter.failures),
            (T0 + 60_000, 1),
            "{}",
            s.label
        );
        assert!(s.r(|c| guesses::any_older_than(c, T0 + 11)));
        assert!(!s.r(|c| guesses::any_older_than(c, T0 + 10)));
        s.w(move |c| guesses::count_failure(c, "t\u{1f}x", limit, T0 + 5));
        assert_eq!(s.w(|c| guesses::prune(c, T0 + 60_000, 1)), 1);
        assert_eq!(s.w(|c| guesses::prune(c, T0 + 60_000, 10)), 1);
        assert_eq!(s.w(|c| guesses::prune(c, T0 + 60_000, 10)), 0);
        assert!(s.r(|c| guesses::load(c, "c\u{1f}client-1")).is_some());
        // A count that is not a u32 is corrupt, not wrapped.
        s.sql("UPDATE guess_counters SET failures = -1");
        corrupt(
            s.label,
            s.try_r(|c| guesses::load(c, "c\u{1f}client-1")),
            &[],
        );
    }
}

// ------------------------------------------------------------------------------- settlement

#[test]
fn items_are_inserted_once_batched_once_and_listed_in_event_order() {
    for s in stores("settle_items") {
        let i1 = item("P1", "PAYMENT", T0 + 20);
        let i2 = ItemRow {
            reference_store_id: None,
            quote_price: None,
            ..item("R1", "REFUND", T0 + 10)
        };
        let i3 = item("P1", "CANCEL", T0 + 30);
        let rows = [i1.clone(), i2.clone(), i3.clone()];
        let inserted = s.w(move |c| {
            let mut n = Vec::new();
            for r in &rows {
                n.push(settlement::insert_item(c, r)?);
            }
            // An item swept twice is kept once, as first inserted.
            n.push(settlement::insert_item(
                c,
                &ItemRow {
                    amount_minor: 1,
                    ..rows[0].clone()
                },
            )?);
            Ok(n)
        });
        assert_eq!(inserted, [1, 1, 1, 0], "{}", s.label);
        let read = s.r(|c| {
            let mut v = Vec::new();
            audit::each_item(c, |i| {
                v.push(i);
                Ok(())
            })?;
            Ok(v)
        });
        // By transaction, then kind.
        assert_eq!(read, [i3.clone(), i1.clone(), i2.clone()], "{}", s.label);
        // Due groups, by owner and currency, bounded by the due time.
        let groups = |bound: i64| -> Vec<(String, String, String, String)> {
            s.r(move |c| settlement::due_settlement_groups(c, bound, 10))
                .into_iter()
                .map(|g| (g.owner, g.currency, g.client_id, g.reference_merchant_id))
                .collect()
        };
        assert!(groups(T0 + 1_009).is_empty(), "{}", s.label);
        assert_eq!(
            groups(T0 + 1_010),
            [(
                "client-1/M1".into(),
                "USD".into(),
                CLIENT.into(),
                "M1".into()
            )],
            "{}",
            s.label
        );
        let unsettled = |bound: i64| -> Vec<String> {
            let mut v: Vec<String> = s
                .r(move |c| settlement::unsettled_items(c, &merchant_group(), bound))
                .into_iter()
                .map(|i| format!("{}/{}", i.transaction_id, i.kind))
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            unsettled(T0 + 1_020),
            ["P1/PAYMENT", "R1/REFUND"],
            "{}",
            s.label
        );
        // Defer moves what is due now to the next business day.
        s.w(|c| settlement::defer_unsettled(c, &merchant_group(), T0 + 1_010, T0 + 5_000));
        assert_eq!(
            unsettled(T0 + 1_030),
            ["P1/CANCEL", "P1/PAYMENT"],
            "{}",
            s.label
        );
        assert_eq!(unsettled(T0 + 5_000).len(), 3, "{}", s.label);
        // Assigning is once: an item already in a batch is not moved.
        assert!(s.w(|c| settlement::assign_batch(c, "B1", "P1", "PAYMENT")));
        assert!(s.w(|c| settlement::assign_batch(c, "B1", "R1", "REFUND")));
        assert!(!s.w(|c| settlement::assign_batch(c, "B2", "P1", "PAYMENT")));
        assert!(!s.w(|c| settlement::assign_batch(c, "B2", "P9", "PAYMENT")));
        let in_b1: Vec<String> = s
            .r(|c| settlement::items_of_batch(c, "B1"))
            .into_iter()
            .map(|i| i.transaction_id)
            .collect();
        assert_eq!(in_b1, ["R1", "P1"], "{}: by event time", s.label);
        assert!(s.r(|c| settlement::items_of_batch(c, "B2")).is_empty());
        assert_eq!(unsettled(T0 + 5_000), ["P1/CANCEL"], "{}", s.label);

        // Clearing: the same for wallets.
        let cgroups = |bound: i64| -> Vec<(String, String, String)> {
            s.r(move |c| settlement::due_clearing_groups(c, bound, 10))
                .into_iter()
                .map(|g| (g.owner, g.currency, g.client_id))
                .collect()
        };
        assert!(cgroups(T0 + 2_009).is_empty(), "{}", s.label);
        assert_eq!(
            cgroups(T0 + 2_010),
            [("walleta".into(), "SGD".into(), String::new())],
            "{}",
            s.label
        );
        let uncleared = |bound: i64| -> usize {
            s.r(move |c| settlement::uncleared_items(c, &wallet_group(), bound))
                .len()
        };
        assert_eq!(uncleared(T0 + 2_020), 2, "{}", s.label);
        s.w(|c| settlement::defer_uncleared(c, &wallet_group(), T0 + 2_010, T0 + 9_000));
        assert_eq!(uncleared(T0 + 2_030), 2, "{}", s.label);
        assert_eq!(uncleared(T0 + 9_000), 3, "{}", s.label);
        assert!(s.w(|c| settlement::assign_clearing(c, "K1", "P1", "CANCEL")));
        assert!(!s.w(|c| settlement::assign_clearing(c, "K2", "P1", "CANCEL")));
        let in_k1 = s.r(|c| settlement::items_of_clearing(c, "K1"));
        assert_eq!(in_k1.len(), 1);
        assert_eq!(in_k1[0].clearing_id.as_deref(), Some("K1"));
        assert_eq!(in_k1[0].batch_id, None);
        assert_eq!(uncleared(T0 + 9_000), 2, "{}", s.label);
        assert!(s.r(|c| settlement::items_of_clearing(c, "K2")).is_empty());
    }
}

#[test]
fn batches_and_clearings_read_back_list_newest_first_and_track_their_files() {
    for s in stores("settle_batches") {
        let b1 = batch("B1", 1, T0 + 10);
        let b2 = BatchRow {
            entry_id: None,
            merchant: "client-1/M2".to_string(),
            ..batch("B2", 1, T0 + 20)
        };
        let b3 = batch("B3", 2, T0 + 20);
        let k1 = clearing("K1", 1, T0 + 5);
        let k2 = ClearingRow {
            wallet: "walletb".to_string(),
            entry_id: Some(9),
            ..clearing("K2", 1, T0 + 6)
        };
        let rows = (
            [b1.clone(), b2.clone(), b3.clone()],
            [k1.clone(), k2.clone()],
        );
        s.w(move |c| {
            for b in &rows.0 {
                settlement::insert_batch(c, b)?;
            }
            for k in &rows.1 {
                settlement::insert_clearing(c, k)?;
            }
            Ok(())
        });
        assert_eq!(s.r(|c| settlement::batch_by_id(c, "B2")), Some(b2.clone()));
        assert_eq!(s.r(|c| settlement::batch_by_id(c, "B9")), None);
        assert_eq!(
            s.r(|c| settlement::clearing_by_id(c, "K2")),
            Some(k2.clone())
        );
        assert_eq!(s.r(|c| settlement::clearing_by_id(c, "K9")), None);
        unique(
            s.label,
            s.try_w(|c| settlement::insert_batch(c, &batch("B4", 1, T0))),
            "settlement_batches.merchant, settlement_batches.currency, \
             settlement_batches.business_day, settlement_batches.seq",
        );
        unique(
            s.label,
            s.try_w(|c| settlement::insert_batch(c, &batch("B1", 7, T0))),
            "settlement_batches.batch_id",
        );
        unique(
            s.label,
            s.try_w(|c| settlement::insert_clearing(c, &clearing("K1", 7, T0))),
            "clearing_batches.clearing_id",
        );
        let g = merchant_group();
        assert_eq!(
            s.r(move |c| settlement::last_batch_seq(c, &g, 20_600)),
            Some(2)
        );
        let g = merchant_group();
        assert_eq!(
            s.r(move |c| settlement::last_batch_seq(c, &g, 20_601)),
            None
        );
        let g = wallet_group();
        assert_eq!(
            s.r(move |c| settlement::last_clearing_seq(c, &g, 20_600)),
            Some(1)
        );
        let g = wallet_group();
        assert_eq!(s.r(move |c| settlement::last_clearing_seq(c, &g, 1)), None);
        // Newest first, ties by id; optionally of one owner.
        assert_eq!(
            s.r(|c| settlement::batches(c, None, 10)),
            [b2.clone(), b3.clone(), b1.clone()],
            "{}",
            s.label
        );
        assert_eq!(
            s.r(|c| settlement::batches(c, Some("client-1/M1"), 1)),
            std::slice::from_ref(&b3)
        );
        assert_eq!(
            s.r(|c| settlement::clearings(c, None, 10)),
            [k2.clone(), k1.clone()]
        );
        assert_eq!(
            s.r(|c| settlement::clearings(c, Some("walleta"), 10)),
            std::slice::from_ref(&k1)
        );
        // Files: the closed batches without them, oldest first, until they are written.
        let ids = |v: Vec<BatchRow>| v.into_iter().map(|b| b.batch_id).collect::<Vec<_>>();
        assert_eq!(
            ids(s.r(|c| settlement::batches_without_files(c, 10))).len(),
            3
        );
        assert_eq!(
            ids(s.r(|c| settlement::batches_without_files(c, 1))),
            ["B1"]
        );
        s.w(|c| settlement::set_batch_files_written(c, "B1", T0 + 100));
        let mut left = ids(s.r(|c| settlement::batches_without_files(c, 10)));
        left.sort();
        assert_eq!(left, ["B2", "B3"], "{}", s.label);
        assert_eq!(s.r(|c| settlement::clearings_without_files(c, 10)).len(), 2);
        assert_eq!(
            s.r(|c| settlement::clearings_without_files(c, 1)),
            std::slice::from_ref(&k1)
        );
        s.w(|c| settlement::set_clearing_files_written(c, "K1", T0 + 100));
        assert_eq!(
            s.r(|c| settlement::clearings_without_files(c, 10)),
            std::slice::from_ref(&k2)
        );
        let each: (Vec<BatchRow>, Vec<ClearingRow>) = s.r(|c| {
            let (mut b, mut k) = (Vec::new(), Vec::new());
            audit::each_batch(c, |x| {
                b.push(x);
                Ok(())
            })?;
            audit::each_clearing(c, |x| {
                k.push(x);
                Ok(())
            })?;
            Ok((b, k))
        });
        assert_eq!(each.0, [b1, b2, b3], "{}: by id", s.label);
        assert_eq!(each.1, [k1, k2], "{}: by id", s.label);
    }
}

#[test]
fn the_sweep_cursor_only_moves_forward_and_due_work_is_seen() {
    for s in stores("settle_cursor") {
        assert_eq!(s.r(settlement::cursor), (0, 0), "{}", s.label);
        s.w(|c| settlement::set_cursor(c, T0, T0 + 60_000));
        assert_eq!(s.w(settlement::cursor), (T0, T0 + 60_000), "{}", s.label);
        // An older sweep never moves the cursor back, but does set the next sweep time.
        s.w(|c| settlement::set_cursor(c, T0 - 5, T0 + 1));
        assert_eq!(s.r(settlement::cursor), (T0, T0 + 1), "{}", s.label);

        assert!(!s.r(|c| settlement::anything_due(c, T0 + 1_000_000)));
        s.w(|c| settlement::insert_item(c, &item("P1", "PAYMENT", T0)));
        assert!(
            !s.r(|c| settlement::anything_due(c, T0 + 999)),
            "{}",
            s.label
        );
        assert!(
            s.r(|c| settlement::anything_due(c, T0 + 1_000)),
            "{}: settle due",
            s.label
        );
        s.w(|c| {
            settlement::assign_batch(c, "B1", "P1", "PAYMENT")?;
            settlement::insert_batch(c, &batch("B1", 1, T0))
        });
        assert!(
            s.r(|c| settlement::anything_due(c, T0)),
            "{}: a batch without files",
            s.label
        );
        s.w(|c| settlement::set_batch_files_written(c, "B1", T0));
        assert!(
            !s.r(|c| settlement::anything_due(c, T0 + 1_999)),
            "{}",
            s.label
        );
        assert!(
            s.r(|c| settlement::anything_due(c, T0 + 2_000)),
            "{}: clearing due",
            s.label
        );
        s.w(|c| {
            settlement::assign_clearing(c, "K1", "P1", "PAYMENT")?;
            settlement::insert_clearing(c, &clearing("K1", 1, T0))
        });
        assert!(s.r(|c| settlement::anything_due(c, T0)), "{}", s.label);
        s.w(|c| settlement::set_clearing_files_written(c, "K1", T0));
        assert!(
            !s.r(|c| settlement::anything_due(c, T0 + 1_000_000)),
            "{}",
            s.label
        );
    }
}

// ------------------------------------------------------------------------------- audit

#[test]
fn the_audit_queries_find_each_kind_of_broken_fact() {
    for s in stores("audit") {
        let p = paid("P1", T0);
        let q = p.clone();
        let good = s.w(move |c| {
            store::insert_payment(c, &q)?;
            store::post_entry(c, &payment_entry(&q), Some("P1"), None, T0)
        });
        type Found = (
            Vec<(i64, String, i64, i64)>,
            Vec<(i64, i64, String, i64)>,
            Vec<(i64, i64)>,
            Vec<(i64, String, Option<String>)>,
            Vec<(String, String, i64, Option<(String, i64)>)>,
            Vec<(String, i64, String)>,
        );
        let findings = |s: &Store| -> Found {
            s.r(|c| {
                let mut f: Found = Default::default();
                audit::each_unbalanced_entry(c, |x| {
                    f.0.push(x);
                    Ok(())
                })?;
                audit::each_malformed_posting(c, |x| {
                    f.1.push(x);
                    Ok(())
                })?;
                audit::each_short_entry(c, |x| {
                    f.2.push(x);
                    Ok(())
                })?;
                audit::each_ownerless_entry(c, |x| {
                    f.3.push(x);
                    Ok(())
                })?;
                audit::each_balance_mismatch(c, |m| {
                    f.4.push((m.account, m.currency, m.total, m.balance));
                    Ok(())
                })?;
                audit::each_balance_without_postings(c, |x| {
                    f.5.push(x);
                    Ok(())
                })?;
                Ok(f)
            })
        };
        assert_eq!(
            findings(&s),
            Found::default(),
            "{}: a sound ledger",
            s.label
        );
        // Break it in every way the audit looks for.
        s.sql(&format!(
            "INSERT INTO journal_entries (kind, payment_id, refund_id, created_ms) \
             VALUES ('payment', 'ghost', NULL, {T0}); \
             INSERT INTO postings (entry_id, idx, account, side, amount_minor, currency) \
             VALUES ({good}, 9, 'x', 'X', 0, 'SGD'); \
             UPDATE account_balances SET balance_minor = balance_minor + 1 \
             WHERE account = '{FEE_ACCOUNT}'; \
             INSERT INTO account_balances (account, currency, balance_minor) \
             VALUES ('lonely', 'SGD', 7);"
        ));
        let ghost = good + 1;
        let mut f = findings(&s);
        f.4.sort();
        assert_eq!(f.0, [], "{}: a posting of 0 unbalances nothing", s.label);
        assert_eq!(f.1, [(good, 9, "X".to_string(), 0)], "{}", s.label);
        assert_eq!(f.2, [(ghost, 0)], "{}", s.label);
        assert_eq!(
            f.3,
            [(ghost, "payment".to_string(), Some("ghost".to_string()))],
            "{}",
            s.label
        );
        assert_eq!(
            f.4,
            [
                (
                    FEE_ACCOUNT.to_string(),
                    "SGD".to_string(),
                    -20,
                    Some(("SGD".to_string(), -19))
                ),
                ("x".to_string(), "SGD".to_string(), 0, None),
            ],
            "{}",
            s.label
        );
        assert_eq!(
            f.5,
            [("lonely".to_string(), 7, "SGD".to_string())],
            "{}",
            s.label
        );
        s.sql(&format!(
            "INSERT INTO postings (entry_id, idx, account, side, amount_minor, currency) \
             VALUES ({ghost}, 0, '{WALLET_ACCOUNT}', 'D', 5, 'SGD')"
        ));
        let f = findings(&s);
        assert_eq!(f.0, [(ghost, "SGD".to_string(), 5, 0)], "{}", s.label);
        assert_eq!(f.2, [(ghost, 1)], "{}", s.label);

        // Items in batches or clearings that do not exist.
        s.w(|c| {
            settlement::insert_item(
                c,
                &ItemRow {
                    batch_id: Some("B-gone".to_string()),
                    ..item("P1", "PAYMENT", T0)
                },
            )?;
            settlement::insert_item(
                c,
                &ItemRow {
                    clearing_id: Some("K-gone".to_string()),
                    ..item("R1", "REFUND", T0)
                },
            )
        });
        let mut dangling = s.r(|c| {
            let mut v = Vec::new();
            audit::each_dangling_item(c, |x| {
                v.push(x);
                Ok(())
            })?;
            Ok(v)
        });
        dangling.sort();
        assert_eq!(
            dangling,
            [
                (
                    "PAYMENT".to_string(),
                    "P1".to_string(),
                    Some("B-gone".to_string()),
                    None
                ),
                (
                    "REFUND".to_string(),
                    "R1".to_string(),
                    None,
                    Some("K-gone".to_string())
                ),
            ],
            "{}",
            s.label
        );
        // A stream stops at the first error its function returns.
        let stopped = s
            .try_r(|c| audit::each_payment_id(c, |_| Err(StoreError::Corrupt("stop".to_string()))));
        assert!(
            matches!(stopped, Err(StoreError::Corrupt(_))),
            "{}",
            s.label
        );
        let in_snapshot = s.r(|c| audit::in_snapshot(c, audit::count_entries));
        assert_eq!(in_snapshot, 2, "{}", s.label);
    }
}

#[test]
fn unswept_settled_events_are_found_until_their_item_exists() {
    for s in stores("audit_unswept") {
        s.w(|c| {
            store::insert_payment(c, &paid("P1", T0))?;
            store::insert_payment(
                c,
                &PaymentRow {
                    cancelled_ms: Some(T0 + 5),
                    state: PaymentState::Cancelled,
                    result_code: ResultCode::ORDER_IS_CLOSED,
                    ..paid("P2", T0 + 1)
                },
            )?;
            // Cancelled before it was paid: nothing to settle.
            store::insert_payment(
                c,
                &PaymentRow {
                    cancelled_ms: Some(T0 + 5),
                    state: PaymentState::Cancelled,
                    result_code: ResultCode::ORDER_IS_CLOSED,
                    ..payment("P3")
                },
            )?;
            store::insert_refund(
                c,
                &RefundRow {
                    state: RefundState::Success,
                    result_code: ResultCode::SUCCESS,
                    refunded_ms: Some(T0 + 7),
                    ..refund("R1", "P1", 100)
                },
            )?;
            store::insert_refund(c, &refund("R2", "P1", 100))
        });
        let unswept = |event: SettledEvent, before: i64| -> Vec<String> {
            let mut v = s.r(move |c| {
                let mut v = Vec::new();
                audit::each_unswept(c, event, before, |id| {
                    v.push(id);
                    Ok(())
                })?;
                Ok(v)
            });
            v.sort();
            v
        };
        assert_eq!(
            unswept(SettledEvent::Payment, T0 + 100),
            ["P1", "P2"],
            "{}",
            s.label
        );
        assert_eq!(
            unswept(SettledEvent::Payment, T0 + 1),
            ["P1"],
            "{}",
            s.label
        );
        assert_eq!(
            unswept(SettledEvent::Cancel, T0 + 100),
            ["P2"],
            "{}",
            s.label
        );
        assert!(
            unswept(SettledEvent::Cancel, T0 + 5).is_empty(),
            "{}",
            s.label
        );
        assert_eq!(
            unswept(SettledEvent::Refund, T0 + 100),
            ["R1"],
            "{}",
            s.label
        );
        for event in SettledEvent::ALL {
            let (_, kind) = event.table_and_kind();
            let ids = unswept(event, T0 + 100);
            let kind = kind.to_string();
            s.w(move |c| {
                for id in &ids {
                    settlement::insert_item(c, &item(id, &kind, T0))?;
                }
                Ok(())
            });
            assert!(unswept(event, T0 + 100).is_empty(), "{} {event:?}", s.label);
        }
    }
}

// ------------------------------------------------------------------------------- races

/// Four copies each of five pay requests at once, on two handles: each request is one
/// payment, counted once by risk, paid once in the ledger, whoever's copy created it.
#[test]
fn concurrent_duplicate_payments_are_one_payment_and_one_charge() {
    for s in racing_stores("race_pay") {
        let created = race(&s, 20, |i, db| {
            let row = PaymentRow {
                // Each copy has its own payment id, as each acquirer process would give it.
                payment_id: format!("P{}-{i}", i % 5),
                payment_request_id: format!("req-{}", i % 5),
                ..payment("x")
            };
            let mine = row.payment_id.clone();
            let created = db
                .write_blocking(move |c| pay_unit(c, &row))
                .unwrap_or_else(|e| panic!("{}: pay: {e:?}", s.label));
            // Every copy tells the payment it succeeded, as repeated wallet answers would.
            let rid = format!("req-{}", i % 5);
            db.write_blocking(move |c| {
                let p = store::payment_by_request_id(c, CLIENT, &rid)?
                    .ok_or_else(|| StoreError::NotFound(rid.clone()))?;
                apply_unit(c, &p.payment_id, PaymentEvent::WalletSucceeded, T0 + 1)
            })
            .unwrap_or_else(|e| panic!("{}: apply: {e:?}", s.label));
            (created, mine)
        });
        assert_eq!(
            created.iter().filter(|c| c.0).count(),
            5,
            "{}: one copy of each request created it",
            s.label
        );
        for k in 0..5 {
            let rid = format!("req-{k}");
            let p = s
                .r(|c| store::payment_by_request_id(c, CLIENT, &rid))
                .expect("the payment exists");
            assert_eq!(p.state, PaymentState::Success, "{}", s.label);
            assert!(
                created.iter().any(|(c, id)| *c && *id == p.payment_id),
                "{}: the stored payment is the creator's",
                s.label
            );
            let id = p.payment_id.clone();
            let kinds: Vec<String> = s
                .r(|c| store::postings_of_payment(c, &id))
                .into_iter()
                .map(|l| l.kind)
                .collect();
            assert_eq!(kinds, ["payment"; 3], "{}: one entry", s.label);
        }
        assert_eq!(s.r(audit::count_entries), 5, "{}", s.label);
        assert_eq!(ledger_of(&s), (5_000, -4_900, -100, 0), "{}", s.label);
        let n_payments = s.r(|c| {
            let mut n = 0;
            audit::each_payment_id(c, |_| {
                n += 1;
                Ok(())
            })?;
            Ok(n)
        });
        assert_eq!(n_payments, 5, "{}", s.label);
        let (amount, attempts) = s.r(|c| risk::merchant_today(c, "client-1/M1", "SGD", T0));
        assert_eq!(
            (amount, attempts),
            (5_000, 5),
            "{}: the copies that found the payment counted nothing",
            s.label
        );
    }
}

/// Eight refunds of 300 against one payment of 1000, each sent twice at once on two handles:
/// three fit, and only three are made; each copy of a made refund answers that refund.
#[test]
fn concurrent_refunds_never_exceed_the_payment() {
    for s in racing_stores("race_refund") {
        s.w(|c| {
            store::insert_payment(c, &paid("P1", T0))?;
            store::post_entry(c, &payment_entry(&paid("P1", T0)), Some("P1"), None, T0)
        });
        let answers = race(&s, 16, |i, db| {
            let row = RefundRow {
                refund_id: format!("R{}-{i}", i % 8),
                refund_request_id: format!("rreq-{}", i % 8),
                ..refund("x", "P1", 300)
            };
            let answer = db
                .write_blocking(move |c| refund_unit(c, &row))
                .unwrap_or_else(|e| panic!("{}: refund: {e:?}", s.label));
            if let Ok(r) = &answer {
                let id = r.refund_id.clone();
                db.write_blocking(move |c| refund_succeeded_unit(c, &id, T0 + 100))
                    .unwrap_or_else(|e| panic!("{}: refund success: {e:?}", s.label));
            }
            (i % 8, answer.map(|r| r.refund_id))
        });
        let refunds = s.r(|c| store::refunds_of_payment(c, "P1"));
        let made: BTreeSet<String> = refunds.iter().map(|r| r.refund_id.clone()).collect();
        assert_eq!(made.len(), 3, "{}: {refunds:?}", s.label);
        assert!(refunds.iter().all(|r| r.state == RefundState::Success));
        let total: i64 = refunds.iter().map(|r| r.amount_minor).sum();
        assert_eq!(total, 900, "{}", s.label);
        for (request, answer) in &answers {
            match answer {
                Ok(id) => assert!(made.contains(id), "{}: {id} was made", s.label),
                Err(why) => {
                    assert_eq!(*why, Refused::AmountExceeded, "{}", s.label);
                    // Both copies of a refused request were refused.
                    assert!(
                        answers
                            .iter()
                            .filter(|(r, _)| r == request)
                            .all(|(_, a)| a.is_err()),
                        "{}: request {request} was both made and refused",
                        s.label
                    );
                }
            }
        }
        assert_eq!(ledger_of(&s), (100, -80, -20, 0), "{}", s.label);
        assert_eq!(s.r(audit::count_entries), 4, "{}", s.label);
    }
}

/// The wallet's success and the merchant's confirmed cancel of one payment, at once: the
/// payment ends cancelled either way, with either no entry (the cancel won) or the payment
/// and its reversal (the success won), and the books back at zero.
#[test]
fn a_success_racing_a_cancel_ends_in_one_outcome() {
    for s in racing_stores("race_cancel") {
        let n = 6;
        s.w(move |c| {
            for k in 0..n {
                store::insert_payment(c, &payment(&format!("P{k}")))?;
            }
            Ok(())
        });
        let outcomes = race(&s, 2 * n, |i, db| {
            let id = format!("P{}", i / 2);
            let event = if i % 2 == 0 {
                PaymentEvent::WalletSucceeded
            } else {
                PaymentEvent::MerchantCancelConfirmed
            };
            let outcome = db
                .write_blocking(move |c| apply_unit(c, &id, event, T0 + 1))
                .unwrap_or_else(|e| panic!("{}: apply: {e:?}", s.label));
            (i / 2, event, outcome)
        });
        for k in 0..n {
            let id = format!("P{k}");
            let p = s.r(|c| store::payment_by_id(c, &id)).expect("the payment");
            assert_eq!(p.state, PaymentState::Cancelled, "{}", s.label);
            let kinds: Vec<String> = s
                .r(|c| store::postings_of_payment(c, &id))
                .into_iter()
                .map(|l| l.kind)
                .collect();
            let success = outcomes
                .iter()
                .find(|o| o.0 == k && o.1 == PaymentEvent::WalletSucceeded)
                .expect("the success ran");
            if success.2 == Outcome::Ignored {
                assert!(kinds.is_empty(), "{}: cancelled first: {kinds:?}", s.label);
            } else {
                assert_eq!(
                    kinds,
                    [
                        "payment", "payment", "payment", "cancel", "cancel", "cancel"
                    ],
                    "{}: paid, then reversed",
                    s.label
                );
            }
        }
        assert_eq!(ledger_of(&s), (0, 0, 0, 0), "{}", s.label);
    }
}

/// A merchant's cancel and a refund of one paid payment, at once: exactly one of them
/// proceeds (the cancel unit refuses while a refund is live, the refund unit while a cancel
/// is under way).
#[test]
fn a_cancel_request_racing_a_refund_lets_one_through() {
    for s in racing_stores("race_cancel_refund") {
        let n = 6;
        s.w(move |c| {
            for k in 0..n {
                store::insert_payment(c, &paid(&format!("P{k}"), T0))?;
            }
            Ok(())
        });
        let answers = race(&s, 2 * n, |i, db| {
            let id = format!("P{}", i / 2);
            if i % 2 == 0 {
                db.write_blocking(move |c| cancel_request_unit(c, &id, T0 + 1))
            } else {
                let row = RefundRow {
                    refund_id: format!("R{}", i / 2),
                    ..refund(&format!("R{}", i / 2), &id, 100)
                };
                db.write_blocking(move |c| Ok(refund_unit(c, &row)?.is_ok()))
            }
            .unwrap_or_else(|e| panic!("{}: {e:?}", s.label))
        });
        for k in 0..n {
            let (cancelled, refunded) = (answers[2 * k], answers[2 * k + 1]);
            assert!(
                cancelled != refunded,
                "{}: P{k}: cancel {cancelled}, refund {refunded}",
                s.label
            );
            let id = format!("P{k}");
            let p = s.r(|c| store::payment_by_id(c, &id)).expect("the payment");
            let refunds = s.r(|c| store::refunds_of_payment(c, &id));
            assert_eq!(p.cancel_requested_ms.is_some(), cancelled, "{}", s.label);
            assert_eq!(refunds.len(), usize::from(refunded), "{}", s.label);
        }
    }
}

/// Workers claiming due notifications at once never take the same one.
#[test]
fn concurrent_claims_never_hand_one_notification_to_two_workers() {
    for s in racing_stores("race_claim") {
        s.w(|c| {
            for k in 0..40 {
                store::enqueue_notification(c, &notification(&format!("P{k}"), "{}"), T0 + k)?;
            }
            Ok(())
        });
        let claimed = race(&s, 8, |_, db| {
            let mut mine = Vec::new();
            for _ in 0..3 {
                let rows = db
                    .write_blocking(|c| store::claim_due_notifications(c, T0 + 100, T0 + 60_000, 3))
                    .unwrap_or_else(|e| panic!("{}: claim: {e:?}", s.label));
                mine.extend(rows.into_iter().map(|r| r.outbox_id));
            }
            mine
        });
        let all: Vec<i64> = claimed.into_iter().flatten().collect();
        let distinct: BTreeSet<i64> = all.iter().copied().collect();
        assert_eq!(
            all.len(),
            distinct.len(),
            "{}: a row claimed twice",
            s.label
        );
        assert_eq!(all.len(), 40, "{}: all 40 were claimed, none lost", s.label);
    }
}

/// On PostgreSQL a claim skips the rows another open unit holds instead of waiting for it:
/// the second worker is answered while the first still holds its claim.
#[test]
fn a_claim_skips_what_an_open_claim_holds() {
    for s in racing_stores("skip_locked") {
        if s.engine() != Engine::Postgres || s.label != "postgres per unit" {
            continue;
        }
        s.w(|c| {
            for k in 0..4 {
                store::enqueue_notification(c, &notification(&format!("P{k}"), "{}"), T0 + k)?;
            }
            Ok(())
        });
        let (claimed_tx, claimed_rx) = std::sync::mpsc::channel::<()>();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<Vec<i64>>();
        let claimed_tx = Arc::new(std::sync::Mutex::new(claimed_tx));
        let done_rx = Arc::new(std::sync::Mutex::new(done_rx));
        let (first, second) = std::thread::scope(|scope| {
            let first = scope.spawn(|| {
                let (claimed_tx, done_rx) = (claimed_tx.clone(), done_rx.clone());
                s.dbs[0].write_blocking(move |c| {
                    let rows = store::claim_due_notifications(c, T0 + 100, T0 + 60_000, 2)?;
                    let _ = claimed_tx.lock().expect("not poisoned").send(());
                    // Hold the claim open until the other worker has its answer.
                    let other = done_rx
                        .lock()
                        .expect("not poisoned")
                        .recv_timeout(Duration::from_secs(5))
                        .ok();
                    let ids: Vec<i64> = rows.into_iter().map(|r| r.outbox_id).collect();
                    Ok::<_, StoreError>((ids, other))
                })
            });
            claimed_rx
                .recv_timeout(Duration::from_secs(5))
                .expect("the first claim ran");
            let second = s.dbs[1]
                .write_blocking(|c| store::claim_due_notifications(c, T0 + 100, T0 + 60_000, 10))
                .expect("the second claim");
            let ids: Vec<i64> = second.iter().map(|r| r.outbox_id).collect();
            done_tx.send(ids.clone()).expect("the first waits");
            (
                first.join().expect("no panic").expect("the first claim"),
                ids,
            )
        });
        let (first_ids, seen_by_first) = first;
        assert_eq!(first_ids.len(), 2);
        assert_eq!(
            seen_by_first.as_ref(),
            Some(&second),
            "the second claim was answered while the first was open"
        );
        assert_eq!(second.len(), 2, "the two rows the first did not hold");
        assert!(second.iter().all(|id| !first_ids.contains(id)));
    }
}

/// Failed code look-ups counted at once from many units all count (the guessing limit must
/// not under-count a burst of guesses).
#[test]
fn concurrent_guess_failures_all_count() {
    let limit = SourceLimit {
        failures_max: 1_000,
        window_s: 600,
    };
    for s in racing_stores("race_guess") {
        race(&s, 12, |i, db| {
            for k in 0..3 {
                let now = T0 + (i * 3 + k) as i64;
                db.write_blocking(move |c| {
                    paycode_acquirer::store::guesses::count_failure(c, "c\u{1f}x", limit, now)
                })
                .unwrap_or_else(|e| panic!("{}: count: {e:?}", s.label));
            }
        });
        let counter = s
            .r(|c| paycode_acquirer::store::guesses::load(c, "c\u{1f}x"))
            .expect("a counter");
        assert_eq!(counter.failures, 36, "{}", s.label);
        assert!(counter.window_start_ms >= T0 && counter.window_start_ms < T0 + 36);
    }
}

// ------------------------------------------------------------------------------- buyer risk

/// A buyer's attempts since `since_ms`, as the pay unit reads them.
fn attempts_of(
    c: &Connection<'_>,
    buyer: &str,
    since_ms: i64,
) -> StoreResult<Vec<paycode_core::risk::MinuteAttempts>> {
    Ok(risk::buyer_read(c, buyer, Some(since_ms), "SGD", None)?.attempts)
}

/// The customer key a buyer key is linked to, and whether that customer is blocked.
fn customer_of(c: &Connection<'_>, buyer: &str) -> StoreResult<Option<(String, bool)>> {
    let r = risk::buyer_read(c, buyer, None, "SGD", None)?;
    Ok(r.customer.map(|k| (k, r.blocked)))
}

/// The paid history kept under `key` (an unlinked key is its own customer key).
fn history_of(
    c: &Connection<'_>,
    key: &str,
    currency: &str,
    scopes: [&str; 2],
) -> StoreResult<[paycode_core::risk::AmountHistory; 2]> {
    Ok(risk::buyer_read(c, key, None, currency, Some(scopes))?.history)
}

#[test]
fn buyer_attempts_are_counted_per_minute_and_summed_over_every_key_of_a_customer() {
    for s in stores("buyer_attempts") {
        let minute = |m: i64| T0 - T0.rem_euclid(60_000) + m * 60_000;
        s.w(move |c| {
            risk::count_buyer_attempt(c, "B1", "SGD", 100, minute(0))?;
            risk::count_buyer_attempt(c, "B1", "SGD", 50, minute(0) + 59_999)?;
            risk::count_buyer_attempt(c, "B1", "USD", 7, minute(1))?;
            risk::count_buyer_attempt(c, "B2", "SGD", 1_000, minute(2))?;
            risk::count_buyer_attempt(c, "B3", "SGD", 9, minute(2))
        });
        let seen = |buyer: &'static str, since: i64| {
            let mut v: Vec<(i64, String, i64, i64)> = s
                .r(move |c| attempts_of(c, buyer, since))
                .into_iter()
                .map(|a| {
                    (
                        a.minute - minute(0) / 60_000,
                        a.currency.code().to_string(),
                        a.amount_minor,
                        a.n_attempts,
                    )
                })
                .collect();
            v.sort();
            v
        };
        let s1 = |m, c: &str, a, n| (m, c.to_string(), a, n);
        assert_eq!(
            seen("B1", minute(0)),
            [s1(0, "SGD", 150, 2), s1(1, "USD", 7, 1)],
            "{}",
            s.label
        );
        assert_eq!(seen("B1", minute(1)), [s1(1, "USD", 7, 1)], "{}", s.label);
        assert!(seen("B9", minute(0)).is_empty());

        // Once B1 and B2 are known to be one customer (a rotated slot), each sees both.
        assert_eq!(s.r(|c| customer_of(c, "B1")), None);
        s.w(|c| {
            risk::link_buyer(c, "B1", "walleta", "CUST-1", T0)?;
            risk::link_buyer(c, "B2", "walleta", "CUST-1", T0)?;
            // The same customer id at another wallet is another customer.
            risk::link_buyer(c, "B3", "walletb", "CUST-1", T0)
        });
        let b2 = seen("B2", minute(0));
        assert_eq!(
            b2,
            [
                s1(0, "SGD", 150, 2),
                s1(1, "USD", 7, 1),
                s1(2, "SGD", 1_000, 1)
            ],
            "{}",
            s.label
        );
        assert_eq!(seen("B3", minute(0)), [s1(2, "SGD", 9, 1)], "{}", s.label);
        assert_eq!(
            s.r(|c| customer_of(c, "B1")),
            Some(("walleta/CUST-1".to_string(), false))
        );

        // Blocking the customer shows on every key linked to it, and only there.
        let row = |wallet: &str, id: &str| risk::BlockedCustomer {
            wallet: wallet.to_string(),
            customer_id: id.to_string(),
            reason: "chargebacks".to_string(),
            source: "operator".to_string(),
            created_ms: T0,
        };
        let (a, b) = (row("walleta", "CUST-1"), row("walleta", "CUST-1"));
        assert!(s.w(move |c| risk::block_customer(c, &a)));
        assert!(!s.w(move |c| risk::block_customer(c, &b)), "blocked once");
        assert!(s.r(|c| customer_of(c, "B2")).unwrap().1);
        assert!(!s.r(|c| customer_of(c, "B3")).unwrap().1);
        same(
            s.label,
            &s.r(risk::blocked_customers),
            &vec![row("walleta", "CUST-1")],
        );
        assert!(s.w(|c| risk::unblock_customer(c, "walleta", "CUST-1")));
        assert!(!s.w(|c| risk::unblock_customer(c, "walleta", "CUST-1")));
        assert!(!s.r(|c| customer_of(c, "B2")).unwrap().1);
    }
}

#[test]
fn a_customers_history_counts_paid_amounts_per_scope_and_halves_when_long() {
    use paycode_core::risk::AmountHistory;
    for s in stores("buyer_history") {
        let scopes = ["M:client-1/M1", "MCC:5812"];
        s.w(move |c| {
            risk::record_paid_at(c, "walleta/CUST-1", scopes, "SGD", 1_000, T0)?;
            risk::record_paid_at(c, "walleta/CUST-1", scopes, "SGD", 3_000, T0)?;
            // Another merchant of the same MCC: only the MCC scope moves.
            risk::record_paid_at(
                c,
                "walleta/CUST-1",
                ["M:client-1/M2", scopes[1]],
                "SGD",
                500,
                T0,
            )?;
            risk::record_paid_at(c, "walleta/CUST-1", scopes, "USD", 9, T0)
        });
        let h = |n, t| AmountHistory {
            n_payments: n,
            total_minor: t,
        };
        assert_eq!(
            s.r(move |c| history_of(c, "walleta/CUST-1", "SGD", scopes)),
            [h(2, 4_000), h(3, 4_500)],
            "{}",
            s.label
        );
        assert_eq!(
            s.r(move |c| history_of(c, "walleta/CUST-2", "SGD", scopes)),
            [h(0, 0), h(0, 0)]
        );
        // The stored history follows the core's bounded statistic exactly.
        let mut model = AmountHistory::default();
        for i in 0..(AmountHistory::HALVE_AT + 5) {
            let amount = 100 + i % 7;
            model = model.with_payment(amount);
            s.w(move |c| risk::record_paid_at(c, "B9", ["M:x", "MCC:x"], "SGD", amount, T0));
        }
        assert_eq!(
            s.r(|c| history_of(c, "B9", "SGD", ["M:x", "MCC:x"])),
            [model, model],
            "{}",
            s.label
        );
    }
}

#[test]
fn decisions_are_kept_per_payment_newest_first_and_old_buyer_data_is_pruned() {
    for s in stores("decisions") {
        let d = |id: &str, at: i64| risk::DecisionRow {
            payment_id: id.to_string(),
            created_ms: at,
            rules_version: 3,
            verdict: "CHALLENGE".to_string(),
            hits: r#"[{"ruleId":"a"}]"#.to_string(),
            shadow: "[]".to_string(),
        };
        let (a, b) = (d("P1", T0), d("P2", T0 + 1));
        s.w(move |c| {
            risk::insert_decision(c, &a)?;
            risk::insert_decision(c, &b)
        });
        same(
            s.label,
            &s.r(|c| risk::decision(c, "P1")),
            &Some(d("P1", T0)),
        );
        assert_eq!(s.r(|c| risk::decision(c, "P9")), None);
        let recent: Vec<String> = s
            .r(|c| risk::recent_decisions(c, 10))
            .into_iter()
            .map(|d| d.payment_id)
            .collect();
        assert_eq!(recent, ["P2", "P1"], "{}", s.label);
        assert_eq!(s.r(|c| risk::recent_decisions(c, 1)).len(), 1);
        let again = d("P1", T0);
        unique(
            s.label,
            s.try_w(move |c| risk::insert_decision(c, &again)),
            "risk_decisions.payment_id",
        );

        s.w(|c| {
            risk::count_buyer_attempt(c, "OLD", "SGD", 1, T0 - 3 * DAY_MS)?;
            risk::count_buyer_attempt(c, "NEW", "SGD", 1, T0)?;
            risk::link_buyer(c, "OLD", "w", "C", T0 - 31 * DAY_MS)?;
            risk::link_buyer(c, "NEW", "w", "C", T0)?;
            risk::record_paid_at(c, "OLD", ["M:x", "MCC:x"], "SGD", 1, T0 - 181 * DAY_MS)?;
            risk::record_paid_at(c, "NEW", ["M:x", "MCC:x"], "SGD", 1, T0)
        });
        assert!(s.r(|c| risk::any_stale_buyer_data(c, T0)));
        assert_eq!(
            s.w(|c| risk::prune_buyer_data(c, T0, 100)),
            4,
            "an attempt, a link, two histories"
        );
        assert!(!s.r(|c| risk::any_stale_buyer_data(c, T0)));
        assert_eq!(s.r(|c| attempts_of(c, "NEW", T0 - DAY_MS)).len(), 1);
        assert!(s.r(|c| customer_of(c, "NEW")).is_some());
        assert!(s.r(|c| customer_of(c, "OLD")).is_none());
    }
}

#[test]
fn replay_rows_page_through_a_period_oldest_first_with_paid_and_refunded() {
    for s in stores("replay_rows") {
        s.w(|c| {
            let mut p1 = paid("P1", T0 + 10);
            p1.created_ms = T0;
            store::insert_payment(c, &p1)?;
            let mut p2 = payment("P2");
            p2.created_ms = T0;
            store::insert_payment(c, &p2)?;
            let mut p3 = payment("P3");
            p3.created_ms = T0 + 5;
            store::insert_payment(c, &p3)?;
            let mut r = refund("R1", "P1", 100);
            r.state = paycode_core::payment::RefundState::Success;
            r.refunded_ms = Some(T0 + 20);
            store::insert_refund(c, &r)
        });
        let page = |after: Option<(i64, &'static str)>, limit| {
            s.r(move |c| risk::replay_rows(c, T0, T0 + 5, after, limit))
                .into_iter()
                .map(|r| (r.payment_id, r.paid, r.refunded))
                .collect::<Vec<_>>()
        };
        let p = |id: &str, paid, refunded| (id.to_string(), paid, refunded);
        assert_eq!(
            page(None, 10),
            [p("P1", true, true), p("P2", false, false)],
            "{}",
            s.label
        );
        assert_eq!(page(None, 1), [p("P1", true, true)]);
        assert_eq!(page(Some((T0, "P1")), 10), [p("P2", false, false)]);
        assert_eq!(page(Some((T0, "P2")), 10), []);
        let row = s.r(|c| risk::replay_rows(c, T0, T0 + 1, None, 1)).remove(0);
        assert_eq!(row.buyer.as_deref(), Some("28101212345678"));
        assert_eq!(row.psp_customer_id.as_deref(), Some("CUST-1"));
    }
}

/// The pay unit's one read: attempts of every linked key, the link, the block, and the history
/// under the customer key (under the buyer key while unlinked); what is not asked for is not
/// read.
#[test]
fn the_buyer_read_follows_the_link_to_the_customer() {
    use paycode_core::risk::AmountHistory;
    for s in stores("buyer_read") {
        let scopes = ["M:client-1/M1", "MCC:5812"];
        let minute0 = T0 - T0.rem_euclid(60_000);
        s.w(move |c| {
            risk::count_buyer_attempt(c, "B1", "SGD", 100, minute0)?;
            risk::count_buyer_attempt(c, "B2", "SGD", 70, minute0 + 60_000)?;
            risk::count_buyer_attempt(c, "B2", "USD", 5, minute0 + 60_000)?;
            risk::record_paid_at(c, "B3", scopes, "SGD", 400, T0)?;
            risk::record_paid_at(c, "walleta/CUST-1", scopes, "SGD", 900, T0)?;
            risk::record_paid_at(c, "walleta/CUST-1", scopes, "SGD", 100, T0)
        });
        let read = |buyer: &'static str| {
            s.r(move |c| risk::buyer_read(c, buyer, Some(minute0), "SGD", Some(scopes)))
        };
        let h = |n, t| AmountHistory {
            n_payments: n,
            total_minor: t,
        };
        let unlinked = read("B3");
        assert_eq!((unlinked.customer, unlinked.blocked), (None, false));
        assert_eq!(unlinked.history, [h(1, 400), h(1, 400)], "{}", s.label);
        assert_eq!(read("B1").history, [h(0, 0), h(0, 0)], "not yet linked");
        s.w(|c| {
            risk::link_buyer(c, "B1", "walleta", "CUST-1", T0)?;
            risk::link_buyer(c, "B2", "walleta", "CUST-1", T0)
        });
        let linked = read("B1");
        assert_eq!(linked.customer.as_deref(), Some("walleta/CUST-1"));
        assert_eq!(linked.attempts.len(), 3, "{}: both keys' minutes", s.label);
        assert_eq!(linked.history, [h(2, 1_000), h(2, 1_000)], "{}", s.label);
        let row = risk::BlockedCustomer {
            wallet: "walleta".to_string(),
            customer_id: "CUST-1".to_string(),
            reason: "x".to_string(),
            source: "operator".to_string(),
            created_ms: T0,
        };
        s.w(move |c| risk::block_customer(c, &row));
        assert!(read("B2").blocked);
        // Nothing asked for: only the link and the block are read.
        let bare = s.r(|c| risk::buyer_read(c, "B2", None, "SGD", None));
        assert!(bare.attempts.is_empty() && bare.blocked);
        assert_eq!(bare.history, [AmountHistory::default(); 2]);
    }
}

/// Payments of one device at several merchants at once: a velocity rule lets exactly `max`
/// through, on every engine and across two processes.
#[test]
fn concurrent_payments_of_one_buyer_never_pass_its_velocity_limit() {
    use paycode_acquirer::risk::{PaymentContext, decide};
    use paycode_core::risk::{Action, Mode, Rule, RuleKind, RuleSet, Verdict};
    let set = RuleSet {
        version: 1,
        rules: vec![Rule {
            id: "burst".to_string(),
            kind: RuleKind::CustomerVelocity {
                window_minutes: 10,
                max: 3,
            },
            action: Action::Reject(ResultCode::PAYMENT_COUNT_EXCEED_LIMIT),
            mode: Mode::Enforce,
        }],
    };
    for s in racing_stores("race_velocity") {
        let verdicts = race(&s, 10, |i, db| {
            let set = set.clone();
            db.write_blocking(move |c| {
                let merchant = format!("client-1/M{i}");
                decide(
                    c,
                    &set,
                    &PaymentContext {
                        merchant: &merchant,
                        merchant_mcc: "5812",
                        store_mcc: None,
                        merchant_country: None,
                        merchant_time_zone: "UTC",
                        wallet: "walleta",
                        wallet_countries: &[],
                        wallet_transaction_currencies: &[],
                        amount: money(100, "SGD"),
                        code_key: &[0; 16],
                        buyer: Some("28101212345678"),
                        now_ms: T0,
                    },
                )
                .map(|d| d.verdict)
            })
            .unwrap_or_else(|e| panic!("{}: decide: {e:?}", s.label))
        });
        let allowed = verdicts.iter().filter(|v| **v == Verdict::Allow).count();
        assert_eq!(allowed, 3, "{}: {verdicts:?}", s.label);
        let counted: i64 = s
            .r(|c| attempts_of(c, "28101212345678", T0 - 60_000))
            .iter()
            .map(|a| a.n_attempts)
            .sum();
        assert_eq!(counted, 10, "{}: every attempt counts", s.label);
    }
}

// ------------------------------------------------------------------------------- retry

/// A pay unit that meets a serialization failure on its first run is run again and applied
/// once: one payment, one entry, the balances of one payment (PostgreSQL; SQLite has no such
/// failure).
#[test]
fn a_pay_unit_that_meets_a_serialization_failure_is_re_run_and_applied_once() {
    for s in racing_stores("retry") {
        if s.engine() != Engine::Postgres {
            continue;
        }
        let runs = Arc::new(AtomicU32::new(0));
        let seen = runs.clone();
        let created = s.w(move |c| {
            let row = paid("P1", T0);
            let created = pay_unit(c, &row)?;
            store::post_entry(c, &payment_entry(&row), Some("P1"), None, T0)?;
            if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                c.execute_batch(
                    "DO $$ BEGIN RAISE EXCEPTION 'forced' USING ERRCODE = '40001'; END $$",
                )?;
            }
            Ok(created)
        });
        assert!(created, "{}: the second run created the payment", s.label);
        assert_eq!(runs.load(Ordering::SeqCst), 2, "{}", s.label);
        assert_eq!(s.r(audit::count_entries), 1, "{}", s.label);
        assert_eq!(ledger_of(&s), (1_000, -980, -20, 0), "{}", s.label);
        assert_eq!(
            s.r(|c| store::events_of_payment(c, "P1")).len(),
            1,
            "{}",
            s.label
        );
        assert_eq!(
            s.r(|c| risk::merchant_today(c, "client-1/M1", "SGD", T0)),
            (1_000, 1),
            "{}: the first run's count was rolled back",
            s.label
        );
    }
}
