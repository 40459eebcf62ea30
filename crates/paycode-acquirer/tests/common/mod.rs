//! Test harness: an acquirer over real HTTP on port 0, a real reference wallet or a scriptable
//! wallet double, a merchant client that verifies every answer's signature, and a notification
//! receiver. Background work is drained, never waited for. Every party reads the acquirer's
//! clock, so moving it keeps their `Request-Time`s fresh for each other.
#![allow(dead_code)]

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use paycode_acquirer::registry::{self, NewClient, NewMerchant, NewWallet};
use paycode_acquirer::{Acquirer, AcquirerConfig, Limits};
use paycode_http::server::{ServeOptions, ServerLimits, serve as serve_http};
use paycode_http::{SignedClient, SignedRequest, Signer, signed_response};
use paycode_proto::{ResultInfo, mpp};
use paycode_sign::{PrivateKey, PublicKey};
use paycode_wallet::{CodeDisplay, CodeMaterial, NewUser, Wallet, WalletConfig};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

pub const CLIENT: &str = "TEST_MERCHANT_CLIENT";
pub const OTHER_CLIENT: &str = "TEST_OTHER_CLIENT";
pub const MERCHANT: &str = "M1";
pub const STORE: &str = "S1";
pub const ACQ_ID: &str = "paycode-acquirer";
pub const REAL_CII: &str = "281005";
pub const FAKE_CII: &str = "289999";

pub fn key(name: &str) -> &'static PrivateKey {
    static KEYS: OnceLock<Mutex<HashMap<String, &'static PrivateKey>>> = OnceLock::new();
    let mut m = KEYS.get_or_init(Default::default).lock().unwrap();
    m.entry(name.to_string())
        .or_insert_with(|| Box::leak(Box::new(PrivateKey::generate().unwrap())))
}

fn signer(name: &str) -> Signer {
    Signer::new(PrivateKey::parse(&key(name).to_pkcs8_base64()).unwrap(), 1)
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    serve_on(listener, router);
    format!("http://{addr}")
}

/// Serves as `paycode serve` does: the bounded server with its default limits.
pub fn serve_on(listener: tokio::net::TcpListener, router: Router) {
    let options = ServeOptions::new("test", ServerLimits::default());
    tokio::spawn(async move {
        serve_http(listener, router, options, std::future::pending())
            .await
            .unwrap();
    });
}

// ------------------------------------------------------------------ wallet double

/// How the wallet double answers `pay`.
#[derive(Clone, Debug)]
pub enum PayMode {
    Succeed,
    Fail(&'static str),
    Pending,
    /// Records success, then answers only after this delay (longer than the acquirer waits).
    SucceedSlowly(u64),
    /// Closes the connection without answering, after recording success.
    SucceedThenHangUp,
}

#[derive(Default)]
pub struct FakeState {
    /// The acquirer's clock: every call must carry a fresh `Request-Time` by it.
    pub clock: paycode_acquirer::Clock,
    pub pay_mode: Option<PayMode>,
    /// paymentRequestId → "S" | "F" | "U" | "C" (cancelled)
    pub payments: HashMap<String, String>,
    pub pay_to: HashMap<String, mpp::PayRequest>,
    pub calls: Vec<String>,
    pub refunds: HashMap<String, i64>,
}

#[derive(Clone)]
pub struct FakeWallet {
    pub url: String,
    pub state: Arc<Mutex<FakeState>>,
}

async fn fake_handler(State(st): State<Arc<Mutex<FakeState>>>, req: SignedRequest) -> Response {
    let path = req.path.clone();
    let header = req.signature_header().unwrap();
    req.verify(&header, &key("acquirer").public_key())
        .expect("the acquirer signs its wallet calls");
    let now_ms = st.lock().unwrap().clock.now_ms();
    paycode_http::check_request_time(req.request_time.as_deref(), now_ms, 300)
        .expect("the acquirer stamps its wallet calls with its clock");
    let answer: Value = match path.as_str() {
        mpp::PAY_PATH => {
            let r: mpp::PayRequest = serde_json::from_slice(&req.body).unwrap();
            // Wallets know merchants by the acquirer's own id, unique across merchant clients.
            let merchant = &r.order.merchant.reference_merchant_id;
            assert!(
                [CLIENT, OTHER_CLIENT]
                    .iter()
                    .any(|c| merchant.starts_with(&format!("{c}/"))),
                "the wallet was sent merchant id {merchant:?}"
            );
            let mode = {
                let mut s = st.lock().unwrap();
                s.calls.push(format!("pay {}", r.payment_request_id));
                s.pay_to.insert(r.payment_request_id.clone(), r.clone());
                s.pay_mode.clone().unwrap_or(PayMode::Succeed)
            };
            let set = |v: &str| {
                st.lock()
                    .unwrap()
                    .payments
                    .insert(r.payment_request_id.clone(), v.to_string());
            };
            match mode {
                PayMode::Succeed => {
                    set("S");
                    json!({"result": ResultInfo::success(), "paymentId": "W1", "customerId": "c-1"})
                }
                PayMode::Fail(code) => {
                    set("F");
                    json!({"result": {"resultCode": code, "resultStatus": "F", "resultMessage": "no"}})
                }
                PayMode::Pending => {
                    set("U");
                    json!({"result": {"resultCode": "PAYMENT_IN_PROCESS", "resultStatus": "U", "resultMessage": "waiting"}})
                }
                PayMode::SucceedSlowly(ms) => {
                    set("S");
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    json!({"result": ResultInfo::success()})
                }
                PayMode::SucceedThenHangUp => {
                    set("S");
                    panic!("hang up: the connection closes without an answer");
                }
            }
        }
        mpp::INQUIRY_PATH => {
            let r: mpp::PaymentRef = serde_json::from_slice(&req.body).unwrap();
            let s = st.lock().unwrap();
            match s.payments.get(&r.payment_request_id).map(String::as_str) {
                None => {
                    json!({"result": {"resultCode": "ORDER_NOT_EXIST", "resultStatus": "F", "resultMessage": "unknown"}})
                }
                Some("S") => {
                    json!({"result": ResultInfo::success(), "paymentResult": ResultInfo::success(), "paymentId": "W1"})
                }
                Some("U") => {
                    json!({"result": ResultInfo::success(), "paymentResult": {"resultCode": "PAYMENT_IN_PROCESS", "resultStatus": "U", "resultMessage": ""}})
                }
                Some(_) => {
                    json!({"result": ResultInfo::success(), "paymentResult": {"resultCode": "ORDER_IS_CLOSED", "resultStatus": "F", "resultMessage": "closed"}})
                }
            }
        }
        mpp::CANCEL_PATH => {
            let r: mpp::PaymentRef = serde_json::from_slice(&req.body).unwrap();
            let mut s = st.lock().unwrap();
            s.calls.push(format!("cancel {}", r.payment_request_id));
            s.payments.insert(r.payment_request_id, "C".into());
            json!({"result": ResultInfo::success(), "cancelTime": "2026-01-01T00:00:00Z"})
        }
        mpp::REFUND_PATH => {
            let r: mpp::RefundRequest = serde_json::from_slice(&req.body).unwrap();
            let mut s = st.lock().unwrap();
            s.calls.push(format!("refund {}", r.refund_request_id));
            s.refunds
                .insert(r.refund_request_id, r.refund_amount.value.parse().unwrap());
            json!({"result": ResultInfo::success(), "refundId": "WR1"})
        }
        _ => {
            json!({"result": {"resultCode": "INVALID_API", "resultStatus": "F", "resultMessage": ""}})
        }
    };
    signed_response(
        &signer("fakepay"),
        &path,
        req.client_id.as_deref().unwrap_or(""),
        serde_json::to_vec(&answer).unwrap(),
    )
    .await
}

impl FakeWallet {
    pub async fn start(clock: paycode_acquirer::Clock) -> FakeWallet {
        let state = Arc::new(Mutex::new(FakeState {
            clock,
            ..FakeState::default()
        }));
        let router = Router::new()
            .fallback(fake_handler)
            .with_state(state.clone());
        FakeWallet {
            url: serve(router).await,
            state,
        }
    }

    pub fn set_mode(&self, mode: PayMode) {
        self.state.lock().unwrap().pay_mode = Some(mode);
    }

    pub fn set_payment(&self, id: &str, status: &str) {
        self.state
            .lock()
            .unwrap()
            .payments
            .insert(id.to_string(), status.to_string());
    }

    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    /// A well-formed code that routes to this double.
    pub fn code(n: u64) -> String {
        format!("{FAKE_CII}02{n:016}")
    }
}

// ------------------------------------------------------------------ notification receiver

#[derive(Default)]
pub struct Received {
    pub fail_first: AtomicUsize,
    pub bodies: Mutex<Vec<(axum::http::HeaderMap, String, String)>>,
}

pub struct Receiver {
    pub url: String,
    pub state: Arc<Received>,
}

async fn receive(
    State(st): State<Arc<Received>>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: String,
) -> (axum::http::StatusCode, String) {
    st.bodies
        .lock()
        .unwrap()
        .push((headers, uri.path().to_string(), body));
    if st
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "down".into());
    }
    (
        axum::http::StatusCode::OK,
        r#"{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"success"}}"#
            .into(),
    )
}

impl Receiver {
    pub async fn start(fail_first: usize) -> Receiver {
        let state = Arc::new(Received::default());
        state.fail_first.store(fail_first, Ordering::SeqCst);
        let router = Router::new().fallback(receive).with_state(state.clone());
        Receiver {
            url: format!("{}/notify/payments", serve(router).await),
            state,
        }
    }

    pub fn count(&self) -> usize {
        self.state.bodies.lock().unwrap().len()
    }

    pub fn bodies(&self) -> Vec<Value> {
        self.state
            .bodies
            .lock()
            .unwrap()
            .iter()
            .map(|(_, _, b)| serde_json::from_str(b).unwrap())
            .collect()
    }
}

// ------------------------------------------------------------------ the harness

/// The wallet sees the acquirer's clock, as two services on synchronised clocks do: a test
/// that moves the acquirer through a window moves the wallet with it, so their `Request-Time`
/// checks agree.
#[derive(Debug)]
pub struct SharedClock(pub paycode_acquirer::Clock);

impl paycode_wallet::Clock for SharedClock {
    fn now_ms(&self) -> i64 {
        self.0.now_ms()
    }
}

pub struct Harness {
    pub _dir: tempfile::TempDir,
    pub acq: Acquirer,
    pub url: String,
    pub merchant: SignedClient,
    pub other: SignedClient,
    pub wallet: Wallet,
    pub wallet_url: String,
    pub fake: FakeWallet,
    devices: AtomicUsize,
}

pub struct Options {
    pub limits: Limits,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            limits: Limits {
                wallet_pay_timeout_ms: 3_000,
                wallet_call_timeout_ms: 3_000,
                reconcile_interval_ms: 1_000,
                notify_schedule_s: vec![0, 60, 60],
                notify_timeout_ms: 2_000,
                ..Limits::default()
            },
        }
    }
}

impl Harness {
    pub async fn new() -> Harness {
        Harness::with(Options::default()).await
    }

    pub async fn with(opts: Options) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        // The acquirer's URL is needed before it starts: bind first.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let acq = Acquirer::open(AcquirerConfig {
            db_path: dir.path().join("acquirer.db"),
            postgres: paycode_db::test_pg_target("acquirer"),
            public_url: url.clone(),
            client_id_at_wallets: ACQ_ID.into(),
            signer: signer("acquirer"),
            admin_token: Some("admin-secret".into()),
            time_zone: chrono_tz::Asia::Singapore,
            limits: opts.limits,
        })
        .await
        .unwrap();

        let mut wcfg = WalletConfig::new(
            "sgpay",
            REAL_CII,
            paycode_core::Currency::parse("SGD").unwrap(),
            dir.path().join("wallet.db"),
            "sgpay",
            signer("sgpay"),
            ACQ_ID,
            key("acquirer").public_key(),
        );
        wcfg.postgres = paycode_db::test_pg_target("wallet");
        wcfg.acquirer_url = Some(url.clone());
        wcfg.password_memory_kib = 256;
        wcfg.notify_retry_ms = vec![0, 0, 0];
        wcfg.clock = Arc::new(SharedClock(acq.clock().clone()));
        let wallet = Wallet::open(wcfg).unwrap();
        let users = [
            ("alice", 100_000, 50_000, false),
            ("bob", 200_000, 1, false),
            ("carol", 500, 50_000, false),
            ("dave", 100_000, 50_000, true),
        ];
        for (name, balance, free, frozen) in users {
            wallet
                .create_user(NewUser {
                    name: name.into(),
                    password: "123456".into(),
                    balance_minor: balance,
                    status_frozen: frozen,
                    password_free_per_payment_minor: free,
                    password_free_daily_minor: free * 10,
                    hard_limit_per_payment_minor: 500_000,
                    hard_limit_daily_minor: 1_000_000,
                })
                .await
                .unwrap();
        }
        let wallet_url = serve(wallet.router()).await;
        let fake = FakeWallet::start(acq.clock().clone()).await;

        let now = acq.clock().now_ms();
        let (wurl, furl) = (wallet_url.clone(), fake.url.clone());
        acq.db()
            .write(move |c| {
                for (client, merchant) in [(CLIENT, MERCHANT), (OTHER_CLIENT, "O1")] {
                    registry::upsert_client(
                        c,
                        &NewClient {
                            client_id: client,
                            name: client,
                            notify_url: None,
                        },
                        now,
                    )?;
                    let k = if client == CLIENT {
                        "merchant"
                    } else {
                        "other"
                    };
                    registry::upsert_client_key(c, client, 1, &key(k).public_key(), true)?;
                    registry::upsert_merchant(
                        c,
                        &NewMerchant {
                            client_id: client,
                            reference_merchant_id: merchant,
                            name: "Test Shop",
                            mcc: "5812",
                            currencies: &["SGD".to_string()],
                            settlement_currency: "SGD",
                            max_amount_minor: Some(1_000_000),
                            notify_url: None,
                            active: true,
                            fee_bps: 0,
                            time_zone: "Asia/Singapore",
                            cutoff_minutes: 0,
                        },
                    )?;
                }
                registry::upsert_merchant(
                    c,
                    &NewMerchant {
                        client_id: CLIENT,
                        reference_merchant_id: "SUSPENDED",
                        name: "Closed Shop",
                        mcc: "5812",
                        currencies: &["SGD".to_string()],
                        settlement_currency: "SGD",
                        max_amount_minor: None,
                        notify_url: None,
                        active: false,
                        fee_bps: 0,
                        time_zone: "UTC",
                        cutoff_minutes: 0,
                    },
                )?;
                for (name, u, cii, k) in [
                    ("sgpay", &wurl, REAL_CII, "sgpay"),
                    ("fakepay", &furl, FAKE_CII, "fakepay"),
                ] {
                    registry::upsert_wallet(
                        c,
                        &NewWallet {
                            name,
                            psp_name: name,
                            base_url: u,
                            public_key: &key(k).public_key(),
                            currencies: &["SGD".to_string()],
                            enabled: true,
                        },
                    )?;
                    registry::upsert_route(c, "CII", cii, name, 100)?;
                }
                Ok::<_, paycode_acquirer::ApiError>(())
            })
            .await
            .unwrap();
        acq.registry().reload(acq.db()).await.unwrap();
        serve_on(listener, paycode_acquirer::router(acq.clone()));
        let client = |id: &str, k: &str| {
            SignedClient::new(
                id,
                signer(k),
                Some(key("acquirer").public_key()),
                Duration::from_secs(15),
            )
            .with_clock(acq.clock().now_fn())
        };
        Harness {
            _dir: dir,
            merchant: client(CLIENT, "merchant"),
            other: client(OTHER_CLIENT, "other"),
            acq,
            url,
            wallet,
            wallet_url,
            fake,
            devices: AtomicUsize::new(0),
        }
    }

    /// Calls a merchant API operation as the test merchant; the answer's signature is verified.
    pub async fn call(&self, op: &str, body: Value) -> Value {
        self.call_as(&self.merchant, op, body).await
    }

    pub async fn call_as(&self, client: &SignedClient, op: &str, body: Value) -> Value {
        client
            .post::<Value, Value>(&format!("{}/ams/api/v1/payments/{op}", self.url), &body)
            .await
            .unwrap_or_else(|e| panic!("{op} failed at transport level: {e}"))
    }

    async fn register(&self, user: &str) -> paycode_proto::customer::DeviceMaterial {
        let m: paycode_proto::customer::DeviceMaterial = reqwest::Client::new()
            .post(format!("{}/customer/v1/devices/register", self.wallet_url))
            .json(&json!({"userName": user, "password": "123456"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(m.result.is_success(), "register {user}: {:?}", m.result);
        self.devices.fetch_add(1, Ordering::SeqCst);
        m
    }

    /// A fresh, unused code of a real wallet user (one new device per code).
    pub async fn code_for(&self, user: &str) -> String {
        let material = CodeMaterial::from_device_material(&self.register(user).await).unwrap();
        first_code(&material, (self.acq.clock().now_ms() / 1000) as u64)
    }

    /// `n` fresh codes shown one after the other by one new device of a real wallet user, and
    /// the device's bearer token.
    pub async fn device_codes(&self, user: &str, n: usize) -> (Vec<String>, String) {
        let m = self.register(user).await;
        let material = CodeMaterial::from_device_material(&m).unwrap();
        let now_s = (self.acq.clock().now_ms() / 1000) as u64;
        let mut display = CodeDisplay::default();
        let codes = (0..n)
            .map(|_| {
                let (shown, next) = display
                    .next(&material, now_s)
                    .expect("a phone shows up to twenty codes a step");
                display = next;
                shown.digits
            })
            .collect();
        (codes, m.device_token.unwrap())
    }

    /// A client signing as wallet `name` towards the acquirer (its MPP callbacks).
    pub fn as_wallet(&self, name: &str) -> SignedClient {
        self.as_wallet_with_key(name, name)
    }

    /// The test merchant's client signing with key `key_name` as key version `version`.
    pub fn merchant_with_key(&self, key_name: &str, version: u32) -> SignedClient {
        SignedClient::new(
            CLIENT,
            Signer::new(
                PrivateKey::parse(&key(key_name).to_pkcs8_base64()).unwrap(),
                version,
            ),
            Some(key("acquirer").public_key()),
            Duration::from_secs(15),
        )
        .with_clock(self.acq.clock().now_fn())
    }

    /// A client naming itself wallet `name` but signing with the key of `key_name`.
    pub fn as_wallet_with_key(&self, name: &str, key_name: &str) -> SignedClient {
        SignedClient::new(
            name,
            signer(key_name),
            Some(key("acquirer").public_key()),
            Duration::from_secs(15),
        )
        .with_clock(self.acq.clock().now_fn())
    }

    /// The device's pending challenges (`GET /customer/v1/challenges`).
    pub async fn challenges(&self, token: &str) -> Value {
        reqwest::Client::new()
            .get(format!("{}/customer/v1/challenges", self.wallet_url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Confirms a challenge with the user's password; the wallet's answer.
    pub async fn confirm(&self, token: &str, challenge_id: &str) -> Value {
        reqwest::Client::new()
            .post(format!(
                "{}/customer/v1/challenges/{challenge_id}/confirm",
                self.wallet_url
            ))
            .bearer_auth(token)
            .json(&json!({"password": "123456"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Registers a device and returns its bearer token (for the customer API).
    pub async fn device_token(&self, user: &str) -> String {
        self.register(user).await.device_token.unwrap()
    }

    pub fn pay_body(&self, request_id: &str, value: i64, code: &str) -> Value {
        json!({
            "productCode": "IN_STORE_PAYMENT",
            "paymentRequestId": request_id,
            "paymentAmount": {"currency": "SGD", "value": value.to_string()},
            "paymentMethod": {"paymentMethodType": "CONNECT_WALLET", "paymentMethodId": code},
            "paymentFactor": {"inStorePaymentScenario": "PaymentCode"},
            "order": {
                "orderDescription": "coffee",
                "merchant": {"referenceMerchantId": MERCHANT, "merchantName": "Test Shop", "merchantMCC": "5812",
                             "store": {"referenceStoreId": STORE, "storeName": "Main", "storeMCC": "5812"}},
                "env": {"storeTerminalId": "T1", "storeTerminalRequestTime": "2026-01-01T00:00:00+08:00"}
            }
        })
    }

    /// What a restart sees: closes this acquirer's store, opens the same store in a new acquirer
    /// and serves it on a new port. Returns the new acquirer and its URL.
    pub async fn reopen_acquirer(&self) -> (Acquirer, String) {
        let config = self.acq.config().clone();
        self.acq.db().close();
        let acq = Acquirer::open(config).await.unwrap();
        acq.registry().reload(acq.db()).await.unwrap();
        let url = serve(paycode_acquirer::router(acq.clone())).await;
        (acq, url)
    }

    /// Runs background passes until one finds nothing to do.
    pub async fn drain(&self) {
        for _ in 0..50 {
            let n_acq = self.acq.run_background_once().await.unwrap();
            let n_wallet = self.wallet.run_background_once().await.unwrap();
            if n_acq == 0 && n_wallet == 0 {
                return;
            }
        }
        panic!("background work did not settle");
    }

    /// A second acquirer process on the same store (same configuration, its own pool and
    /// writer), served on its own port: its URL.
    pub async fn second_acquirer(&self) -> String {
        let acq = Acquirer::open(self.acq.config().clone()).await.unwrap();
        serve(paycode_acquirer::router(acq)).await
    }

    pub async fn sql_i64(&self, sql: &'static str, arg: String) -> i64 {
        self.acq
            .db()
            .read(move |c| {
                c.query_row(sql, [&arg], |r| r.get::<_, i64>(0))
                    .map_err(|e| paycode_acquirer::ApiError::from(paycode_db::DbError::Sql(e)))
            })
            .await
            .unwrap()
    }

    pub async fn balance(&self, user: &str) -> i64 {
        self.wallet.balance_of(user).await.unwrap().amount_minor()
    }

    pub async fn admin_get(&self, path: &str) -> Value {
        self.admin(reqwest::Method::GET, path, None).await
    }

    pub async fn admin_post(&self, path: &str, body: String) -> Value {
        self.admin(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn admin_delete(&self, path: &str) -> Value {
        self.admin(reqwest::Method::DELETE, path, None).await
    }

    /// An admin API call with the operator token; the JSON answer, whatever its status.
    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<String>) -> Value {
        let mut req = reqwest::Client::new()
            .request(method, format!("{}{path}", self.url))
            .bearer_auth("admin-secret");
        if let Some(b) = body {
            req = req.body(b);
        }
        req.send().await.unwrap().json().await.unwrap()
    }
}

/// What the test merchant's payable account holds in SGD from the postings of an admin payment
/// view (credits less debits).
pub fn merchant_net(view: &Value) -> i64 {
    view["postings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["account"] == "merchant_payable:TEST_MERCHANT_CLIENT/M1:SGD")
        .map(|p| {
            let a = p["amountMinor"].as_i64().unwrap();
            if p["side"] == "C" { a } else { -a }
        })
        .sum()
}

pub fn code_of(v: &Value) -> &str {
    v["result"]["resultCode"].as_str().unwrap_or("")
}

pub fn status_of(v: &Value) -> &str {
    v["result"]["resultStatus"].as_str().unwrap_or("")
}

pub fn verify_key() -> PublicKey {
    key("acquirer").public_key()
}

/// The first code a new phone shows at `now_s`.
fn first_code(material: &CodeMaterial, now_s: u64) -> String {
    CodeDisplay::default()
        .next(material, now_s)
        .expect("a new phone can always show a code")
        .0
        .digits
}
