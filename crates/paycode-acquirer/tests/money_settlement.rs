//! A day of mixed traffic through the acquirer and three real wallets over HTTP — several
//! merchants (settling in SGD, USD and HKD, in their own time zones and cut-offs), wallets in
//! SGD, CNY and PHP, payments, partial and full refunds, cancels and failures — then settlement:
//! report files checked line by line against the stored payments and refunds, wallet clearing,
//! the ledger after payouts, a late refund landing in the next batch, the admin endpoints, and
//! the audit, clean and then on a corrupted row. The acquirer's clock is moved, never slept on.

use chrono::TimeZone;
use paycode_acquirer::registry::{self, NewClient, NewMerchant, NewWallet};
use paycode_acquirer::settlement::{BatchInfo, ClearingInfo};
use paycode_acquirer::store::{self, PaymentRow, RefundRow};
use paycode_acquirer::{Acquirer, AcquirerConfig, ApiError, Limits};
use paycode_core::Currency;
use paycode_http::{SignedClient, Signer};
use paycode_sign::PrivateKey;
use paycode_wallet::{CodeDisplay, CodeMaterial, NewUser, Wallet, WalletConfig};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

const ACQ_ID: &str = "paycode-acquirer";
const ADMIN: &str = "admin-secret";
const PASSWORD: &str = "pw-123456";
const ISV: &str = "ISV_CLIENT";
const MACAU: &str = "MACAU_CLIENT";

/// (client, merchant, transaction currencies, settlement currency, fee bps, zone, cut-off minutes)
const MERCHANTS: [(&str, &str, &str, &str, u32, &str, u32); 3] = [
    (ISV, "SG1", "SGD", "SGD", 150, "Asia/Singapore", 18 * 60),
    (ISV, "US1", "USD", "USD", 250, "Pacific/Honolulu", 0),
    (MACAU, "MO1", "MOP", "HKD", 200, "Asia/Macau", 23 * 60),
];

/// (name, CII, currency)
const WALLETS: [(&str, &str, &str); 3] = [
    ("sgpay", "281005", "SGD"),
    ("cnpay", "281001", "CNY"),
    ("phpay", "281007", "PHP"),
];

const RATES: &str = "\
mid USD/SGD 1.3412
mid USD/CNY 7.1234
mid USD/HKD 7.8125
mid USD/MOP 8.0467
mid USD/PHP 58.731
spread default 50 50
spread USD/SGD 30 30
";

async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    format!("http://{addr}")
}

/// A wallet clock that follows the acquirer's, as on synchronised machines.
#[derive(Debug)]
struct SharedClock(paycode_acquirer::Clock);

impl paycode_wallet::Clock for SharedClock {
    fn now_ms(&self) -> i64 {
        self.0.now_ms()
    }
}

fn signer(key: &PrivateKey) -> Signer {
    Signer::new(PrivateKey::parse(&key.to_pkcs8_base64()).unwrap(), 1)
}

struct Env {
    _dir: tempfile::TempDir,
    acq: Acquirer,
    url: String,
    clients: HashMap<&'static str, SignedClient>,
    wallets: HashMap<&'static str, (Wallet, String)>,
    http: reqwest::Client,
}

impl Env {
    async fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let acq_key = PrivateKey::generate().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let acq = Acquirer::open(AcquirerConfig {
            db_path: dir.path().join("acquirer.db"),
            postgres: paycode_db::test_pg_target("acquirer"),
            public_url: url.clone(),
            client_id_at_wallets: ACQ_ID.into(),
            signer: signer(&acq_key),
            admin_token: Some(ADMIN.into()),
            time_zone: chrono_tz::Asia::Singapore,
            limits: Limits {
                wallet_pay_timeout_ms: 5_000,
                wallet_call_timeout_ms: 5_000,
                ..Limits::default()
            },
        })
        .await
        .unwrap();

        let mut wallets = HashMap::new();
        let mut wallet_keys = Vec::new();
        for (name, cii, currency) in WALLETS {
            let key = PrivateKey::generate().unwrap();
            let mut cfg = WalletConfig::new(
                name,
                cii,
                Currency::parse(currency).unwrap(),
                dir.path().join(format!("wallet-{name}.db")),
                name,
                signer(&key),
                ACQ_ID,
                acq_key.public_key(),
            );
            cfg.postgres = paycode_db::test_pg_target(name);
            cfg.password_memory_kib = 256;
            cfg.notify_retry_ms = vec![0, 0, 0];
            // The wallets read the acquirer's clock, so its moves keep Request-Times fresh.
            cfg.clock = Arc::new(SharedClock(acq.clock().clone()));
            let wallet = Wallet::open(cfg).unwrap();
            for (user, balance) in [("ann", 50_000_000), ("ben", 50_000_000), ("poor", 100)] {
                wallet
                    .create_user(NewUser {
                        name: user.into(),
                        password: PASSWORD.into(),
                        balance_minor: balance,
                        status_frozen: false,
                        password_free_per_payment_minor: 10_000_000,
                        password_free_daily_minor: 100_000_000,
                        hard_limit_per_payment_minor: 10_000_000,
                        hard_limit_daily_minor: 100_000_000,
                    })
                    .await
                    .unwrap();
            }
            let wallet_url = serve(wallet.router()).await;
            wallet_keys.push((name, cii, currency, wallet_url.clone(), key.public_key()));
            wallets.insert(name, (wallet, wallet_url));
        }

        let client_keys: Vec<(&'static str, PrivateKey)> = [ISV, MACAU]
            .into_iter()
            .map(|c| (c, PrivateKey::generate().unwrap()))
            .collect();
        let publics: Vec<_> = client_keys
            .iter()
            .map(|(c, k)| (*c, k.public_key()))
            .collect();
        let now = acq.clock().now_ms();
        acq.db()
            .write(move |c| {
                for (client, key) in &publics {
                    registry::upsert_client(
                        c,
                        &NewClient {
                            client_id: client,
                            name: client,
                            notify_url: None,
                        },
                        now,
                    )?;
                    registry::upsert_client_key(c, client, 1, key, true)?;
                }
                for (client, merchant, currencies, settle, fee_bps, tz, cutoff) in MERCHANTS {
                    registry::upsert_merchant(
                        c,
                        &NewMerchant {
                            client_id: client,
                            reference_merchant_id: merchant,
                            name: merchant,
                            mcc: "5812",
                            currencies: &[currencies.to_string()],
                            settlement_currency: settle,
                            max_amount_minor: None,
                            notify_url: None,
                            active: true,
                            fee_bps,
                            time_zone: tz,
                            cutoff_minutes: cutoff,
                        },
                    )?;
                }
                for (name, cii, currency, base_url, key) in &wallet_keys {
                    registry::upsert_wallet(
                        c,
                        &NewWallet {
                            name,
                            psp_name: name,
                            base_url,
                            public_key: key,
                            currencies: &[currency.to_string()],
                            enabled: true,
                        },
                    )?;
                    registry::upsert_route(c, "CII", cii, name, 100)?;
                }
                Ok::<_, ApiError>(())
            })
            .await
            .unwrap();
        acq.registry().reload(acq.db()).await.unwrap();
        acq.set_rate_file(RATES.to_string()).await.unwrap();
        let router = paycode_acquirer::router(acq.clone());
        tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        let clients = client_keys
            .into_iter()
            .map(|(c, k)| {
                (
                    c,
                    SignedClient::new(
                        c,
                        signer(&k),
                        Some(acq_key.public_key()),
                        Duration::from_secs(20),
                    )
                    .with_clock(acq.clock().now_fn()),
                )
            })
            .collect();
        Env {
            _dir: dir,
            acq,
            url,
            clients,
            wallets,
            http: reqwest::Client::new(),
        }
    }

    async fn call(&self, client: &str, op: &str, body: Value) -> Value {
        self.clients[client]
            .post::<Value, Value>(&format!("{}/ams/api/v1/payments/{op}", self.url), &body)
            .await
            .unwrap_or_else(|e| panic!("{op} failed at transport level: {e}"))
    }

    /// A fresh code of a wallet user (one new device per code: codes are single-use per step).
    async fn code(&self, wallet: &str, user: &str) -> String {
        let url = &self.wallets[wallet].1;
        let m: paycode_proto::customer::DeviceMaterial = self
            .http
            .post(format!("{url}/customer/v1/devices/register"))
            .json(&json!({"userName": user, "password": PASSWORD}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(m.result.is_success(), "register {user}: {:?}", m.result);
        let material = CodeMaterial::from_device_material(&m).unwrap();
        first_code(&material, (self.acq.clock().now_ms() / 1000) as u64)
    }

    /// Pays; returns the answer.
    #[allow(clippy::too_many_arguments)]
    async fn pay(
        &self,
        client: &str,
        merchant: &str,
        request_id: &str,
        currency: &str,
        value: i64,
        wallet: &str,
        user: &str,
    ) -> Value {
        let code = self.code(wallet, user).await;
        self.call(
            client,
            "pay",
            json!({
                "productCode": "IN_STORE_PAYMENT",
                "paymentRequestId": request_id,
                "paymentAmount": {"currency": currency, "value": value.to_string()},
                "paymentMethod": {"paymentMethodType": "CONNECT_WALLET", "paymentMethodId": code},
                "paymentFactor": {"inStorePaymentScenario": "PaymentCode"},
                "order": {
                    "orderDescription": "goods",
                    "merchant": {"referenceMerchantId": merchant, "merchantName": merchant, "merchantMCC": "5812",
                                 "store": {"referenceStoreId": format!("{merchant}-S1"), "storeName": "Main"}}
                }
            }),
        )
        .await
    }

    async fn paid(
        &self,
        client: &str,
        merchant: &str,
        request_id: &str,
        currency: &str,
        value: i64,
        wallet: &str,
    ) -> String {
        let v = self
            .pay(client, merchant, request_id, currency, value, wallet, "ann")
            .await;
        assert_eq!(v["result"]["resultCode"], "SUCCESS", "{request_id}: {v}");
        v["paymentId"].as_str().unwrap().to_string()
    }

    async fn refund(
        &self,
        client: &str,
        request_id: &str,
        payment_id: &str,
        currency: &str,
        value: i64,
    ) -> String {
        let v = self
            .call(
                client,
                "refund",
                json!({"refundRequestId": request_id, "paymentId": payment_id,
                       "refundAmount": {"currency": currency, "value": value.to_string()}}),
            )
            .await;
        assert_eq!(v["result"]["resultCode"], "SUCCESS", "{request_id}: {v}");
        v["refundId"].as_str().unwrap().to_string()
    }

    async fn cancel(&self, client: &str, payment_id: &str) {
        let v = self
            .call(client, "cancel", json!({"paymentId": payment_id}))
            .await;
        assert_eq!(
            v["result"]["resultCode"], "SUCCESS",
            "cancel {payment_id}: {v}"
        );
    }

    async fn payment(&self, id: &str) -> PaymentRow {
        let id = id.to_string();
        self.acq
            .db()
            .read(move |c| store::payment_by_id(c, &id).map_err(ApiError::from))
            .await
            .unwrap()
            .unwrap()
    }

    async fn refund_row(&self, id: &str) -> RefundRow {
        let id = id.to_string();
        self.acq
            .db()
            .read(move |c| store::refund_by_id(c, &id).map_err(ApiError::from))
            .await
            .unwrap()
            .unwrap()
    }

    async fn balance(&self, account: String) -> i64 {
        self.acq
            .db()
            .read(move |c| store::account_balance(c, &account).map_err(ApiError::from))
            .await
            .unwrap()
    }

    async fn exec(&self, sql: &'static str) -> usize {
        self.acq
            .db()
            .write(move |c| {
                c.execute(sql, [])
                    .map_err(|e| ApiError::from(paycode_db::DbError::Sql(e)))
            })
            .await
            .unwrap()
    }

    async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<String>,
    ) -> (u16, String) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(ADMIN);
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap())
    }
}

/// What one settled event must look like in a detail file.
#[derive(Debug, Clone)]
struct Expected {
    merchant: String,
    /// Signed settlement amount + signed fee (the merchant's net from this line).
    net_minor: i64,
    wallet: String,
    wallet_currency: String,
    /// Signed wallet amount (what the wallet owes for it).
    wallet_signed_minor: i64,
    kind: &'static str,
    /// The detail line without its batch id (the first field).
    line_tail: String,
}

fn merchant_tz(merchant_key: &str) -> chrono_tz::Tz {
    let (client, merchant) = merchant_key.split_once('/').unwrap();
    let m = MERCHANTS
        .iter()
        .find(|m| m.0 == client && m.1 == merchant)
        .unwrap();
    m.5.parse().unwrap()
}

fn local_time(ms: i64, tz: chrono_tz::Tz) -> String {
    tz.timestamp_opt(ms.div_euclid(1000), 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

fn quote_price(json: &Option<String>) -> String {
    json.as_deref()
        .map(|q| {
            serde_json::from_str::<Value>(q).unwrap()["quotePrice"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .unwrap_or_default()
}

/// The expected detail line (minus batch id) of a payment, its cancel, or one of its refunds.
fn expected(p: &PaymentRow, kind: &'static str, r: Option<&RefundRow>) -> Expected {
    let merchant = format!("{}/{}", p.client_id, p.reference_merchant_id);
    let tz = merchant_tz(&merchant);
    let (tx, orig, req, sign, amount, settle, qp, fee, time, wallet_amount) = match (kind, r) {
        ("PAYMENT", None) => (
            p.payment_id.clone(),
            String::new(),
            p.payment_request_id.clone(),
            1,
            p.amount_minor,
            p.settle_minor,
            quote_price(&p.settlement_quote),
            p.fee_minor,
            p.paid_ms.unwrap(),
            p.pay_to_minor,
        ),
        ("CANCEL", None) => (
            p.payment_id.clone(),
            p.payment_id.clone(),
            p.payment_request_id.clone(),
            -1,
            p.amount_minor,
            p.settle_minor,
            quote_price(&p.settlement_quote),
            p.fee_minor,
            p.cancelled_ms.unwrap(),
            p.pay_to_minor,
        ),
        ("REFUND", Some(r)) => (
            r.refund_id.clone(),
            p.payment_id.clone(),
            r.refund_request_id.clone(),
            -1,
            r.amount_minor,
            r.settle_minor,
            quote_price(&r.settlement_quote),
            r.fee_minor,
            r.refunded_ms.unwrap(),
            r.wallet_amount_minor,
        ),
        other => panic!("bad expectation {other:?}"),
    };
    let line_tail = format!(
        "{tx},{orig},{req},{kind},CONNECT_WALLET,{psp},{rm},{store},{amt},{cur},{settle},{scur},{qp},{fee},{scur},{time}",
        psp = p.psp_name,
        rm = p.reference_merchant_id,
        store = p.reference_store_id.clone().unwrap_or_default(),
        amt = sign * amount,
        cur = p.currency,
        settle = sign * settle,
        scur = p.settle_currency,
        fee = -sign * fee,
        time = local_time(time, tz),
    );
    Expected {
        merchant,
        net_minor: sign * (settle - fee),
        wallet: p.wallet.clone(),
        wallet_currency: p.pay_to_currency.clone(),
        wallet_signed_minor: sign * wallet_amount,
        kind,
        line_tail,
    }
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Checks one closed batch's files against the expected events; returns its net.
fn check_batch_files(env: &Env, batch: &BatchInfo, expected: &[&Expected]) -> i64 {
    let (summary_path, detail_path) = env.acq.batch_report_paths(&batch.batch_id);
    let detail = read(&detail_path);
    let lines: Vec<&str> = detail.lines().collect();
    assert_eq!(
        lines[0],
        paycode_core::settlement::DETAIL_HEADER.join(","),
        "{}",
        batch.batch_id
    );
    assert_eq!(lines.last(), Some(&"<END>"));
    let body = &lines[1..lines.len() - 1];
    let mut got: Vec<String> = body
        .iter()
        .map(|l| {
            let (id, tail) = l.split_once(',').unwrap();
            assert_eq!(id, batch.batch_id, "every line names its batch");
            tail.to_string()
        })
        .collect();
    // Lines are in time order.
    let times: Vec<&str> = body.iter().map(|l| l.rsplit(',').next().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{detail}");
    let mut want: Vec<String> = expected.iter().map(|e| e.line_tail.clone()).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "detail of {}", batch.batch_id);

    // Summary: one row per kind and a TOTAL whose settlement amount is the payout.
    let summary = read(&summary_path);
    let rows: Vec<Vec<&str>> = summary
        .lines()
        .skip(1)
        .take_while(|l| *l != "<END>")
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(
        summary.lines().next().unwrap(),
        paycode_core::settlement::SUMMARY_HEADER.join(",")
    );
    assert_eq!(summary.lines().last(), Some("<END>"));
    let net: i64 = expected.iter().map(|e| e.net_minor).sum();
    for kind in ["PAYMENT", "REFUND", "CANCEL"] {
        let row = rows.iter().find(|r| r[3] == kind).unwrap();
        let of_kind: Vec<_> = expected.iter().filter(|e| e.kind == kind).collect();
        assert_eq!(row[4], of_kind.len().to_string(), "{kind} count");
        assert_eq!(
            row[7],
            of_kind.iter().map(|e| e.net_minor).sum::<i64>().to_string(),
            "{kind} net of {}",
            batch.batch_id
        );
    }
    let total = rows.iter().find(|r| r[3] == "TOTAL").unwrap();
    assert_eq!(total[0], batch.batch_id);
    assert_eq!(total[1], batch.merchant);
    assert_eq!(total[2], batch.settlement_date);
    assert_eq!(total[4], expected.len().to_string());
    assert_eq!(total[7], net.to_string());
    assert_eq!(total[8], batch.currency);
    assert_eq!(batch.net_minor, net);
    assert_eq!(batch.item_count, expected.len() as i64);
    net
}

/// Checks a clearing file against the expected events; returns its net.
fn check_clearing_file(env: &Env, clearing: &ClearingInfo, expected: &[&Expected]) -> i64 {
    let text = read(&env.acq.clearing_report_path(&clearing.clearing_id));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        paycode_core::settlement::CLEARING_HEADER.join(",")
    );
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[2], "<END>");
    let sum = |kind: &str| -> (usize, i64) {
        let of: Vec<_> = expected.iter().filter(|e| e.kind == kind).collect();
        (of.len(), of.iter().map(|e| e.wallet_signed_minor).sum())
    };
    let (pc, pa) = sum("PAYMENT");
    let (rc, ra) = sum("REFUND");
    let (cc, ca) = sum("CANCEL");
    let net = pa + ra + ca;
    assert_eq!(
        lines[1],
        format!(
            "{},{},{},{pc},{pa},{rc},{ra},{cc},{ca},{net}",
            clearing.clearing_date, clearing.wallet, clearing.currency
        )
    );
    assert_eq!(clearing.net_minor, net);
    net
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_day_of_mixed_traffic_settles_into_reports_that_match_and_an_audit_that_holds() {
    let env = Env::new().await;
    let mut events: Vec<Expected> = Vec::new();

    // ---- the day's traffic
    // SG1 (SGD, settles SGD): a payment from each wallet, partial refunds, a cancel, a failure.
    let sg_a = env.paid(ISV, "SG1", "sg-a", "SGD", 1_250, "sgpay").await;
    let sg_b = env.paid(ISV, "SG1", "sg-b", "SGD", 3_333, "cnpay").await;
    let sg_c = env.paid(ISV, "SG1", "sg-c", "SGD", 999, "phpay").await;
    let sg_d = env.paid(ISV, "SG1", "sg-d", "SGD", 2_000, "sgpay").await;
    let sg_r1 = env.refund(ISV, "sg-c-r1", &sg_c, "SGD", 300).await;
    let sg_r2 = env.refund(ISV, "sg-c-r2", &sg_c, "SGD", 199).await;
    env.cancel(ISV, &sg_d).await;
    let failed = env
        .pay(ISV, "SG1", "sg-fail", "SGD", 90_000, "sgpay", "poor")
        .await;
    assert_eq!(failed["result"]["resultStatus"], "F", "{failed}");
    // US1 (USD, settles USD): CNY and PHP wallets, a partial refund, a cancel.
    let us_a = env.paid(ISV, "US1", "us-a", "USD", 1_999, "cnpay").await;
    let us_b = env.paid(ISV, "US1", "us-b", "USD", 5_000, "sgpay").await;
    let us_c = env.paid(ISV, "US1", "us-c", "USD", 12_345, "phpay").await;
    let us_r1 = env.refund(ISV, "us-a-r1", &us_a, "USD", 500).await;
    env.cancel(ISV, &us_b).await;
    // MO1 (MOP, settles HKD): a full refund in two parts and an untouched payment.
    let mo_a = env.paid(MACAU, "MO1", "mo-a", "MOP", 10_000, "cnpay").await;
    let mo_b = env.paid(MACAU, "MO1", "mo-b", "MOP", 4_321, "sgpay").await;
    let mo_r1 = env.refund(MACAU, "mo-a-r1", &mo_a, "MOP", 6_000).await;
    let mo_r2 = env.refund(MACAU, "mo-a-r2", &mo_a, "MOP", 4_000).await;

    for id in [&sg_a, &sg_b, &sg_c, &us_a, &us_c, &mo_a, &mo_b] {
        events.push(expected(&env.payment(id).await, "PAYMENT", None));
    }
    for id in [&sg_d, &us_b] {
        let p = env.payment(id).await;
        assert_eq!(p.state, paycode_core::payment::PaymentState::Cancelled);
        events.push(expected(&p, "PAYMENT", None));
        events.push(expected(&p, "CANCEL", None));
    }
    for (pid, rid) in [
        (&sg_c, &sg_r1),
        (&sg_c, &sg_r2),
        (&us_a, &us_r1),
        (&mo_a, &mo_r1),
        (&mo_a, &mo_r2),
    ] {
        let p = env.payment(pid).await;
        let r = env.refund_row(rid).await;
        events.push(expected(&p, "REFUND", Some(&r)));
    }
    // Fees are the merchant's rate of the settlement amount, and come back with refunds.
    let sg_a_row = env.payment(&sg_a).await;
    assert_eq!(sg_a_row.fee_minor, 19); // 1.5% of 12.50 SGD = 0.1875, half-even
    let mo_a_row = env.payment(&mo_a).await;
    assert_eq!(mo_a_row.settle_currency, "HKD");
    let mo_fee_back: i64 = [&mo_r1, &mo_r2]
        .iter()
        .map(|e| {
            events
                .iter()
                .find(|x| x.line_tail.starts_with(&format!("{e},")))
                .unwrap()
                .line_tail
                .split(',')
                .nth(13)
                .unwrap()
                .parse::<i64>()
                .unwrap()
        })
        .sum();
    assert_eq!(
        mo_fee_back, mo_a_row.fee_minor,
        "a full refund returns the whole fee"
    );

    // Nothing is due before any cut-off has passed, and the question is cheap and repeatable.
    let before = env.acq.settle_due(env.acq.clock().now_ms()).await.unwrap();
    assert!(before.batches.iter().all(|b| b.item_count > 0));

    // ---- close everything up to now
    let closed = env.acq.settle_now().await.unwrap();
    let mut batches: Vec<BatchInfo> = before.batches.clone();
    batches.extend(closed.batches.clone());
    let mut clearings: Vec<ClearingInfo> = before.clearings.clone();
    clearings.extend(closed.clearings.clone());
    let merchants: Vec<String> = {
        let mut m: Vec<String> = batches.iter().map(|b| b.merchant.clone()).collect();
        m.sort();
        m.dedup();
        m
    };
    assert_eq!(
        merchants,
        vec!["ISV_CLIENT/SG1", "ISV_CLIENT/US1", "MACAU_CLIENT/MO1"]
    );
    // Every event is in exactly one batch, and each batch's files match its events.
    let mut n_lines = 0;
    for batch in &batches {
        let (summary_path, detail_path) = env.acq.batch_report_paths(&batch.batch_id);
        let detail = read(&detail_path);
        let ids: Vec<String> = detail
            .lines()
            .skip(1)
            .filter(|l| *l != "<END>")
            .map(|l| l.split(',').nth(1).unwrap().to_string() + l.split(',').nth(4).unwrap())
            .collect();
        let mine: Vec<&Expected> = events
            .iter()
            .filter(|e| {
                let id = e.line_tail.split(',').next().unwrap().to_string() + e.kind;
                ids.contains(&id)
            })
            .collect();
        assert!(mine.iter().all(|e| e.merchant == batch.merchant));
        check_batch_files(&env, batch, &mine);
        n_lines += mine.len();
        assert!(read(&summary_path).contains(&batch.batch_id));
    }
    assert_eq!(n_lines, events.len(), "every event is settled once");
    // Per merchant: batches net to what its events net to, and the payable is paid out.
    for (client, merchant, _, settle, ..) in MERCHANTS {
        let key = format!("{client}/{merchant}");
        let net: i64 = events
            .iter()
            .filter(|e| e.merchant == key)
            .map(|e| e.net_minor)
            .sum();
        let paid: i64 = batches
            .iter()
            .filter(|b| b.merchant == key)
            .map(|b| b.net_minor)
            .sum();
        assert_eq!(paid, net, "{key}");
        assert_eq!(
            env.balance(format!("merchant_payable:{key}:{settle}"))
                .await,
            0
        );
        assert_eq!(
            env.balance(format!("settlement_paid:{key}:{settle}")).await,
            -net,
            "{key}"
        );
    }
    // The failed payment settles nowhere.
    let all_details: String = batches
        .iter()
        .map(|b| read(&env.acq.batch_report_paths(&b.batch_id).1))
        .collect();
    assert!(!all_details.contains(",sg-fail,"));

    // Wallet clearing: per wallet and currency, what it owes; receivables are then cleared.
    let mut per_wallet: BTreeMap<(String, String), Vec<&Expected>> = BTreeMap::new();
    for e in &events {
        per_wallet
            .entry((e.wallet.clone(), e.wallet_currency.clone()))
            .or_default()
            .push(e);
    }
    assert_eq!(per_wallet.len(), 3);
    for ((wallet, currency), mine) in &per_wallet {
        let owed: i64 = mine.iter().map(|e| e.wallet_signed_minor).sum();
        let of_wallet: Vec<&ClearingInfo> = clearings
            .iter()
            .filter(|c| &c.wallet == wallet && &c.currency == currency)
            .collect();
        // One clearing per wallet and currency, unless the run straddled UTC midnight.
        assert!(!of_wallet.is_empty(), "{wallet}: {clearings:?}");
        if let [only] = of_wallet.as_slice() {
            assert_eq!(check_clearing_file(&env, only, mine), owed);
        }
        assert_eq!(of_wallet.iter().map(|c| c.net_minor).sum::<i64>(), owed);
        assert_eq!(
            env.balance(format!("wallet_receivable:{wallet}:{currency}"))
                .await,
            0
        );
        assert_eq!(
            env.balance(format!("wallet_cleared:{wallet}:{currency}"))
                .await,
            owed
        );
    }

    let report = env.acq.audit_report().await.unwrap();
    assert_eq!(report.violations, vec![], "{report:?}");
    assert_eq!(report.n_payments, 10);
    assert_eq!(report.n_refunds, 5);
    assert_eq!(report.n_items, events.len() as u64);

    // Closing again finds nothing.
    let again = env.acq.settle_now().await.unwrap();
    assert!(
        again.batches.is_empty() && again.clearings.is_empty(),
        "{again:?}"
    );

    // ---- a late refund: its day is closed, so it goes into the next day's batch
    let late = env.refund(ISV, "sg-a-late", &sg_a, "SGD", 250).await;
    let late_row = env.refund_row(&late).await;
    let sg_tz: chrono_tz::Tz = "Asia/Singapore".parse().unwrap();
    let now_ms = env.acq.clock().now_ms();
    let next_cutoff_ms = {
        let local = sg_tz.timestamp_millis_opt(now_ms).unwrap();
        let mut day = local.date_naive();
        if local.time() >= chrono::NaiveTime::from_hms_opt(18, 0, 0).unwrap() {
            day = day.succ_opt().unwrap();
        }
        sg_tz
            .from_local_datetime(&day.and_hms_opt(18, 0, 0).unwrap())
            .unwrap()
            .timestamp_millis()
    };
    env.acq.clock().advance_ms(next_cutoff_ms - now_ms + 60_000);
    let after_cutoff = env.acq.settle_due(env.acq.clock().now_ms()).await.unwrap();
    assert!(
        after_cutoff
            .batches
            .iter()
            .all(|b| b.merchant != "ISV_CLIENT/SG1"),
        "the closed day is not reopened: {after_cutoff:?}"
    );
    env.acq.clock().advance_ms(86_400_000);
    let next_day = env.acq.settle_due(env.acq.clock().now_ms()).await.unwrap();
    let sg_next: Vec<&BatchInfo> = next_day
        .batches
        .iter()
        .filter(|b| b.merchant == "ISV_CLIENT/SG1")
        .collect();
    assert_eq!(sg_next.len(), 1, "{next_day:?}");
    let p = env.payment(&sg_a).await;
    let late_expected = expected(&p, "REFUND", Some(&late_row));
    check_batch_files(&env, sg_next[0], &[&late_expected]);
    let first_sg = batches
        .iter()
        .find(|b| b.merchant == "ISV_CLIENT/SG1")
        .unwrap();
    assert!(sg_next[0].settlement_date > first_sg.settlement_date);
    assert_eq!(
        env.balance("merchant_payable:ISV_CLIENT/SG1:SGD".into())
            .await,
        0
    );
    // Idle: nothing more is due.
    let idle = env.acq.settle_due(env.acq.clock().now_ms()).await.unwrap();
    assert!(idle.batches.is_empty() && idle.clearings.is_empty());
    assert_eq!(env.acq.audit().await.unwrap(), vec![]);

    // ---- admin endpoints
    let (status, list) = env
        .admin(reqwest::Method::GET, "/admin/v1/settlement/batches", None)
        .await;
    assert_eq!(status, 200);
    let list: Vec<Value> = serde_json::from_str(&list).unwrap();
    assert_eq!(list.len(), batches.len() + next_day.batches.len());
    let id = &sg_next[0].batch_id;
    let encoded = id.replace('/', "%2F");
    let (status, summary) = env
        .admin(
            reqwest::Method::GET,
            &format!("/admin/v1/settlement/batches/{encoded}/summary.csv"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(summary, read(&env.acq.batch_report_paths(id).0));
    let (status, detail) = env
        .admin(
            reqwest::Method::GET,
            &format!("/admin/v1/settlement/batches/{encoded}/detail.csv"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(detail, read(&env.acq.batch_report_paths(id).1));
    let (status, _) = env
        .admin(
            reqwest::Method::GET,
            "/admin/v1/settlement/batches/nope/detail.csv",
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, clearing_list) = env
        .admin(reqwest::Method::GET, "/admin/v1/clearing", None)
        .await;
    assert_eq!(status, 200);
    let clearing_list: Vec<Value> = serde_json::from_str(&clearing_list).unwrap();
    let cid = clearing_list[0]["clearingId"].as_str().unwrap().to_string();
    let (status, file) = env
        .admin(
            reqwest::Method::GET,
            &format!("/admin/v1/clearing/{cid}/report.csv"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(file, read(&env.acq.clearing_report_path(&cid)));
    let (status, closed) = env
        .admin(
            reqwest::Method::POST,
            "/admin/v1/settlement/close?now=true",
            None,
        )
        .await;
    assert_eq!(status, 200, "{closed}");
    assert_eq!(
        serde_json::from_str::<Value>(&closed).unwrap()["batches"],
        json!([])
    );
    let (status, audit) = env
        .admin(reqwest::Method::GET, "/admin/v1/audit", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&audit).unwrap()["violations"],
        json!([])
    );
    let unauthorized = env
        .http
        .get(format!("{}/admin/v1/audit", env.url))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status().as_u16(), 401);

    // ---- corruption is named
    let entry_id: i64 = {
        let pid = sg_b.clone();
        env.acq
            .db()
            .read(move |c| {
                c.query_row(
                    "SELECT entry_id FROM journal_entries WHERE payment_id = ?1 AND refund_id IS NULL",
                    [&pid],
                    |r| r.get(0),
                )
                .map_err(|e| ApiError::from(paycode_db::DbError::Sql(e)))
            })
            .await
            .unwrap()
    };
    let sql: &'static str = Box::leak(
        format!("UPDATE postings SET amount_minor = amount_minor + 1 WHERE entry_id = {entry_id} AND idx = 0")
            .into_boxed_str(),
    );
    assert_eq!(env.exec(sql).await, 1);
    let violations = env.acq.audit().await.unwrap();
    let text: Vec<String> = violations.iter().map(|v| v.to_string()).collect();
    assert!(
        violations.iter().any(|v| v.table == "journal_entries"
            && v.id == entry_id.to_string()
            && v.problem.contains("does not balance")),
        "{text:#?}"
    );
    assert!(
        violations
            .iter()
            .any(|v| v.table == "payments" && v.id == sg_b),
        "{text:#?}"
    );
    assert!(
        violations.iter().any(|v| v.table == "account_balances"),
        "{text:#?}"
    );
    // A settlement item edited after its batch closed is named too.
    assert_eq!(
        env.exec("UPDATE settlement_items SET settle_minor = settle_minor + 5 WHERE kind = 'PAYMENT' AND transaction_request_id = 'mo-b'")
            .await,
        1
    );
    let violations = env.acq.audit().await.unwrap();
    assert!(
        violations
            .iter()
            .any(|v| v.table == "settlement_items" && v.id == format!("PAYMENT {mo_b}")),
        "{violations:#?}"
    );
    assert!(
        violations.iter().any(|v| v.table == "settlement_batches"),
        "{violations:#?}"
    );
    // A payment row that cannot be read is named, and every other payment is still checked
    // (the audit reads payments a chunk at a time and reads that chunk again one by one).
    let report_before = env.acq.audit_report().await.unwrap();
    let sql: &'static str = Box::leak(
        format!("UPDATE payments SET status = 'BOGUS' WHERE payment_id = '{mo_b}'")
            .into_boxed_str(),
    );
    assert_eq!(env.exec(sql).await, 1);
    let report = env.acq.audit_report().await.unwrap();
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.table == "payments" && v.id == mo_b && v.problem.contains("cannot be read")),
        "{:#?}",
        report.violations
    );
    assert_eq!(report.n_payments, report_before.n_payments - 1);
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.table == "settlement_items" && v.problem.contains("payment cannot be read")),
        "its item is named too: {:#?}",
        report.violations
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rates_are_replaced_by_file_and_merged_from_the_ecb_feed() {
    let env = Env::new().await;
    let (status, text) = env
        .admin(reqwest::Method::GET, "/admin/v1/rates", None)
        .await;
    assert_eq!(status, 200);
    assert!(text.contains("mid USD/SGD 1.3412"), "{text}");
    assert!(text.contains("spread USD/SGD 30 30"), "{text}");

    let (status, bad) = env
        .admin(
            reqwest::Method::POST,
            "/admin/v1/rates",
            Some("mid USD/SGD x\n".into()),
        )
        .await;
    assert_eq!(status, 400, "{bad}");
    assert!(bad.contains("line 1"), "{bad}");

    let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01" xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">
  <Cube><Cube time="2026-11-27">
    <Cube currency="USD" rate="1.0823"/>
    <Cube currency="SGD" rate="1.4502"/>
  </Cube></Cube>
</gesmes:Envelope>"#;
    let (status, answer) = env
        .admin(
            reqwest::Method::POST,
            "/admin/v1/rates/ecb",
            Some(xml.into()),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["date"], "2026-11-27");
    assert_eq!(answer["imported"], 2);
    let (_, text) = env
        .admin(reqwest::Method::GET, "/admin/v1/rates", None)
        .await;
    assert!(text.contains("mid EUR/USD 1.0823"), "{text}");
    assert!(text.contains("mid EUR/SGD 1.4502"), "{text}");
    assert!(
        text.contains("mid USD/SGD 1.3412"),
        "the other pairs stay: {text}"
    );
    assert!(
        text.contains("spread USD/SGD 30 30"),
        "spreads stay: {text}"
    );
    assert_eq!(env.acq.rates().to_rate_file(), text);

    let (status, _) = env
        .admin(
            reqwest::Method::POST,
            "/admin/v1/rates",
            Some("mid USD/SGD 1.35\n".into()),
        )
        .await;
    assert_eq!(status, 200);
    let (_, text) = env
        .admin(reqwest::Method::GET, "/admin/v1/rates", None)
        .await;
    assert!(text.contains("mid USD/SGD 1.35"), "{text}");
    assert!(
        !text.contains("mid EUR/"),
        "a rate file replaces the table: {text}"
    );
}

/// The next local cut-off (minutes after midnight, 0 = midnight) strictly after `t_ms`.
fn next_cutoff_ms(t_ms: i64, tz: chrono_tz::Tz, cutoff_minutes: u32) -> i64 {
    let local = tz.timestamp_millis_opt(t_ms).unwrap();
    let mut day = local.date_naive();
    for _ in 0..3 {
        let at =
            day.and_hms_opt(0, 0, 0).unwrap() + chrono::Duration::minutes(cutoff_minutes.into());
        let at_ms = tz
            .from_local_datetime(&at)
            .earliest()
            .unwrap()
            .timestamp_millis();
        if at_ms > t_ms {
            return at_ms;
        }
        day = day.succ_opt().unwrap();
    }
    unreachable!("a cut-off comes within two days")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_close_in_the_background_at_each_merchants_local_cut_off() {
    let env = Env::new().await;
    let sg = env.paid(ISV, "SG1", "sg-1", "SGD", 4_200, "cnpay").await;
    let us = env.paid(ISV, "US1", "us-1", "USD", 1_000, "phpay").await;
    let sg_paid = env.payment(&sg).await.paid_ms.unwrap();
    let us_paid = env.payment(&us).await.paid_ms.unwrap();
    let sg_tz: chrono_tz::Tz = "Asia/Singapore".parse().unwrap();
    let us_tz: chrono_tz::Tz = "Pacific/Honolulu".parse().unwrap();
    let sg_cut = next_cutoff_ms(sg_paid, sg_tz, 18 * 60);
    let us_cut = next_cutoff_ms(us_paid, us_tz, 0);
    let now = env.acq.clock().now_ms();

    // Just before the first cut-off nothing is due (unless a cut-off already passed meanwhile).
    if now < sg_cut.min(us_cut) {
        let early = env.acq.settle_due(sg_cut.min(us_cut) - 1).await.unwrap();
        assert_eq!(early.batches, vec![], "nothing is due before a cut-off");
        assert_eq!(early.n_swept, 2, "two payments taken in");
    }

    // The background pass closes each merchant's day once its own cut-off has passed.
    for (merchant, cut, tz, cutoff_minutes) in [
        ("ISV_CLIENT/SG1", sg_cut, sg_tz, 18 * 60),
        ("ISV_CLIENT/US1", us_cut, us_tz, 0),
    ] {
        let now = env.acq.clock().now_ms();
        if cut + 1_000 > now {
            env.acq.clock().advance_ms(cut + 1_000 - now);
        }
        env.acq.run_background_once().await.unwrap();
        let batches = env
            .acq
            .settlement_batches(Some(merchant.into()), 10)
            .await
            .unwrap();
        assert_eq!(batches.len(), 1, "{merchant}: {batches:?}");
        let b = &batches[0];
        assert_eq!(b.item_count, 1);
        // The business day is the local date on which the cut-off ended it (a midnight cut-off
        // ends the previous date).
        let day_end_local = tz.timestamp_millis_opt(cut - 1).unwrap().date_naive();
        assert_eq!(
            b.settlement_date,
            day_end_local.format("%Y-%m-%d").to_string(),
            "{merchant} (cut-off {cutoff_minutes} min)"
        );
        let (summary, detail) = env.acq.batch_report_paths(&b.batch_id);
        assert!(read(&summary).ends_with("<END>\n"));
        assert_eq!(read(&detail).lines().count(), 3);
    }
    // Nothing else is due, and the books hold.
    let idle = env.acq.settle_due(env.acq.clock().now_ms()).await.unwrap();
    assert!(idle.batches.is_empty(), "{idle:?}");
    assert_eq!(env.acq.audit().await.unwrap(), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_day_twice_makes_a_further_batch_and_never_reopens_the_first() {
    let env = Env::new().await;
    let first = env.paid(ISV, "SG1", "d-1", "SGD", 1_000, "sgpay").await;
    let one = env.acq.settle_now().await.unwrap();
    let [b1] = one.batches.as_slice() else {
        panic!("{one:?}")
    };
    let (_, detail_1) = env.acq.batch_report_paths(&b1.batch_id);
    let detail_1_text = read(&detail_1);
    // A refund of the settled payment, closed again the same day: a second batch of that day.
    env.refund(ISV, "d-1-r", &first, "SGD", 400).await;
    let two = env.acq.settle_now().await.unwrap();
    let [b2] = two.batches.as_slice() else {
        panic!("{two:?}")
    };
    if b2.settlement_date == b1.settlement_date {
        assert_eq!(b2.batch_id, format!("{}-2", b1.batch_id));
        assert_eq!(b2.seq, 2);
    }
    // A refund outweighing the day's payments is a collection from the merchant.
    assert!(b2.net_minor < 0, "{b2:?}");
    let entry = b2.entry_id.unwrap();
    let kind: String = env
        .acq
        .db()
        .read(move |c| {
            c.query_row(
                "SELECT kind FROM journal_entries WHERE entry_id = ?1",
                [entry],
                |r| r.get(0),
            )
            .map_err(|e| ApiError::from(paycode_db::DbError::Sql(e)))
        })
        .await
        .unwrap();
    assert_eq!(kind, "settlement_collection");
    // The first batch and its files are untouched.
    assert_eq!(read(&detail_1), detail_1_text);
    let (_, detail_2) = env.acq.batch_report_paths(&b2.batch_id);
    assert!(read(&detail_2).contains(",d-1-r,REFUND,"));
    assert_eq!(
        env.balance("merchant_payable:ISV_CLIENT/SG1:SGD".into())
            .await,
        0
    );
    assert_eq!(env.acq.audit().await.unwrap(), vec![]);
}

/// The first code a new phone shows at `now_s`.
fn first_code(material: &CodeMaterial, now_s: u64) -> String {
    CodeDisplay::default()
        .next(material, now_s)
        .expect("a new phone can always show a code")
        .0
        .digits
}
