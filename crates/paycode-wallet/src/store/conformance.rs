//! The wallet's storage interface (`store::*`), function by function, on SQLite always and on
//! PostgreSQL when `PAYCODE_TEST_DATABASE_URL` is set; every test opens a fresh store (a new
//! SQLite file, a new PostgreSQL schema) on each engine. It lives inside the crate because the
//! storage layer is private to it.
//!
//! Three parts: what each function returns and leaves; the invariants the use cases keep when
//! several run at once (on SQLite, and on PostgreSQL both with group commit and with one
//! transaction per unit on two handles that stand for two wallet processes sharing a store),
//! driving the real `refund`, `cancel` and `confirm` units; and the re-run of a unit after a
//! serialization failure.

use super::devices::{self, NewCredentials, NewDevice};
use super::payments::{self as pay, PaymentRow, RefundRow};
use super::users::{self, LedgerEntry, NewUserRow};
use super::{LedgerKind, StoreError, audit, guesses, outbox};
use crate::payment_state::PayState;
use crate::{Inner, ManualClock, WalletConfig};
use paycode_core::guess::SourceLimit;
use paycode_core::{Currency, ResultCode};
use paycode_db::Db;
use paycode_db::sql::{Connection, Engine};
use std::fmt::Debug;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};

type StoreResult<T> = Result<T, StoreError>;

const DAY_MS: i64 = super::DAY_MS;
/// The start of a UTC day; every stored time is near it.
const DAY0: i64 = 20_600 * DAY_MS;

// ------------------------------------------------------------------------------- harness

use paycode_db::testing::TestStore as Store;

/// A fresh store on SQLite and, when configured, on PostgreSQL.
fn stores(name: &str) -> Vec<Store> {
    paycode_db::testing::stores(name, &super::migrations())
}

/// SQLite, and two PostgreSQL handles of one schema standing for two wallet processes, with
/// and without group commit: for the races.
fn racing_stores(name: &str) -> Vec<Store> {
    paycode_db::testing::racing_stores(name, &super::migrations())
}

/// A wallet's use-case state over `db`, as `Wallet::open` builds it; `n` keeps the ids of two
/// processes apart as their random counter starts do.
fn inner(db: &Db, clock: &Arc<ManualClock>, n: u64) -> Arc<Inner> {
    let key = || paycode_sign::PrivateKey::generate().expect("a key");
    let signer = paycode_http::Signer::new(key(), 1);
    let mut config = WalletConfig::new(
        "testpay",
        "281005",
        Currency::parse("SGD").expect("SGD"),
        std::path::PathBuf::from("unused.db"),
        "testpay-client",
        signer.clone(),
        "acquirer",
        key().public_key(),
    );
    config.clock = clock.clone();
    let notify_client = paycode_http::SignedClient::new(
        &config.client_id,
        signer,
        None,
        std::time::Duration::from_secs(1),
    );
    Arc::new(Inner {
        config,
        db: db.clone(),
        notify_client,
        id_counter: AtomicU64::new(n * 10_000_000),
    })
}

#[track_caller]
fn same<T: Debug>(label: &str, got: &T, want: &T) {
    assert_eq!(format!("{got:?}"), format!("{want:?}"), "{label}");
}

#[track_caller]
fn corrupt<T>(label: &str, got: StoreResult<T>, fragment: &str) {
    match got {
        Err(StoreError::Corrupt(why)) => assert!(why.contains(fragment), "{label}: {why}"),
        Err(other) => panic!("{label}: want a corrupt row, got {other:?}"),
        Ok(_) => panic!("{label}: want a corrupt row, got one that reads"),
    }
}

#[track_caller]
fn unique<T: Debug>(label: &str, got: StoreResult<T>, key: &str) {
    match got {
        Err(StoreError::Unique { key: k }) => assert_eq!(k, key, "{label}"),
        other => panic!("{label}: want a unique violation on {key}, got {other:?}"),
    }
}

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

// ------------------------------------------------------------------------------- fixtures

/// A user with generous limits and `balance_minor`, created as `users::create_user` does:
/// zero balance, then the opening credit through balance and ledger.
fn create_user(c: &Connection<'_>, name: &str, balance_minor: i64) -> StoreResult<()> {
    let customer_id = format!("C-{name}");
    let row = NewUserRow {
        name,
        customer_id: &customer_id,
        password_hash: "argon2-hash",
        frozen: false,
        limits: [50_000, 100_000, 1_000_000, 2_000_000],
        created_at_ms: DAY0,
    };
    assert!(users::insert_if_absent(c, &row)?);
    users::set_balance(c, name, balance_minor)?;
    users::append_ledger(
        c,
        &LedgerEntry::operator_credit(name, balance_minor, LedgerKind::Opening, DAY0),
    )
}

fn currency() -> Currency {
    Currency::parse("SGD").expect("SGD")
}

/// A payment with every optional field set, paid by `user` at `DAY0 + 1_000`.
fn paid(prid: &str, user: &str, amount_minor: i64) -> PaymentRow {
    PaymentRow {
        key_hash: Some(format!("key-{prid}")),
        state: PayState::Success,
        result_code: ResultCode::SUCCESS,
        result_message: "success".to_string(),
        user_name: Some(user.to_string()),
        customer_id: Some(format!("C-{user}")),
        device_id: Some("D1".to_string()),
        amount_minor,
        payment_amount_minor: amount_minor * 3,
        payment_currency: "MYR".to_string(),
        quote_price: Some("0.33".to_string()),
        merchant_name: "Shop".to_string(),
        store_name: Some("Corner".to_string()),
        notify_url: Some("https://acquirer.example/notify".to_string()),
        paid_at_ms: Some(DAY0 + 1_000),
        finished_at_ms: Some(DAY0 + 1_000),
        ..PaymentRow::unseen(prid, format!("WP-{prid}"), &currency(), DAY0)
    }
}

/// A challenge of `user` waiting for the password until `deadline_ms`.
fn pending(prid: &str, user: &str, amount_minor: i64, deadline_ms: i64) -> PaymentRow {
    PaymentRow {
        state: PayState::Processing,
        result_code: ResultCode::PAYMENT_IN_PROCESS,
        result_message: "waiting for the user's password".to_string(),
        paid_at_ms: None,
        finished_at_ms: None,
        notify_url: None,
        deadline_ms: Some(deadline_ms),
        challenge_reason: Some("over the password-free limit".to_string()),
        ..paid(prid, user, amount_minor)
    }
}

/// The user's balance, the sum of their ledger rows, and what the audit finds wrong.
fn books(s: &Store, user: &'static str) -> (i64, i64, usize) {
    s.r(move |c| {
        let sums = audit::user_sums(c)?;
        let mine = sums
            .iter()
            .find(|u| u.name == user)
            .expect("the user exists");
        let wrong = sums
            .iter()
            .filter(|u| u.balance_minor != u.ledger_sum_minor)
            .count()
            + audit::daily_mismatches(c)?.len();
        Ok((mine.balance_minor, mine.ledger_sum_minor, wrong))
    })
}

// ------------------------------------------------------------------------------- payments

#[test]
fn a_payment_reads_back_with_every_field_and_missing_ones_are_none() {
    for s in stores("w_pay_round_trip") {
        let full = PaymentRow {
            deadline_ms: Some(DAY0 + 9),
            challenge_reason: Some("why".to_string()),
            cancelled_at_ms: Some(DAY0 + 2_000),
            reversed_at_ms: Some(DAY0 + 2_000),
            refunded_minor: 7,
            ..paid("P1", "alice", 500)
        };
        let bare = PaymentRow::unseen("P2", "WP-P2".to_string(), &currency(), DAY0);
        let (a, b) = (full.clone(), bare.clone());
        s.w(move |c| {
            create_user(c, "alice", 1_000)?;
            pay::insert(c, &a)?;
            pay::insert(c, &b)
        });
        same(s.label, &s.r(|c| pay::load(c, "P1")), &Some(full.clone()));
        same(s.label, &s.r(|c| pay::load(c, "P2")), &Some(bare.clone()));
        same(s.label, &s.w(|c| pay::load(c, "P1")), &Some(full.clone()));
        assert!(s.r(|c| pay::load(c, "P3")).is_none(), "{}", s.label);
        same(
            s.label,
            &s.r(|c| pay::load_of_user(c, "WP-P1", "alice")),
            &Some(full.clone()),
        );
        assert!(s.r(|c| pay::load_of_user(c, "WP-P1", "bob")).is_none());
        assert!(s.r(|c| pay::load_of_user(c, "P1", "alice")).is_none());
        unique(
            s.label,
            s.try_w(|c| {
                let again = PaymentRow {
                    payment_id: "WP-other".to_string(),
                    ..paid("P1", "alice", 1)
                };
                pay::insert(c, &again)
            }),
            "payments.payment_request_id",
        );
        unique(
            s.label,
            s.try_w(|c| {
                let again = PaymentRow {
                    payment_id: "WP-P1".to_string(),
                    ..paid("P3", "alice", 1)
                };
                pay::insert(c, &again)
            }),
            "payments.payment_id",
        );
        match s.try_w(|c| pay::update(c, &paid("P9", "alice", 1))) {
            Err(StoreError::NotFound(what)) => assert_eq!(what, "payment P9", "{}", s.label),
            other => panic!("{}: {other:?}", s.label),
        }
    }
}

/// An update writes the outcome columns only (who pays and what were fixed at insert), and
/// keeps the user's daily total in step with the paid, not reversed payments.
#[test]
fn an_update_writes_the_outcome_and_the_daily_total_follows() {
    for s in stores("w_pay_update") {
        let challenge = pending("P1", "alice", 300, DAY0 + 60_000);
        let c1 = challenge.clone();
        s.w(move |c| {
            create_user(c, "alice", 1_000)?;
            pay::insert(c, &paid("P0", "alice", 200))?;
            pay::insert(c, &c1)
        });
        let today = |at: i64| s.r(move |c| pay::paid_today(c, "alice", at));
        assert_eq!(today(DAY0 + 5), 200, "{}", s.label);
        assert_eq!(today(DAY0 + DAY_MS), 0, "{}", s.label);
        assert_eq!(s.r(|c| pay::paid_today(c, "bob", DAY0)), 0);
        let confirmed = PaymentRow {
            state: PayState::Success,
            result_code: ResultCode::SUCCESS,
            result_message: "success".to_string(),
            paid_at_ms: Some(DAY0 + 2_000),
            finished_at_ms: Some(DAY0 + 2_000),
            // Not written by an update (the amount is: the daily total counts the row's).
            merchant_name: "Other".to_string(),
            deadline_ms: None,
            ..challenge.clone()
        };
        let u = confirmed.clone();
        s.w(move |c| pay::update(c, &u));
        let want = PaymentRow {
            merchant_name: challenge.merchant_name.clone(),
            deadline_ms: challenge.deadline_ms,
            ..confirmed.clone()
        };
        same(s.label, &s.r(|c| pay::load(c, "P1")), &Some(want.clone()));
        assert_eq!(today(DAY0), 500, "{}", s.label);
        let reversed = PaymentRow {
            cancelled_at_ms: Some(DAY0 + 3_000),
            reversed_at_ms: Some(DAY0 + 3_000),
            ..want.clone()
        };
        let r = reversed.clone();
        s.w(move |c| pay::update(c, &r));
        assert_eq!(today(DAY0), 200, "{}", s.label);
        // The same update again changes no total.
        s.w(move |c| pay::update(c, &reversed));
        assert_eq!(today(DAY0), 200, "{}", s.label);
        let refunded = PaymentRow {
            refunded_minor: 50,
            ..paid("P0", "alice", 200)
        };
        s.w(move |c| pay::update(c, &refunded));
        assert_eq!(
            s.r(|c| pay::load(c, "P0")).map(|p| p.refunded_minor),
            Some(50)
        );
        assert_eq!(
            today(DAY0),
            200,
            "{}: a refund keeps the day's total",
            s.label
        );
        assert!(s.r(audit::daily_mismatches).is_empty(), "{}", s.label);
    }
}

#[test]
fn challenges_are_listed_by_deadline_and_history_newest_first() {
    for s in stores("w_pay_lists") {
        s.w(|c| {
            create_user(c, "alice", 1_000)?;
            for (prid, deadline, created) in [
                ("C1", DAY0 + 2_000, DAY0 + 3),
                ("C2", DAY0 + 1_000, DAY0 + 1),
                ("C3", DAY0 + 5_000, DAY0 + 2),
            ] {
                pay::insert(
                    c,
                    &PaymentRow {
                        created_at_ms: created,
                        ..pending(prid, "alice", 100, deadline)
                    },
                )?;
            }
            pay::insert(c, &pending("B1", "bob", 100, DAY0 + 9_000))?;
            pay::insert(
                c,
                &PaymentRow {
                    created_at_ms: DAY0 + 4,
                    ..paid("P1", "alice", 500)
                },
            )
        });
        assert_eq!(
            s.r(|c| pay::due_challenge_ids(c, DAY0 + 2_000, 10)),
            ["C2", "C1"],
            "{}",
            s.label
        );
        assert_eq!(s.r(|c| pay::due_challenge_ids(c, DAY0 + 2_000, 1)), ["C2"]);
        assert!(
            s.r(|c| pay::due_challenge_ids(c, DAY0 + 999, 10))
                .is_empty()
        );
        let pending_ids = |at: i64| -> Vec<String> {
            s.r(move |c| pay::pending_of_user(c, "alice", at))
                .into_iter()
                .map(|p| p.payment_request_id)
                .collect()
        };
        assert_eq!(pending_ids(DAY0 + 999), ["C2", "C3", "C1"], "{}", s.label);
        assert_eq!(pending_ids(DAY0 + 2_000), ["C3"], "{}", s.label);
        let history: Vec<(String, PayState, i64, String, i64)> = s
            .r(|c| pay::of_user_newest(c, "alice", 10))
            .into_iter()
            .map(|p| {
                (
                    p.payment_request_id,
                    p.state,
                    p.amount_minor,
                    p.merchant_name,
                    p.created_at_ms,
                )
            })
            .collect();
        let h =
            |id: &str, state, amount, at| (id.to_string(), state, amount, "Shop".to_string(), at);
        assert_eq!(
            history,
            [
                h("P1", PayState::Success, 500, DAY0 + 4),
                h("C1", PayState::Processing, 100, DAY0 + 3),
                h("C3", PayState::Processing, 100, DAY0 + 2),
                h("C2", PayState::Processing, 100, DAY0 + 1),
            ],
            "{}",
            s.label
        );
        assert_eq!(s.r(|c| pay::of_user_newest(c, "alice", 2)).len(), 2);
        assert!(s.r(|c| pay::of_user_newest(c, "carol", 2)).is_empty());
    }
}

#[test]
fn a_refund_reads_back_and_its_request_is_kept_once() {
    for s in stores("w_refund") {
        s.w(|c| {
            create_user(c, "alice", 1_000)?;
            pay::insert(c, &paid("P1", "alice", 500))?;
            let r = RefundRow {
                refund_id: "WR1".to_string(),
                payment_request_id: "P1".to_string(),
                amount_minor: 200,
                currency: "SGD".to_string(),
                created_at_ms: DAY0 + 7,
            };
            pay::insert_refund(c, "RR1", &r)
        });
        let r = s.r(|c| pay::load_refund(c, "RR1")).expect("the refund");
        assert_eq!(
            (
                r.refund_id.as_str(),
                r.payment_request_id.as_str(),
                r.amount_minor,
                r.currency.as_str(),
                r.created_at_ms
            ),
            ("WR1", "P1", 200, "SGD", DAY0 + 7),
            "{}",
            s.label
        );
        assert!(s.r(|c| pay::load_refund(c, "RR2")).is_none());
        let again = |rrid: &'static str, refund_id: &'static str| {
            s.try_w(move |c| {
                let r = RefundRow {
                    refund_id: refund_id.to_string(),
                    payment_request_id: "P1".to_string(),
                    amount_minor: 1,
                    currency: "SGD".to_string(),
                    created_at_ms: DAY0,
                };
                pay::insert_refund(c, rrid, &r)
            })
        };
        unique(s.label, again("RR1", "WR2"), "refunds.refund_request_id");
        unique(s.label, again("RR2", "WR1"), "refunds.refund_id");
    }
}

/// A stored value the wallet never writes reads as `Corrupt`: one per parsed column kind.
#[test]
fn a_value_the_wallet_never_writes_is_corrupt() {
    for s in stores("w_corrupt") {
        s.w(|c| {
            create_user(c, "alice", 1_000)?;
            pay::insert(c, &paid("P1", "alice", 500))?;
            outbox::enqueue(c, "P1", "https://a.example", "{}", DAY0)
        });
        s.sql("UPDATE payments SET state = 'PAID'");
        corrupt(s.label, s.try_r(|c| pay::load(c, "P1")), "\"PAID\"");
        corrupt(
            s.label,
            s.try_r(|c| pay::of_user_newest(c, "alice", 5)),
            "PAID",
        );
        corrupt(s.label, s.try_r(audit::payment_sums), "PAID");
        s.sql("UPDATE payments SET state = 'FAIL', result_code = 'NO_SUCH_CODE'");
        corrupt(s.label, s.try_r(|c| pay::load(c, "P1")), "NO_SUCH_CODE");
        s.sql("UPDATE payments SET state = 'SUCCESS', result_code = 'SUCCESS'");
        assert!(s.r(|c| pay::load(c, "P1")).is_some());
        s.sql("UPDATE ledger SET kind = 'GIFT'");
        corrupt(
            s.label,
            s.try_r(|c| users::credits_newest(c, "alice", 5)),
            "GIFT",
        );
        // A count out of its type's range.
        s.sql("UPDATE notify_outbox SET n_attempts = -1");
        assert!(
            matches!(
                s.try_w(|c| outbox::claim_due(c, DAY0, DAY0 + 1, 5)),
                Err(StoreError::Corrupt(_))
            ),
            "{}",
            s.label
        );
        s.sql("UPDATE users SET password_failures = -3");
        assert!(
            matches!(
                s.try_r(|c| users::load(c, "alice")),
                Err(StoreError::Corrupt(_))
            ),
            "{}",
            s.label
        );
        if s.db().engine() == Engine::Sqlite {
            // Only SQLite can hold text in an integer column.
            s.sql("UPDATE payments SET amount_minor = 'lots'");
            assert!(matches!(
                s.try_r(|c| pay::load(c, "P1")),
                Err(StoreError::Corrupt(_))
            ));
        }
    }
}

// ------------------------------------------------------------------------------- users

#[test]
fn a_user_reads_back_with_limits_and_its_flags_and_counts_change() {
    for s in stores("w_users") {
        s.w(|c| create_user(c, "alice", 900));
        assert!(
            !s.w(|c| {
                let row = NewUserRow {
                    name: "alice",
                    customer_id: "C-other",
                    password_hash: "x",
                    frozen: true,
                    limits: [0; 4],
                    created_at_ms: 0,
                };
                users::insert_if_absent(c, &row)
            }),
            "{}: a second insert is ignored",
            s.label
        );
        // A new name with a customer id taken is ignored too, not an error.
        assert!(!s.w(|c| {
            let row = NewUserRow {
                name: "bob",
                customer_id: "C-alice",
                password_hash: "x",
                frozen: false,
                limits: [0; 4],
                created_at_ms: 0,
            };
            users::insert_if_absent(c, &row)
        }));
        assert!(s.r(|c| users::exists(c, "alice")));
        assert!(!s.r(|c| users::exists(c, "bob")));
        let u = s.r(|c| users::load(c, "alice")).expect("alice");
        assert_eq!(u.customer_id, "C-alice");
        assert_eq!(u.password_failures, 0);
        assert_eq!(
            (
                u.limits.frozen,
                u.limits.password_locked,
                u.limits.balance_minor,
                u.limits.password_free_per_payment_minor,
                u.limits.password_free_daily_minor,
                u.limits.hard_limit_per_payment_minor,
                u.limits.hard_limit_daily_minor,
            ),
            (false, false, 900, 50_000, 100_000, 1_000_000, 2_000_000),
            "{}",
            s.label
        );
        assert!(s.r(|c| users::load(c, "bob")).is_none());
        assert_eq!(s.r(|c| users::balance(c, "alice")), Some(900));
        assert_eq!(s.w(|c| users::balance(c, "alice")), Some(900));
        assert_eq!(s.r(|c| users::balance(c, "bob")), None);
        s.w(|c| users::set_password_failures(c, "alice", 2, false));
        assert_eq!(
            s.r(|c| users::load(c, "alice"))
                .map(|u| u.password_failures),
            Some(2)
        );
        s.w(|c| users::reset_password_failures(c, "alice"));
        assert_eq!(
            s.r(|c| users::load(c, "alice"))
                .map(|u| u.password_failures),
            Some(0)
        );
        s.w(|c| users::set_password_failures(c, "alice", 5, true));
        let a = s.r(|c| users::auth(c, "alice")).expect("alice");
        assert_eq!((a.password_hash.as_str(), a.locked), ("argon2-hash", true));
        assert!(s.r(|c| users::auth(c, "bob")).is_none());
        s.w(|c| users::unlock_password(c, "alice"));
        let u = s.r(|c| users::load(c, "alice")).expect("alice");
        assert_eq!((u.limits.password_locked, u.password_failures), (false, 0));
        s.w(|c| users::set_frozen(c, "alice", true));
        let v = s.r(|c| users::balance_view(c, "alice")).expect("alice");
        assert_eq!((v.balance_minor, v.frozen, v.locked), (900, true, false));
        assert!(s.r(|c| users::balance_view(c, "bob")).is_none());
        s.w(|c| users::set_frozen(c, "alice", false));
        assert!(
            !s.r(|c| users::load(c, "alice"))
                .expect("alice")
                .limits
                .frozen
        );
        for (what, r) in [
            ("set_balance", s.try_w(|c| users::set_balance(c, "bob", 1))),
            (
                "set_password_failures",
                s.try_w(|c| users::set_password_failures(c, "bob", 1, false)),
            ),
            (
                "reset",
                s.try_w(|c| users::reset_password_failures(c, "bob")),
            ),
            ("set_frozen", s.try_w(|c| users::set_frozen(c, "bob", true))),
            ("unlock", s.try_w(|c| users::unlock_password(c, "bob"))),
        ] {
            match r {
                Err(StoreError::NotFound(who)) => assert!(who.contains("bob"), "{what}: {who}"),
                other => panic!("{}: {what}: {other:?}", s.label),
            }
        }
        // The balance cannot go below zero even if a bug asked for it.
        assert!(s.try_w(|c| users::set_balance(c, "alice", -1)).is_err());
        assert_eq!(s.r(|c| users::balance(c, "alice")), Some(900));
    }
}

#[test]
fn the_ledger_lists_credits_newest_first() {
    for s in stores("w_ledger") {
        s.w(|c| {
            create_user(c, "alice", 100)?;
            create_user(c, "bob", 5)?;
            let entry = |kind, amount_minor, at_ms| LedgerEntry {
                user_name: "alice",
                kind,
                amount_minor,
                payment_request_id: Some("P1"),
                refund_request_id: None,
                merchant_name: Some("Shop"),
                at_ms,
            };
            users::append_ledger(c, &entry(LedgerKind::Payment, -40, DAY0 + 2))?;
            users::append_ledger(
                c,
                &LedgerEntry {
                    refund_request_id: Some("RR1"),
                    ..entry(LedgerKind::Refund, 10, DAY0 + 3)
                },
            )?;
            users::append_ledger(c, &entry(LedgerKind::Reversal, 30, DAY0 + 4))?;
            users::append_ledger(
                c,
                &LedgerEntry::operator_credit("alice", 50, LedgerKind::Topup, DAY0 + 5),
            )
        });
        /// Kind, amount, merchant, payment and time of a credit.
        type Credit = (LedgerKind, i64, Option<String>, Option<String>, i64);
        let credits: Vec<Credit> = s
            .r(|c| users::credits_newest(c, "alice", 10))
            .into_iter()
            .map(|r| {
                (
                    r.kind,
                    r.amount_minor,
                    r.merchant_name,
                    r.payment_request_id,
                    r.at_ms,
                )
            })
            .collect();
        let shop = || Some("Shop".to_string());
        let p1 = || Some("P1".to_string());
        assert_eq!(
            credits,
            [
                (LedgerKind::Topup, 50, None, None, DAY0 + 5),
                (LedgerKind::Reversal, 30, shop(), p1(), DAY0 + 4),
                (LedgerKind::Refund, 10, shop(), p1(), DAY0 + 3),
                (LedgerKind::Opening, 100, None, None, DAY0),
            ],
            "{}: no payments, newest first",
            s.label
        );
        assert_eq!(s.r(|c| users::credits_newest(c, "alice", 1)).len(), 1);
        assert_eq!(s.r(|c| users::credits_newest(c, "bob", 10)).len(), 1);
        let sums: Vec<(String, i64, i64)> = s
            .r(audit::user_sums)
            .into_iter()
            .map(|u| (u.name, u.balance_minor, u.ledger_sum_minor))
            .collect();
        assert_eq!(
            sums,
            [("alice".to_string(), 100, 150), ("bob".to_string(), 5, 5)],
            "{}: by name",
            s.label
        );
    }
}

// ------------------------------------------------------------------------------- devices

#[test]
fn a_device_holds_its_slot_once_and_a_rotation_retires_it() {
    for s in stores("w_devices") {
        let device = |id: &'static str, token: &'static str, slot: &'static str| NewDevice {
            device_id: id,
            user_name: "alice",
            device_name: Some("phone"),
            token_hash: token,
            slot,
            secret: b"secret-1",
            created_at_ms: DAY0,
        };
        s.w(move |c| {
            create_user(c, "alice", 0)?;
            devices::insert(c, &device("D1", "t1", "00000001"))
        });
        unique(
            s.label,
            s.try_w(move |c| devices::insert(c, &device("D2", "t2", "00000001"))),
            "devices.slot",
        );
        unique(
            s.label,
            s.try_w(move |c| devices::insert(c, &device("D2", "t1", "00000002"))),
            "devices.token_hash",
        );
        unique(
            s.label,
            s.try_w(move |c| devices::insert(c, &device("D1", "t3", "00000003"))),
            "devices.device_id",
        );
        let key = s.r(|c| devices::by_slot(c, "00000001")).expect("D1");
        assert_eq!(
            (
                key.device_id.as_str(),
                key.user_name.as_str(),
                key.secret.as_slice()
            ),
            ("D1", "alice", b"secret-1".as_slice()),
            "{}",
            s.label
        );
        assert!(s.r(|c| devices::by_slot(c, "00000009")).is_none());
        assert_eq!(
            s.r(|c| devices::by_token_hash(c, "t1")),
            Some(("D1".to_string(), "alice".to_string()))
        );
        assert_eq!(s.r(|c| devices::by_token_hash(c, "t9")), None);
        assert_eq!(s.r(|c| devices::slot_of(c, "D1")), "00000001");
        match s.try_r(|c| devices::slot_of(c, "D9")) {
            Err(StoreError::NotFound(what)) => assert_eq!(what, "device D9"),
            other => panic!("{}: {other:?}", s.label),
        }
        s.w(|c| {
            devices::retire_slot(c, "00000001", "D1", DAY0 + 1)?;
            let fresh = NewCredentials {
                token_hash: "t2",
                slot: "00000002",
                secret: b"secret-2",
            };
            devices::replace_credentials(c, "D1", &fresh, DAY0 + 1)
        });
        unique(
            s.label,
            s.try_w(|c| devices::retire_slot(c, "00000001", "D1", DAY0 + 2)),
            "retired_slots.slot",
        );
        assert!(
            s.r(|c| devices::slot_taken(c, "00000001")),
            "{}: retired",
            s.label
        );
        assert!(
            s.r(|c| devices::slot_taken(c, "00000002")),
            "{}: held",
            s.label
        );
        assert!(!s.r(|c| devices::slot_taken(c, "00000003")), "{}", s.label);
        assert!(s.r(|c| devices::by_slot(c, "00000001")).is_none());
        assert_eq!(
            s.r(|c| devices::by_slot(c, "00000002")).map(|k| k.secret),
            Some(b"secret-2".to_vec())
        );
        assert_eq!(s.r(|c| devices::by_token_hash(c, "t1")), None);
        match s.try_w(|c| {
            let fresh = NewCredentials {
                token_hash: "t9",
                slot: "00000009",
                secret: b"x",
            };
            devices::replace_credentials(c, "D9", &fresh, DAY0)
        }) {
            Err(StoreError::NotFound(what)) => assert_eq!(what, "device D9"),
            other => panic!("{}: {other:?}", s.label),
        }
    }
}

#[test]
fn a_code_is_used_once_and_forgotten_oldest_first() {
    for s in stores("w_codes") {
        let mark = |slot: &'static str, step: i64, seq: i64, at: i64| {
            s.w(move |c| devices::mark_code_used(c, slot, step, seq, at))
        };
        assert!(mark("00000001", 10, 0, DAY0 + 1_000));
        assert!(
            !mark("00000001", 10, 0, DAY0 + 1_500),
            "{}: a replay",
            s.label
        );
        assert!(mark("00000001", 10, 1, DAY0 + 2_000));
        assert!(mark("00000002", 10, 0, DAY0 + 500));
        assert!(s.r(|c| devices::any_code_used_before(c, DAY0 + 501)));
        assert!(!s.r(|c| devices::any_code_used_before(c, DAY0 + 500)));
        assert_eq!(
            s.w(|c| devices::forget_codes_used_before(c, DAY0 + 3_000, 1)),
            1
        );
        // The oldest went first: slot 2's code is free again, slot 1's are not.
        assert!(mark("00000002", 10, 0, DAY0 + 4_000), "{}", s.label);
        assert!(!mark("00000001", 10, 0, DAY0 + 4_000), "{}", s.label);
        assert_eq!(
            s.w(|c| devices::forget_codes_used_before(c, DAY0 + 3_000, 10)),
            2
        );
        assert_eq!(
            s.w(|c| devices::forget_codes_used_before(c, DAY0 + 3_000, 10)),
            0
        );
        assert!(mark("00000001", 10, 0, DAY0 + 5_000));
    }
}

// ------------------------------------------------------------------------------- outbox

#[test]
fn notifications_are_claimed_under_a_lease_and_retried_until_delivered() {
    for s in stores("w_outbox") {
        s.w(|c| {
            outbox::enqueue(c, "P1", "https://a.example/n", "body-1", DAY0 + 20)?;
            outbox::enqueue(c, "P2", "https://a.example/n", "body-2", DAY0 + 10)?;
            outbox::enqueue(c, "P3", "https://a.example/n", "body-3", DAY0 + 30)
        });
        assert_eq!(s.r(outbox::n_undelivered), 3);
        assert!(!s.r(|c| outbox::any_due(c, DAY0 + 9)), "{}", s.label);
        assert!(s.r(|c| outbox::any_due(c, DAY0 + 10)), "{}", s.label);
        let claim =
            |at: i64, lease: i64, limit: usize| -> Vec<(i64, String, String, String, u32)> {
                s.w(move |c| outbox::claim_due(c, at, lease, limit))
                    .into_iter()
                    .map(|n| {
                        (
                            n.notify_id,
                            n.payment_request_id,
                            n.url,
                            n.body,
                            n.n_attempts,
                        )
                    })
                    .collect()
            };
        let first = claim(DAY0 + 20, DAY0 + 500, 10);
        let prids: Vec<&str> = first.iter().map(|n| n.1.as_str()).collect();
        assert_eq!(prids, ["P2", "P1"], "{}: earliest first", s.label);
        assert_eq!(
            (first[0].2.as_str(), first[0].3.as_str(), first[0].4),
            ("https://a.example/n", "body-2", 0)
        );
        assert!(
            claim(DAY0 + 20, DAY0 + 500, 10).is_empty(),
            "{}: claimed rows are leased",
            s.label
        );
        let third = claim(DAY0 + 30, DAY0 + 500, 1);
        assert_eq!(third.len(), 1, "{}: at most the limit", s.label);
        assert_eq!(third[0].1, "P3");
        let (p2, p1) = (first[0].0, first[1].0);
        s.w(move |c| {
            outbox::mark_delivered(c, p2, 1, DAY0 + 21)?;
            outbox::schedule_retry(c, p1, 1, DAY0 + 1_000, "503")
        });
        assert_eq!(s.r(outbox::n_undelivered), 2);
        assert!(claim(DAY0 + 499, DAY0 + 2_000, 10).is_empty());
        let taken_over = claim(DAY0 + 500, DAY0 + 2_000, 10);
        assert_eq!(
            taken_over.len(),
            1,
            "{}: a lapsed lease is taken over",
            s.label
        );
        assert_eq!(taken_over[0].1, "P3");
        let retried = claim(DAY0 + 1_000, DAY0 + 3_000, 10);
        assert_eq!(retried.len(), 1, "{}: P1 waits for its retry", s.label);
        assert_eq!(
            (retried[0].1.as_str(), retried[0].4),
            ("P1", 1),
            "{}",
            s.label
        );
        let stored: (Option<String>, Option<i64>) = s.r(move |c| {
            Ok(c.query_row(
                "SELECT last_error, delivered_at_ms FROM notify_outbox WHERE notify_id = ?1",
                [p1],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?)
        });
        assert_eq!(stored, (Some("503".to_string()), None), "{}", s.label);
        s.w(move |c| outbox::mark_delivered(c, p1, 2, DAY0 + 1_001));
        let stored: (Option<String>, Option<i64>) = s.r(move |c| {
            Ok(c.query_row(
                "SELECT last_error, delivered_at_ms FROM notify_outbox WHERE notify_id = ?1",
                [p1],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?)
        });
        assert_eq!(stored, (None, Some(DAY0 + 1_001)), "{}", s.label);
        assert_eq!(s.r(outbox::n_undelivered), 1);
    }
}

// ------------------------------------------------------------------------------- guesses

#[test]
fn guessing_counters_count_in_their_window_and_are_pruned() {
    let limit = SourceLimit {
        failures_max: 3,
        window_s: 60,
    };
    for s in stores("w_guesses") {
        assert_eq!(s.r(|c| guesses::load(c, "s\u{1f}00000001")), None);
        s.w(move |c| {
            guesses::count_failure(c, "s\u{1f}00000001", limit, DAY0)?;
            guesses::count_failure(c, "s\u{1f}00000001", limit, DAY0 + 30_000)?;
            guesses::count_failure(c, "m\u{1f}a\u{1f}M1", limit, DAY0 + 5)
        });
        let counter = s
            .r(|c| guesses::load(c, "s\u{1f}00000001"))
            .expect("a counter");
        assert_eq!(
            (counter.window_start_ms, counter.failures),
            (DAY0, 2),
            "{}",
            s.label
        );
        s.w(move |c| guesses::count_failure(c, "s\u{1f}00000001", limit, DAY0 + 60_000));
        let counter = s
            .r(|c| guesses::load(c, "s\u{1f}00000001"))
            .expect("a counter");
        assert_eq!(
            (counter.window_start_ms, counter.failures),
            (DAY0 + 60_000, 1),
            "{}",
            s.label
        );
        assert!(s.r(|c| guesses::any_older_than(c, DAY0 + 6)));
        assert!(!s.r(|c| guesses::any_older_than(c, DAY0 + 5)));
        assert_eq!(s.w(|c| guesses::prune(c, DAY0 + 60_000, 10)), 1);
        assert_eq!(s.w(|c| guesses::prune(c, DAY0 + 60_000, 10)), 0);
        assert!(s.r(|c| guesses::load(c, "s\u{1f}00000001")).is_some());
    }
}

// ------------------------------------------------------------------------------- audit

#[test]
fn the_audit_sums_find_what_disagrees() {
    for s in stores("w_audit") {
        s.w(|c| {
            create_user(c, "alice", 1_000)?;
            let p = paid("P1", "alice", 400);
            pay::insert(c, &p)?;
            crate::payments::move_money(
                c,
                &LedgerEntry {
                    user_name: "alice",
                    kind: LedgerKind::Payment,
                    amount_minor: -400,
                    payment_request_id: Some("P1"),
                    refund_request_id: None,
                    merchant_name: Some("Shop"),
                    at_ms: DAY0 + 1_000,
                },
            )
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            pay::update(
                c,
                &PaymentRow {
                    refunded_minor: 100,
                    ..p
                },
            )?;
            pay::insert_refund(
                c,
                "RR1",
                &RefundRow {
                    refund_id: "WR1".to_string(),
                    payment_request_id: "P1".to_string(),
                    amount_minor: 100,
                    currency: "SGD".to_string(),
                    created_at_ms: DAY0 + 2_000,
                },
            )?;
            crate::payments::move_money(
                c,
                &LedgerEntry {
                    user_name: "alice",
                    kind: LedgerKind::Refund,
                    amount_minor: 100,
                    payment_request_id: Some("P1"),
                    refund_request_id: Some("RR1"),
                    merchant_name: Some("Shop"),
                    at_ms: DAY0 + 2_000,
                },
            )
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            pay::insert(
                c,
                &PaymentRow::unseen("P2", "WP-P2".into(), &currency(), DAY0),
            )
        });
        assert_eq!(books(&s, "alice"), (700, 700, 0), "{}", s.label);
        let mut sums = s.r(audit::payment_sums);
        sums.sort_by(|a, b| a.payment_request_id.cmp(&b.payment_request_id));
        let view: Vec<_> = sums
            .iter()
            .map(|p| {
                (
                    p.payment_request_id.as_str(),
                    p.state,
                    p.amount_minor,
                    p.reversed,
                    p.refunded_minor,
                    p.debit_minor,
                    p.n_debits,
                    p.reversal_minor,
                    p.refund_credit_minor,
                    p.refund_rows_minor,
                )
            })
            .collect();
        assert_eq!(
            view,
            [
                (
                    "P1",
                    PayState::Success,
                    400,
                    false,
                    100,
                    -400,
                    1,
                    0,
                    100,
                    100
                ),
                ("P2", PayState::Processing, 0, false, 0, 0, 0, 0, 0, 0),
            ],
            "{}",
            s.label
        );
        // A daily total out of step with the payments it sums.
        s.sql("UPDATE user_daily SET paid_minor = paid_minor + 1");
        let wrong: Vec<(String, i64, i64, i64)> = s
            .r(audit::daily_mismatches)
            .into_iter()
            .map(|d| (d.user_name, d.day, d.expected_minor, d.stored_minor))
            .collect();
        assert_eq!(
            wrong,
            [("alice".to_string(), DAY0 / DAY_MS, 400, 401)],
            "{}",
            s.label
        );
        s.sql("UPDATE users SET balance_minor = 1");
        assert_eq!(books(&s, "alice"), (1, 700, 2), "{}", s.label);
    }
}

// ------------------------------------------------------------------------------- races

/// The storage part of `pay` for a code that pays at once (`pay_tx` and `apply_at` for an
/// absent payment): look the request up (locked), mark the code used, insert the paid row,
/// debit through balance and ledger. Whether this copy created the payment.
fn pay_now_unit(c: &Connection<'_>, p: &PaymentRow) -> Result<bool, crate::WalletError> {
    if pay::load(c, &p.payment_request_id)?.is_some() {
        return Ok(false);
    }
    devices::mark_code_used(c, "00000001", 1, 0, DAY0 + 1_000)?;
    pay::insert(c, p)?;
    crate::payments::move_money(
        c,
        &LedgerEntry {
            user_name: "alice",
            kind: LedgerKind::Payment,
            amount_minor: -p.amount_minor,
            payment_request_id: Some(&p.payment_request_id),
            refund_request_id: None,
            merchant_name: Some(&p.merchant_name),
            at_ms: DAY0 + 1_000,
        },
    )?;
    Ok(true)
}

/// Three copies of each of four pay requests at once: four payments, four debits.
#[test]
fn concurrent_duplicate_payments_debit_once() {
    for s in racing_stores("w_race_pay") {
        s.w(|c| create_user(c, "alice", 10_000));
        let created = race(&s, 12, |i, db| {
            let p = PaymentRow {
                payment_id: format!("WP{}-{i}", i % 4),
                ..paid(&format!("P{}", i % 4), "alice", 700)
            };
            db.write_blocking(move |c| pay_now_unit(c, &p))
                .unwrap_or_else(|e| panic!("{}: pay: {e:?}", s.label))
        });
        assert_eq!(created.iter().filter(|c| **c).count(), 4, "{}", s.label);
        assert_eq!(books(&s, "alice"), (7_200, 7_200, 0), "{}", s.label);
        let sums = s.r(audit::payment_sums);
        assert_eq!(sums.len(), 4, "{}", s.label);
        assert!(
            sums.iter()
                .all(|p| p.n_debits == 1 && p.debit_minor == -700)
        );
        assert_eq!(
            s.r(|c| pay::paid_today(c, "alice", DAY0)),
            2_800,
            "{}",
            s.label
        );
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(f)
}

/// Eight refunds of 300 of one payment of 1000, each sent twice at once through the real
/// refund unit on two handles: three are made, the user gets 900 back, and both copies of a
/// request get the same answer.
#[test]
fn concurrent_refunds_never_exceed_the_payment() {
    let clock = ManualClock::new(DAY0 + 5_000);
    for s in racing_stores("w_race_refund") {
        s.w(|c| {
            create_user(c, "alice", 0)?;
            // Paid 1000 from a balance of 1000.
            pay::insert(c, &paid("P1", "alice", 1_000))?;
            users::append_ledger(
                c,
                &LedgerEntry {
                    user_name: "alice",
                    kind: LedgerKind::Payment,
                    amount_minor: -1_000,
                    payment_request_id: Some("P1"),
                    refund_request_id: None,
                    merchant_name: Some("Shop"),
                    at_ms: DAY0 + 1_000,
                },
            )?;
            users::append_ledger(
                c,
                &LedgerEntry::operator_credit("alice", 1_000, LedgerKind::Topup, DAY0),
            )
        });
        let inners: Vec<Arc<Inner>> = s
            .dbs
            .iter()
            .enumerate()
            .map(|(n, db)| inner(db, &clock, n as u64))
            .collect();
        let answers = race(&s, 16, |i, _| {
            let input = crate::payments::RefundInput {
                refund_request_id: format!("RR{}", i % 8),
                prid: "P1".to_string(),
                amount_minor: 300,
                currency: "SGD".to_string(),
            };
            let out = block_on(crate::payments::refund(&inners[i % inners.len()], input))
                .unwrap_or_else(|e| panic!("{}: refund: {e:?}", s.label));
            (i % 8, out.result.result_code, out.refund_id)
        });
        let made: std::collections::BTreeSet<String> =
            answers.iter().filter_map(|a| a.2.clone()).collect();
        assert_eq!(made.len(), 3, "{}: {:?}", s.label, answers);
        for (request, code, _) in &answers {
            let copies: Vec<&String> = answers
                .iter()
                .filter(|a| a.0 == *request)
                .map(|a| &a.1)
                .collect();
            assert!(
                copies.iter().all(|c| *c == code),
                "{}: request {request} answered {copies:?}",
                s.label
            );
        }
        let p = s.r(|c| pay::load(c, "P1")).expect("P1");
        assert_eq!(p.refunded_minor, 900, "{}", s.label);
        assert_eq!(books(&s, "alice"), (900, 900, 0), "{}", s.label);
        let sums = s.r(audit::payment_sums);
        assert_eq!(
            (sums[0].refund_credit_minor, sums[0].refund_rows_minor),
            (900, 900),
            "{}",
            s.label
        );
    }
}

/// The acquirer's cancel and the user's confirm of one challenge, at once, through the real
/// units: either the cancel won (closed, nothing debited) or the confirm won and the cancel
/// reversed it; the balance is whole either way and the confirm's answer says which.
#[test]
fn a_confirm_racing_a_cancel_ends_in_one_outcome() {
    let clock = ManualClock::new(DAY0 + 5_000);
    for s in racing_stores("w_race_cancel") {
        let n = 6;
        s.w(move |c| {
            create_user(c, "alice", 10_000)?;
            for k in 0..n {
                pay::insert(c, &pending(&format!("P{k}"), "alice", 1_000, DAY0 + 60_000))?;
            }
            Ok(())
        });
        let inners: Vec<Arc<Inner>> = s
            .dbs
            .iter()
            .enumerate()
            .map(|(n, db)| inner(db, &clock, n as u64))
            .collect();
        let answers = race(&s, 2 * n, |i, _| {
            let inner = &inners[i % inners.len()];
            let prid = format!("P{}", i / 2);
            if i % 2 == 0 {
                let a = block_on(crate::challenges::confirm(
                    inner,
                    "alice".to_string(),
                    format!("WP-{prid}"),
                    true,
                ))
                .unwrap_or_else(|e| panic!("{}: confirm: {e:?}", s.label));
                a.payment_status == Some("SUCCESS")
            } else {
                let a = block_on(crate::payments::cancel(inner, prid))
                    .unwrap_or_else(|e| panic!("{}: cancel: {e:?}", s.label));
                assert!(a.result.is_success(), "{}", s.label);
                true
            }
        });
        for k in 0..n {
            let confirmed = answers[2 * k];
            let prid = format!("P{k}");
            let p = s.r(|c| pay::load(c, &prid)).expect("the payment");
            let sums = s.r(audit::payment_sums);
            let mine = sums
                .iter()
                .find(|x| x.payment_request_id == prid)
                .expect("its sums");
            if confirmed {
                assert_eq!(p.state, PayState::Success, "{}", s.label);
                assert!(p.reversed_at_ms.is_some(), "{}: reversed", s.label);
                assert_eq!((mine.debit_minor, mine.reversal_minor), (-1_000, 1_000));
            } else {
                assert_eq!(p.state, PayState::Fail, "{}", s.label);
                assert_eq!(p.result_code, ResultCode::ORDER_IS_CLOSED);
                assert_eq!((mine.n_debits, mine.reversal_minor), (0, 0), "{}", s.label);
            }
            assert!(p.cancelled_at_ms.is_some(), "{}", s.label);
        }
        assert_eq!(books(&s, "alice"), (10_000, 10_000, 0), "{}", s.label);
    }
}

// ------------------------------------------------------------------------------- retry

/// A pay unit that meets a serialization failure on its first run is run again and applied
/// once (PostgreSQL; SQLite has no such failure).
#[test]
fn a_pay_unit_that_meets_a_serialization_failure_is_re_run_and_applied_once() {
    for s in racing_stores("w_retry") {
        if s.db().engine() != Engine::Postgres {
            continue;
        }
        s.w(|c| create_user(c, "alice", 1_000));
        let runs = Arc::new(AtomicU32::new(0));
        let seen = runs.clone();
        let created = s
            .db()
            .write_blocking(move |c| {
                let created = pay_now_unit(c, &paid("P1", "alice", 400))?;
                if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                    c.execute_batch(
                        "DO $$ BEGIN RAISE EXCEPTION 'forced' USING ERRCODE = '40001'; END $$",
                    )
                    .map_err(StoreError::from)?;
                }
                Ok::<_, crate::WalletError>(created)
            })
            .unwrap_or_else(|e| panic!("{}: {e:?}", s.label));
        assert!(created, "{}", s.label);
        assert_eq!(runs.load(Ordering::SeqCst), 2, "{}", s.label);
        assert_eq!(books(&s, "alice"), (600, 600, 0), "{}", s.label);
        assert_eq!(
            s.r(|c| pay::paid_today(c, "alice", DAY0)),
            400,
            "{}",
            s.label
        );
        assert!(
            !s.w(|c| devices::mark_code_used(c, "00000001", 1, 0, DAY0)),
            "{}: the code is marked used once",
            s.label
        );
    }
}
