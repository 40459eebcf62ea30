//! The wallet over real HTTP: a fake acquirer signs MPP calls to it, a fake acquirer receiver
//! takes its `notifyPayment`s (failing the first ones on demand), and a phone-like client drives
//! the customer API. Time is a manual clock; background work is drained, never waited for.
//! Every test ends by re-checking the wallet's invariants (balance = sum of ledger, per user;
//! ledger rows match each payment's state).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use paycode_core::Currency;
use paycode_http::server::{ServeOptions, ServerLimits, serve as serve_http};
use paycode_http::{SignedClient, SignedRequest, Signer, signed_response};
use paycode_proto::customer::{ChallengeList, ChallengeOutcome, DeviceMaterial, History};
use paycode_proto::mpp::{
    CANCEL_PATH, CancelResponse, INQUIRY_PATH, InquiryResponse, NOTIFY_PATH, NotifyPayment,
    PAY_PATH, PayResponse, REFUND_PATH, RefundResponse,
};
use paycode_wallet::{
    CodeDisplay, CodeMaterial, ManualClock, NewUser, Wallet, WalletConfig, generate_code_at,
};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

const ACQ: &str = "acquirer-1";
const START_MS: i64 = 1_800_000_000_000;
const PASSWORD: &str = "pw-123456";

fn wallet_signer() -> Signer {
    static S: OnceLock<Signer> = OnceLock::new();
    S.get_or_init(|| Signer::new(paycode_sign::PrivateKey::generate().unwrap(), 1))
        .clone()
}

fn acquirer_signer() -> Signer {
    static S: OnceLock<Signer> = OnceLock::new();
    S.get_or_init(|| Signer::new(paycode_sign::PrivateKey::generate().unwrap(), 1))
        .clone()
}

/// A fake acquirer endpoint for `notifyPayment`: verifies the wallet's signature, fails the
/// first `fail_first` deliveries with HTTP 500, then records and acknowledges (signed).
#[derive(Clone, Default)]
struct Receiver {
    /// The wallet's clock: every notification must carry a fresh `Request-Time` by it.
    clock: Arc<ManualClock>,
    fail_first: Arc<AtomicUsize>,
    n_calls: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<NotifyPayment>>>,
}

async fn receive(State(r): State<Receiver>, req: SignedRequest) -> Response {
    r.n_calls.fetch_add(1, Ordering::SeqCst);
    let header = req
        .signature_header()
        .expect("notification has a signature header");
    req.verify(&header, &wallet_signer().public_key())
        .expect("notification is signed by the wallet");
    assert_eq!(req.client_id.as_deref(), Some("cnpay-client"));
    paycode_http::check_request_time(
        req.request_time.as_deref(),
        paycode_wallet::Clock::now_ms(&*r.clock),
        300,
    )
    .expect("the wallet stamps its notifications with its clock");
    if r.fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "down").into_response();
    }
    let n: NotifyPayment = serde_json::from_slice(&req.body).expect("notification parses");
    r.received.lock().unwrap().push(n);
    let body =
        br#"{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"success"}}"#;
    signed_response(
        &acquirer_signer(),
        &req.path,
        req.client_id.as_deref().unwrap_or(""),
        body.to_vec(),
    )
    .await
}

/// The manual clock for a signing client: the fake acquirer sends the wallet's time.
fn now_fn(clock: &Arc<ManualClock>) -> paycode_http::NowMs {
    let clock = clock.clone();
    Arc::new(move || paycode_wallet::Clock::now_ms(&*clock))
}

async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // As `paycode serve` does: the bounded server with its default limits.
    let options = ServeOptions::new("test", ServerLimits::default());
    tokio::spawn(async move {
        serve_http(listener, router, options, std::future::pending())
            .await
            .unwrap();
    });
    format!("http://{addr}")
}

struct Env {
    wallet: Wallet,
    clock: Arc<ManualClock>,
    url: String,
    acq: SignedClient,
    http: reqwest::Client,
    receiver: Receiver,
    notify_url: String,
    _dir: tempfile::TempDir,
}

struct Device {
    token: String,
    material: CodeMaterial,
    /// The phone's memory of the last code it showed.
    display: Mutex<CodeDisplay>,
}

impl Device {
    fn new(m: &DeviceMaterial) -> Device {
        Device {
            token: m.device_token.clone().unwrap(),
            material: CodeMaterial::from_device_material(m).unwrap(),
            display: Mutex::new(CodeDisplay::default()),
        }
    }
}

impl Env {
    async fn new() -> Env {
        Env::in_dir(tempfile::tempdir().unwrap()).await
    }

    /// A wallet whose store lives in `dir` (which may hold a store already).
    async fn in_dir(dir: tempfile::TempDir) -> Env {
        Env::in_dir_on(dir, paycode_db::test_pg_target("wallet")).await
    }

    /// A wallet whose store is the SQLite file `wallet.db` of `dir`, whatever the suite runs on.
    async fn in_sqlite_dir(dir: tempfile::TempDir) -> Env {
        Env::in_dir_on(dir, None).await
    }

    async fn in_dir_on(dir: tempfile::TempDir, postgres: Option<paycode_db::PgTarget>) -> Env {
        let clock = ManualClock::new(START_MS);
        let mut cfg = WalletConfig::new(
            "cnpay",
            "281001",
            Currency::parse("CNY").unwrap(),
            dir.path().join("wallet.db"),
            "cnpay-client",
            wallet_signer(),
            ACQ,
            acquirer_signer().public_key(),
        );
        cfg.postgres = postgres;
        cfg.clock = clock.clone();
        cfg.password_memory_kib = 256;
        cfg.admin_token = Some("op-token".into());
        cfg.notify_retry_ms = vec![0, 1_000, 5_000];
        let wallet = Wallet::open(cfg).unwrap();
        let url = serve(wallet.router()).await;
        let receiver = Receiver {
            clock: clock.clone(),
            ..Receiver::default()
        };
        let notify_base = serve(
            axum::Router::new()
                .route(NOTIFY_PATH, axum::routing::post(receive))
                .with_state(receiver.clone()),
        )
        .await;
        let acq = SignedClient::new(
            ACQ,
            acquirer_signer(),
            Some(wallet_signer().public_key()),
            Duration::from_secs(10),
        )
        .with_clock(now_fn(&clock));
        Env {
            wallet,
            clock,
            url,
            acq,
            http: reqwest::Client::new(),
            receiver,
            notify_url: format!("{notify_base}{NOTIFY_PATH}"),
            _dir: dir,
        }
    }

    async fn user(&self, name: &str, balance: i64, free_per_payment: i64, free_daily: i64) {
        self.wallet
            .create_user(NewUser {
                name: name.into(),
                password: PASSWORD.into(),
                balance_minor: balance,
                status_frozen: false,
                password_free_per_payment_minor: free_per_payment,
                password_free_daily_minor: free_daily,
                hard_limit_per_payment_minor: 100_000,
                hard_limit_daily_minor: 200_000,
            })
            .await
            .unwrap();
    }

    async fn register(&self, name: &str) -> Device {
        let m: DeviceMaterial = self
            .http
            .post(format!("{}/customer/v1/devices/register", self.url))
            .json(&json!({"userName": name, "password": PASSWORD, "deviceName": "test phone"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(m.result.result_status, "S", "{m:?}");
        Device::new(&m)
    }

    fn now_s(&self) -> u64 {
        u64::try_from(paycode_wallet::Clock::now_ms(&*self.clock) / 1000).unwrap()
    }

    /// The next code the phone shows now: a new one at every call, as a real display.
    fn code(&self, d: &Device) -> String {
        let mut display = d.display.lock().unwrap();
        let (shown, next) = display.next(&d.material, self.now_s()).unwrap();
        *display = next;
        shown.digits
    }

    /// Opens the same store again, as after a restart (same configuration, same clock).
    async fn restart(&mut self) {
        let cfg = self.wallet.config().clone();
        self.wallet.close();
        self.wallet = Wallet::open(cfg).unwrap();
        self.url = serve(self.wallet.router()).await;
    }

    fn iso_in(&self, ms: i64) -> String {
        let t = paycode_wallet::Clock::now_ms(&*self.clock) + ms;
        chrono::DateTime::from_timestamp_millis(t)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }

    fn pay_body(&self, prid: &str, amount_cny: i64, code: &str) -> Value {
        json!({
            "paymentRequestId": prid,
            "paymentAmount": {"currency": "SGD", "value": (amount_cny / 5).max(1).to_string()},
            "payToAmount": {"currency": "CNY", "value": amount_cny.to_string()},
            "paymentQuote": {"quoteId": "q1", "quoteCurrencyPair": "SGD/CNY", "quotePrice": "5.0"},
            "paymentMethod": {"paymentMethodType": "CONNECT_WALLET", "paymentMethodId": code},
            "order": {
                "orderDescription": "coffee",
                "merchant": {"referenceMerchantId": "M1", "merchantName": "Kopi Corner", "merchantMCC": "5812",
                             "store": {"referenceStoreId": "S1", "storeName": "Kopi Corner Bugis"}}
            },
            "paymentExpiryTime": self.iso_in(600_000),
            "paymentNotifyUrl": self.notify_url,
        })
    }

    async fn mpp<T: serde::de::DeserializeOwned>(&self, path: &str, body: &Value) -> T {
        self.acq
            .post(&format!("{}{path}", self.url), body)
            .await
            .expect("the wallet answers with a signed 200")
    }

    async fn pay(&self, prid: &str, amount_cny: i64, code: &str) -> PayResponse {
        self.mpp(PAY_PATH, &self.pay_body(prid, amount_cny, code))
            .await
    }

    async fn inquire(&self, prid: &str) -> InquiryResponse {
        self.mpp(INQUIRY_PATH, &json!({"paymentRequestId": prid}))
            .await
    }

    async fn cancel(&self, prid: &str) -> CancelResponse {
        self.mpp(CANCEL_PATH, &json!({"paymentRequestId": prid}))
            .await
    }

    async fn refund(&self, rrid: &str, prid: &str, amount: i64) -> RefundResponse {
        self.mpp(
            REFUND_PATH,
            &json!({"refundRequestId": rrid, "paymentRequestId": prid,
                    "refundAmount": {"currency": "CNY", "value": amount.to_string()}}),
        )
        .await
    }

    async fn customer_get<T: serde::de::DeserializeOwned>(&self, d: &Device, path: &str) -> T {
        self.http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&d.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn customer_post<T: serde::de::DeserializeOwned>(
        &self,
        d: &Device,
        path: &str,
        body: Value,
    ) -> T {
        self.http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&d.token)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn challenges(&self, d: &Device) -> ChallengeList {
        self.customer_get(d, "/customer/v1/challenges").await
    }

    async fn confirm(&self, d: &Device, challenge_id: &str, password: &str) -> ChallengeOutcome {
        self.customer_post(
            d,
            &format!("/customer/v1/challenges/{challenge_id}/confirm"),
            json!({"password": password}),
        )
        .await
    }

    async fn balance(&self, user: &str) -> i64 {
        self.wallet.balance_of(user).await.unwrap().amount_minor()
    }

    /// Runs background passes until one does nothing (bounded).
    async fn drain(&self) {
        for _ in 0..50 {
            if self.wallet.run_background_once().await.unwrap() == 0 {
                return;
            }
        }
        panic!("background work did not settle");
    }

    fn notified(&self) -> Vec<NotifyPayment> {
        self.receiver.received.lock().unwrap().clone()
    }

    async fn assert_consistent(&self) {
        let findings = self.wallet.audit().await.unwrap();
        assert!(
            findings.is_empty(),
            "wallet invariants violated: {findings:?}"
        );
    }
}

fn code_of(r: &paycode_proto::ResultInfo) -> &str {
    &r.result_code
}

#[tokio::test]
async fn password_free_payment_debits_once_and_answers_success() {
    let env = Env::new().await;
    env.user("alice", 10_000, 5_000, 20_000).await;
    let d = env.register("alice").await;
    let code = env.code(&d);
    let r = env.pay("P1", 1_250, &code).await;
    assert_eq!(code_of(&r.result), "SUCCESS");
    assert_eq!(r.result.result_status, "S");
    assert_eq!(r.pay_to_amount.as_ref().unwrap().value, "1250");
    let customer_id = r.customer_id.clone().unwrap();
    assert!(
        !customer_id.contains("alice"),
        "the customer id is a pseudonym"
    );
    assert!(r.payment_time.is_some());
    assert_eq!(env.balance("alice").await, 8_750);
    let q = env.inquire("P1").await;
    assert_eq!(q.result.result_status, "S");
    assert_eq!(code_of(q.payment_result.as_ref().unwrap()), "SUCCESS");
    // A synchronous success is not notified: the acquirer has the answer.
    env.drain().await;
    assert!(env.notified().is_empty());
    let h: History = env.customer_get(&d, "/customer/v1/history").await;
    assert_eq!(h.items[0].kind, "PAYMENT");
    assert_eq!(h.items[0].amount.value, "-1250");
    assert_eq!(h.items[0].merchant_name.as_deref(), Some("Kopi Corner"));
    env.assert_consistent().await;
}

#[tokio::test]
async fn challenge_then_correct_password_pays_and_notifies() {
    let env = Env::new().await;
    env.user("bob", 100_000, 1_000, 5_000).await;
    let d = env.register("bob").await;
    let code = env.code(&d);
    let r = env.pay("P2", 3_000, &code).await;
    assert_eq!(code_of(&r.result), "PAYMENT_IN_PROCESS");
    assert_eq!(r.result.result_status, "U");
    assert_eq!(
        env.balance("bob").await,
        100_000,
        "no debit before the password"
    );
    let list = env.challenges(&d).await;
    assert_eq!(list.challenges.len(), 1);
    let c = &list.challenges[0];
    assert_eq!(c.merchant_name, "Kopi Corner");
    assert_eq!(c.pay_to_amount.value, "3000");
    assert_eq!(c.pay_to_amount.currency, "CNY");
    assert_eq!(c.payment_amount.currency, "SGD");
    assert_eq!(c.payment_request_id, "P2");
    let o = env.confirm(&d, &c.challenge_id, PASSWORD).await;
    assert_eq!(o.result.result_status, "S", "{o:?}");
    assert_eq!(o.payment_status.as_deref(), Some("SUCCESS"));
    assert_eq!(env.balance("bob").await, 97_000);
    // Confirming again changes nothing.
    let again = env.confirm(&d, &c.challenge_id, PASSWORD).await;
    assert_eq!(again.payment_status.as_deref(), Some("SUCCESS"));
    assert_eq!(env.balance("bob").await, 97_000);
    env.drain().await;
    let n = env.notified();
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].payment_request_id, "P2");
    assert_eq!(n[0].payment_result.result_status, "S");
    assert_eq!(n[0].pay_to_amount.value, "3000");
    assert_eq!(
        code_of(env.inquire("P2").await.payment_result.as_ref().unwrap()),
        "SUCCESS"
    );
    assert!(env.challenges(&d).await.challenges.is_empty());
    env.assert_consistent().await;
}

#[tokio::test]
async fn wrong_passwords_lock_after_five_and_fail_the_challenge() {
    let env = Env::new().await;
    env.user("carl", 100_000, 0, 0).await;
    let d = env.register("carl").await;
    let code = env.code(&d);
    assert_eq!(
        code_of(&env.pay("P3", 500, &code).await.result),
        "PAYMENT_IN_PROCESS"
    );
    let id = env.challenges(&d).await.challenges[0].challenge_id.clone();
    for left in (1..5).rev() {
        let o = env.confirm(&d, &id, "wrong").await;
        assert_eq!(code_of(&o.result), "USER_PAYMENT_VERIFICATION_FAILED");
        assert_eq!(o.payment_status.as_deref(), Some("PROCESSING"));
        assert_eq!(o.remaining_attempts, Some(left));
    }
    let o = env.confirm(&d, &id, "wrong").await;
    assert_eq!(code_of(&o.result), "USER_PAYMENT_VERIFICATION_FAILED");
    assert_eq!(o.payment_status.as_deref(), Some("FAIL"));
    assert_eq!(o.remaining_attempts, Some(0));
    // Locked: even the right password no longer pays.
    let o = env.confirm(&d, &id, PASSWORD).await;
    assert_eq!(o.payment_status.as_deref(), Some("FAIL"));
    let q = env.inquire("P3").await;
    assert_eq!(
        code_of(q.payment_result.as_ref().unwrap()),
        "USER_PAYMENT_VERIFICATION_FAILED"
    );
    env.drain().await;
    let n = env.notified();
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].payment_result.result_status, "F");
    assert_eq!(
        code_of(&n[0].payment_result),
        "USER_PAYMENT_VERIFICATION_FAILED"
    );
    // A later payment that needs the password is refused at once.
    let code = env.code(&d);
    assert_eq!(
        code_of(&env.pay("P3b", 500, &code).await.result),
        "USER_PAYMENT_VERIFICATION_FAILED"
    );
    let b: paycode_proto::customer::Balance = env.customer_get(&d, "/customer/v1/balance").await;
    assert_eq!(b.user_status.as_deref(), Some("PASSWORD_LOCKED"));
    assert_eq!(env.balance("carl").await, 100_000);
    // The operator unlocks it; the password works again.
    env.wallet.unlock_password("carl").await.unwrap();
    let code = env.code(&d);
    assert_eq!(
        code_of(&env.pay("P3c", 500, &code).await.result),
        "PAYMENT_IN_PROCESS"
    );
    let id = env.challenges(&d).await.challenges[0].challenge_id.clone();
    assert_eq!(
        env.confirm(&d, &id, PASSWORD)
            .await
            .payment_status
            .as_deref(),
        Some("SUCCESS")
    );
    assert_eq!(env.balance("carl").await, 99_500);
    env.assert_consistent().await;
}

#[tokio::test]
async fn declined_challenge_fails_without_debit_and_is_notified() {
    let env = Env::new().await;
    env.user("dina", 50_000, 100, 100).await;
    let d = env.register("dina").await;
    let code = env.code(&d);
    env.pay("P4", 2_000, &code).await;
    let id = env.challenges(&d).await.challenges[0].challenge_id.clone();
    let o: ChallengeOutcome = env
        .customer_post(
            &d,
            &format!("/customer/v1/challenges/{id}/decline"),
            json!({}),
        )
        .await;
    assert_eq!(o.result.result_status, "S");
    assert_eq!(o.payment_status.as_deref(), Some("FAIL"));
    assert_eq!(
        env.confirm(&d, &id, PASSWORD)
            .await
            .payment_status
            .as_deref(),
        Some("FAIL")
    );
    assert_eq!(
        code_of(env.inquire("P4").await.payment_result.as_ref().unwrap()),
        "USER_DECLINED"
    );
    env.drain().await;
    assert_eq!(code_of(&env.notified()[0].payment_result), "USER_DECLINED");
    assert_eq!(env.balance("dina").await, 50_000);
    env.assert_consistent().await;
}

#[tokio::test]
async fn expired_challenge_fails_and_is_notified() {
    let env = Env::new().await;
    env.user("emma", 50_000, 100, 100).await;
    let d = env.register("emma").await;
    let code = env.code(&d);
    env.pay("P5", 2_000, &code).await;
    let id = env.challenges(&d).await.challenges[0].challenge_id.clone();
    env.drain().await;
    assert!(
        env.notified().is_empty(),
        "nothing to say before the deadline"
    );
    env.clock.advance_ms(121_000);
    assert!(env.challenges(&d).await.challenges.is_empty());
    env.drain().await;
    let n = env.notified();
    assert_eq!(n.len(), 1);
    assert_eq!(code_of(&n[0].payment_result), "ORDER_IS_CLOSED");
    let o = env.confirm(&d, &id, PASSWORD).await;
    assert_eq!(o.payment_status.as_deref(), Some("FAIL"));
    assert_eq!(env.balance("emma").await, 50_000);
    assert_eq!(
        code_of(env.inquire("P5").await.payment_result.as_ref().unwrap()),
        "ORDER_IS_CLOSED"
    );
    env.assert_consistent().await;
}

#[tokio::test]
async fn the_pay_expiry_time_caps_the_challenge_and_inquiry_closes_it() {
    let env = Env::new().await;
    env.user("fern", 50_000, 100, 100).await;
    let d = env.register("fern").await;
    let code = env.code(&d);
    let mut body = env.pay_body("P5b", 2_000, &code);
    body["paymentExpiryTime"] = json!(env.iso_in(20_000));
    let r: PayResponse = env.mpp(PAY_PATH, &body).await;
    assert_eq!(code_of(&r.result), "PAYMENT_IN_PROCESS");
    env.clock.advance_ms(20_000);
    // No background pass yet: the inquiry itself closes the challenge.
    let q = env.inquire("P5b").await;
    assert_eq!(
        code_of(q.payment_result.as_ref().unwrap()),
        "ORDER_IS_CLOSED"
    );
    env.drain().await;
    assert_eq!(env.notified().len(), 1);
    env.assert_consistent().await;
}

#[tokio::test]
async fn insufficient_balance_and_hard_limit_are_rejected_without_debit() {
    let env = Env::new().await;
    env.user("gus", 1_000, 5_000, 5_000).await;
    let d = env.register("gus").await;
    let code = env.code(&d);
    let r = env.pay("P6", 1_001, &code).await;
    assert_eq!(code_of(&r.result), "USER_BALANCE_NOT_ENOUGH");
    assert_eq!(r.result.result_status, "F");
    let code = env.code(&d);
    let r = env.pay("P6b", 100_001, &code).await;
    assert_eq!(code_of(&r.result), "USER_AMOUNT_EXCEED_LIMIT");
    assert_eq!(env.balance("gus").await, 1_000);
    env.assert_consistent().await;
}

#[tokio::test]
async fn frozen_user_is_rejected_and_unfrozen_user_pays() {
    let env = Env::new().await;
    env.user("hana", 10_000, 5_000, 5_000).await;
    let d = env.register("hana").await;
    let resp: Value = env
        .http
        .post(format!("{}/admin/v1/users/hana/freeze", env.url))
        .bearer_auth("op-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp["result"]["resultStatus"], "S");
    let code = env.code(&d);
    assert_eq!(
        code_of(&env.pay("P7", 100, &code).await.result),
        "USER_STATUS_ABNORMAL"
    );
    env.wallet.set_frozen("hana", false).await.unwrap();
    let code = env.code(&d);
    assert_eq!(code_of(&env.pay("P7b", 100, &code).await.result), "SUCCESS");
    assert_eq!(env.balance("hana").await, 9_900);
    env.assert_consistent().await;
}

#[tokio::test]
async fn replayed_code_is_expired_even_after_a_failed_payment() {
    let env = Env::new().await;
    env.user("ivan", 500, 5_000, 5_000).await;
    let d = env.register("ivan").await;
    let code = env.code(&d);
    assert_eq!(
        code_of(&env.pay("P8", 900, &code).await.result),
        "USER_BALANCE_NOT_ENOUGH"
    );
    assert_eq!(
        code_of(&env.pay("P8b", 100, &code).await.result),
        "EXPIRED_CODE"
    );
    let fresh = env.code(&d);
    assert_eq!(
        code_of(&env.pay("P8c", 100, &fresh).await.result),
        "SUCCESS"
    );
    assert_eq!(
        code_of(&env.pay("P8d", 100, &fresh).await.result),
        "EXPIRED_CODE"
    );
    // An old code shown minutes ago is expired; a made-up one is invalid; so is a foreign CII.
    let old = generate_code_at(&d.material, (env.now_s() - 300) / 30, 0);
    assert_eq!(
        code_of(&env.pay("P8e", 100, &old).await.result),
        "EXPIRED_CODE"
    );
    let forged = format!(
        "{}{}",
        &fresh[..17],
        if &fresh[17..] == "0000000" {
            "0000001"
        } else {
            "0000000"
        }
    );
    assert_eq!(
        code_of(&env.pay("P8f", 100, &forged).await.result),
        "INVALID_CODE"
    );
    assert_eq!(
        code_of(&env.pay("P8g", 100, "281009021234567812345678").await.result),
        "INVALID_CODE"
    );
    assert_eq!(env.balance("ivan").await, 400);
    env.assert_consistent().await;
}

#[tokio::test]
async fn every_display_is_a_new_code_and_unused_older_codes_still_pay() {
    let env = Env::new().await;
    env.user("nora", 5_000, 5_000, 5_000).await;
    let d = env.register("nora").await;
    // Two codes shown one after the other, within the same second: both pay.
    let first = env.code(&d);
    let second = env.code(&d);
    assert_ne!(first, second);
    assert_eq!(
        code_of(&env.pay("F1", 100, &second).await.result),
        "SUCCESS"
    );
    assert_eq!(code_of(&env.pay("F2", 100, &first).await.result), "SUCCESS");
    // An older code that was never used still pays while it is valid, after newer ones paid.
    let older = env.code(&d);
    let newer = env.code(&d);
    assert_eq!(code_of(&env.pay("F3", 100, &newer).await.result), "SUCCESS");
    env.clock.advance_ms(45_000);
    assert_eq!(code_of(&env.pay("F4", 100, &older).await.result), "SUCCESS");
    // A used code is expired, even for another payment id.
    assert_eq!(
        code_of(&env.pay("F5", 100, &newer).await.result),
        "EXPIRED_CODE"
    );
    assert_eq!(env.balance("nora").await, 5_000 - 4 * 100);
    env.assert_consistent().await;
}

/// A known slot's wrong values never stop its user paying: after a few the genuine code still
/// pays at once, and after many it still pays — with the password, so that a lucky guess could
/// not complete alone.
/// A store made by the first release (its `devices` table has the per-device last used step of
/// the old code construction) opens unchanged; a phone registered there keeps its slot and
/// secret and pays with the new codes, even in the step its last old code was used.
#[tokio::test]
async fn devices_of_a_store_from_the_first_release_keep_paying() {
    let dir = tempfile::tempdir().unwrap();
    {
        let c = paycode_db::rusqlite::Connection::open(dir.path().join("wallet.db")).unwrap();
        c.execute_batch(
            "CREATE TABLE devices (
                device_id TEXT PRIMARY KEY,
                user_name TEXT NOT NULL REFERENCES users(name),
                device_name TEXT,
                token_hash TEXT NOT NULL UNIQUE,
                slot TEXT NOT NULL UNIQUE,
                secret BLOB NOT NULL,
                last_used_step INTEGER,
                created_at_ms INTEGER NOT NULL,
                rotated_at_ms INTEGER NOT NULL
            );",
        )
        .unwrap();
    }
    // A store of the first release is a SQLite file: there was no other engine.
    let env = Env::in_sqlite_dir(dir).await;
    env.user("quinn", 5_000, 5_000, 5_000).await;
    let d = env.register("quinn").await;
    // As if the old construction had paid with this device in the current step.
    let step = i64::try_from(env.now_s() / 30).unwrap();
    let path = env.wallet.config().db_path.clone();
    let c = paycode_db::rusqlite::Connection::open(path).unwrap();
    assert_eq!(
        c.execute("UPDATE devices SET last_used_step = ?1", [step])
            .unwrap(),
        1
    );
    let code = env.code(&d);
    assert_eq!(
        code_of(&env.pay("OLD1", 100, &code).await.result),
        "SUCCESS"
    );
    assert_eq!(
        code_of(&env.pay("OLD2", 100, &code).await.result),
        "EXPIRED_CODE"
    );
    assert_eq!(env.balance("quinn").await, 4_900);
    env.assert_consistent().await;
}

#[tokio::test]
async fn wrong_codes_on_a_known_slot_never_lock_its_user_out() {
    let env = Env::new().await;
    env.user("jade", 5_000, 5_000, 5_000).await;
    let d = env.register("jade").await;
    let slot = d.material.slot.clone();
    let guess = |i: u32| format!("28100102{slot}0{:07}", 1_111_111 + i);
    for i in 0..5 {
        assert_eq!(
            code_of(&env.pay(&format!("W{i}"), 100, &guess(i)).await.result),
            "INVALID_CODE"
        );
    }
    let good = env.code(&d);
    assert_eq!(code_of(&env.pay("G5", 100, &good).await.result), "SUCCESS");
    for i in 5..12 {
        assert_eq!(
            code_of(&env.pay(&format!("W{i}"), 100, &guess(i)).await.result),
            "INVALID_CODE"
        );
    }
    let good = env.code(&d);
    let r = env.pay("G12", 100, &good).await;
    assert_eq!(code_of(&r.result), "PAYMENT_IN_PROCESS", "{r:?}");
    let list = env.challenges(&d).await;
    assert_eq!(list.challenges.len(), 1);
    assert!(
        list.challenges[0].reason.contains("wrong payment codes"),
        "{:?}",
        list.challenges[0]
    );
    let out = env
        .confirm(&d, &list.challenges[0].challenge_id, PASSWORD)
        .await;
    assert_eq!(out.result.result_status, "S", "{out:?}");
    assert_eq!(env.balance("jade").await, 5_000 - 200);
    // Once the window has passed, codes pay without the password again.
    env.clock.advance_ms(600_000);
    let good = env.code(&d);
    assert_eq!(code_of(&env.pay("G13", 100, &good).await.result), "SUCCESS");
    env.drain().await;
    env.assert_consistent().await;
}

/// 1,000 random codes from one merchant's terminal: that terminal is refused, and only it;
/// genuine codes from the other terminals and merchants pay at once, before and after a restart.
#[tokio::test]
async fn guessing_is_refused_at_its_source_only_and_survives_a_restart() {
    let mut env = Env::new().await;
    env.user("omar", 50_000, 50_000, 50_000).await;
    env.user("pia", 50_000, 50_000, 50_000).await;
    let omar = env.register("omar").await;
    let pia = env.register("pia").await;
    fn from(body: &mut Value, merchant: &str, terminal: &str) {
        body["order"]["merchant"]["referenceMerchantId"] = json!(merchant);
        body["order"]["env"] = json!({"storeTerminalId": terminal});
    }
    fn pay_from(env: &Env, prid: &str, code: &str, merchant: &str, terminal: &str) -> Value {
        let mut body = env.pay_body(prid, 100, code);
        from(&mut body, merchant, terminal);
        body
    }
    let mut rng = 0x1234_5678_u64;
    let mut answers = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..1_000 {
        rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let code = format!("28100102{:016}", rng % 10_000_000_000_000_000);
        let mut body = env.pay_body(&format!("X{i}"), 100, &code);
        from(&mut body, "M-evil", "T-1");
        let r: PayResponse = env.mpp(PAY_PATH, &body).await;
        *answers.entry(code_of(&r.result).to_string()).or_default() += 1;
    }
    // The terminal limit (60 in 10 minutes) ends the guessing; the rest is refused unchecked.
    assert_eq!(answers.get("INVALID_CODE"), Some(&60), "{answers:?}");
    assert_eq!(answers.get("RISK_REJECT"), Some(&940), "{answers:?}");
    // The guessing terminal is refused even a genuine code, with a message saying why.
    let r: PayResponse = env
        .mpp(
            PAY_PATH,
            &pay_from(&env, "Y0", &env.code(&omar), "M-evil", "T-1"),
        )
        .await;
    assert_eq!(code_of(&r.result), "RISK_REJECT");
    assert!(
        r.result
            .result_message
            .contains("terminal T-1 of merchant M-evil"),
        "{:?}",
        r.result
    );
    // The same merchant's other terminal, another merchant, and the same users: all pay.
    for (prid, d, merchant, terminal) in [
        ("Y1", &omar, "M-evil", "T-2"),
        ("Y2", &omar, "M-good", "T-1"),
        ("Y3", &pia, "M-good", "T-9"),
    ] {
        let r: PayResponse = env
            .mpp(
                PAY_PATH,
                &pay_from(&env, prid, &env.code(d), merchant, terminal),
            )
            .await;
        assert_eq!(code_of(&r.result), "SUCCESS", "{prid}: {r:?}");
    }
    // The limit is stored: after a restart the terminal is still refused, the others still pay.
    env.restart().await;
    let r: PayResponse = env
        .mpp(
            PAY_PATH,
            &pay_from(&env, "Y4", &env.code(&pia), "M-evil", "T-1"),
        )
        .await;
    assert_eq!(code_of(&r.result), "RISK_REJECT", "{r:?}");
    let r: PayResponse = env
        .mpp(
            PAY_PATH,
            &pay_from(&env, "Y5", &env.code(&pia), "M-good", "T-1"),
        )
        .await;
    assert_eq!(code_of(&r.result), "SUCCESS", "{r:?}");
    // When the window has closed, the terminal may try again.
    env.clock.advance_ms(600_000);
    let r: PayResponse = env
        .mpp(
            PAY_PATH,
            &pay_from(&env, "Y6", &env.code(&pia), "M-evil", "T-1"),
        )
        .await;
    assert_eq!(code_of(&r.result), "SUCCESS", "{r:?}");
    assert_eq!(env.balance("omar").await, 50_000 - 200);
    assert_eq!(env.balance("pia").await, 50_000 - 300);
    env.drain().await;
    env.assert_consistent().await;
}

#[tokio::test]
async fn rotation_retires_the_old_slot() {
    let env = Env::new().await;
    env.user("kai", 5_000, 5_000, 5_000).await;
    let d = env.register("kai").await;
    let m: DeviceMaterial = env
        .customer_post(&d, "/customer/v1/devices/rotate", json!({}))
        .await;
    assert_eq!(m.result.result_status, "S");
    let rotated = Device::new(&m);
    assert_ne!(rotated.material.slot, d.material.slot);
    let old = env.code(&d);
    assert_eq!(
        code_of(&env.pay("R1", 100, &old).await.result),
        "INVALID_CODE"
    );
    let new = env.code(&rotated);
    assert_eq!(code_of(&env.pay("R2", 100, &new).await.result), "SUCCESS");
    let stale: Value = env
        .http
        .get(format!("{}/customer/v1/balance", env.url))
        .bearer_auth(&d.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stale["result"]["resultCode"], "ACCESS_DENIED");
    env.assert_consistent().await;
}

#[tokio::test]
async fn cancel_of_a_pending_payment_wins_over_a_later_confirm() {
    let env = Env::new().await;
    env.user("lena", 50_000, 100, 100).await;
    let d = env.register("lena").await;
    let code = env.code(&d);
    env.pay("P9", 2_000, &code).await;
    let id = env.challenges(&d).await.challenges[0].challenge_id.clone();
    let c = env.cancel("P9").await;
    assert_eq!(c.result.result_status, "S");
    assert!(c.cancel_time.is_some());
    let again = env.cancel("P9").await;
    assert_eq!(again.cancel_time, c.cancel_time, "cancel is idempotent");
    let o = env.confirm(&d, &id, PASSWORD).await;
    assert_eq!(o.payment_status.as_deref(), Some("FAIL"));
    assert_eq!(code_of(&o.result), "ORDER_IS_CLOSED");
    assert_eq!(
        code_of(env.inquire("P9").await.payment_result.as_ref().unwrap()),
        "ORDER_IS_CLOSED"
    );
    env.drain().await;
    assert!(
        env.notified().is_empty(),
        "the acquirer asked for the cancel: no notification"
    );
    assert_eq!(env.balance("lena").await, 50_000);
    env.assert_consistent().await;
}

#[tokio::test]
async fn confirm_racing_cancel_ends_with_exactly_one_outcome() {
    let env = Env::new().await;
    env.user("mia", 1_000_000, 100, 100).await;
    let d = env.register("mia").await;
    let mut paid = 0;
    for i in 0..8 {
        let prid = format!("RACE{i}");
        let code = env.code(&d);
        assert_eq!(
            code_of(&env.pay(&prid, 1_000, &code).await.result),
            "PAYMENT_IN_PROCESS"
        );
        let id = env.challenges(&d).await.challenges[0].challenge_id.clone();
        let (o, c) = tokio::join!(env.confirm(&d, &id, PASSWORD), env.cancel(&prid));
        assert_eq!(c.result.result_status, "S");
        let state = env.inquire(&prid).await.payment_result.unwrap();
        match o.payment_status.as_deref() {
            // Confirm first: paid, then the cancel reversed it.
            Some("SUCCESS") => {
                assert_eq!(state.result_status, "S");
                paid += 1;
            }
            // Cancel first: the confirm found it closed.
            Some("FAIL") => assert_eq!(code_of(&state), "ORDER_IS_CLOSED"),
            other => panic!("unexpected confirm outcome {other:?}"),
        }
        // Either way the user ends with their money back.
        assert_eq!(env.balance("mia").await, 1_000_000);
    }
    env.drain().await;
    assert_eq!(
        env.notified().len(),
        paid,
        "one notification per confirmed payment"
    );
    env.assert_consistent().await;
}

#[tokio::test]
async fn reversal_of_a_paid_payment_credits_back_once() {
    let env = Env::new().await;
    env.user("nora", 10_000, 5_000, 5_000).await;
    let d = env.register("nora").await;
    let code = env.code(&d);
    env.pay("P10", 3_000, &code).await;
    assert_eq!(env.balance("nora").await, 7_000);
    assert_eq!(env.cancel("P10").await.result.result_status, "S");
    assert_eq!(env.balance("nora").await, 10_000);
    assert_eq!(env.cancel("P10").await.result.result_status, "S");
    assert_eq!(
        env.balance("nora").await,
        10_000,
        "a repeated cancel credits nothing more"
    );
    let r = env.refund("RF0", "P10", 100).await;
    assert_eq!(code_of(&r.result), "ORDER_STATUS_INVALID");
    let h: History = env.customer_get(&d, "/customer/v1/history").await;
    assert!(
        h.items
            .iter()
            .any(|i| i.kind == "REVERSAL" && i.amount.value == "3000")
    );
    env.assert_consistent().await;
}

#[tokio::test]
async fn refunds_are_partial_idempotent_and_bounded_by_the_paid_amount() {
    let env = Env::new().await;
    env.user("omar", 10_000, 5_000, 5_000).await;
    let d = env.register("omar").await;
    let code = env.code(&d);
    env.pay("P11", 3_000, &code).await;
    let r1 = env.refund("RF1", "P11", 1_000).await;
    assert_eq!(r1.result.result_status, "S");
    assert_eq!(r1.refund_amount.as_ref().unwrap().value, "1000");
    let again = env.refund("RF1", "P11", 1_000).await;
    assert_eq!(
        again.refund_id, r1.refund_id,
        "same request id, same refund"
    );
    assert_eq!(
        code_of(&env.refund("RF1", "P11", 999).await.result),
        "REPEAT_REQ_INCONSISTENT"
    );
    assert_eq!(
        code_of(&env.refund("RF2", "P11", 2_001).await.result),
        "REFUND_AMOUNT_EXCEED"
    );
    assert_eq!(
        env.refund("RF3", "P11", 2_000).await.result.result_status,
        "S"
    );
    assert_eq!(
        code_of(&env.refund("RF4", "P11", 1).await.result),
        "REFUND_AMOUNT_EXCEED"
    );
    assert_eq!(
        code_of(&env.refund("RF5", "NOPE", 1).await.result),
        "ORDER_NOT_EXIST"
    );
    assert_eq!(env.balance("omar").await, 10_000);
    // A refunded payment can no longer be reversed.
    assert_eq!(code_of(&env.cancel("P11").await.result), "PROCESS_FAIL");
    assert_eq!(env.balance("omar").await, 10_000);
    env.assert_consistent().await;
}

#[tokio::test]
async fn duplicate_pay_request_debits_once_and_a_different_repeat_is_rejected() {
    let env = Env::new().await;
    env.user("pia", 10_000, 5_000, 5_000).await;
    let d = env.register("pia").await;
    let code = env.code(&d);
    let (a, b) = tokio::join!(env.pay("P12", 1_500, &code), env.pay("P12", 1_500, &code));
    assert_eq!(code_of(&a.result), "SUCCESS");
    assert_eq!(code_of(&b.result), "SUCCESS");
    assert_eq!(a.payment_id, b.payment_id);
    let c = env.pay("P12", 1_500, &code).await;
    assert_eq!(c.payment_id, a.payment_id);
    assert_eq!(env.balance("pia").await, 8_500);
    assert_eq!(
        code_of(&env.pay("P12", 1_600, &code).await.result),
        "REPEAT_REQ_INCONSISTENT"
    );
    env.assert_consistent().await;
}

#[tokio::test]
async fn cancel_of_an_unknown_payment_closes_a_late_pay() {
    let env = Env::new().await;
    env.user("quin", 10_000, 5_000, 5_000).await;
    let d = env.register("quin").await;
    assert_eq!(code_of(&env.inquire("P13").await.result), "ORDER_NOT_EXIST");
    assert_eq!(env.cancel("P13").await.result.result_status, "S");
    let q = env.inquire("P13").await;
    assert_eq!(q.result.result_status, "S");
    assert_eq!(
        code_of(q.payment_result.as_ref().unwrap()),
        "ORDER_IS_CLOSED"
    );
    assert!(q.pay_to_amount.is_none());
    let code = env.code(&d);
    assert_eq!(
        code_of(&env.pay("P13", 100, &code).await.result),
        "ORDER_IS_CLOSED"
    );
    // The late pay did not consume the code.
    assert_eq!(
        code_of(&env.pay("P13b", 100, &code).await.result),
        "SUCCESS"
    );
    assert_eq!(env.balance("quin").await, 9_900);
    env.assert_consistent().await;
}

#[tokio::test]
async fn notify_is_retried_until_the_acquirer_acknowledges() {
    let env = Env::new().await;
    env.receiver.fail_first.store(3, Ordering::SeqCst);
    env.user("rosa", 50_000, 100, 100).await;
    let d = env.register("rosa").await;
    let code = env.code(&d);
    env.pay("P14", 2_000, &code).await;
    let id = env.challenges(&d).await.challenges[0].challenge_id.clone();
    env.confirm(&d, &id, PASSWORD).await;
    // Attempt 1 (due at once) fails; the next ones wait for the schedule (1 s, then 5 s).
    assert_eq!(env.wallet.run_background_once().await.unwrap(), 1);
    assert_eq!(
        env.wallet.run_background_once().await.unwrap(),
        0,
        "not due yet"
    );
    env.clock.advance_ms(1_000);
    env.drain().await;
    for _ in 0..3 {
        env.clock.advance_ms(5_000);
        env.drain().await;
    }
    assert_eq!(env.receiver.n_calls.load(Ordering::SeqCst), 4);
    let n = env.notified();
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].payment_request_id, "P14");
    assert_eq!(n[0].payment_result.result_status, "S");
    assert_eq!(env.wallet.pending_notifications().await.unwrap(), 0);
    env.clock.advance_ms(60_000);
    env.drain().await;
    assert_eq!(
        env.receiver.n_calls.load(Ordering::SeqCst),
        4,
        "nothing after the acknowledgement"
    );
    env.assert_consistent().await;
}

#[tokio::test]
async fn requests_that_are_not_the_acquirers_are_refused_signed() {
    let env = Env::new().await;
    env.user("sam", 10_000, 5_000, 5_000).await;
    let d = env.register("sam").await;
    let code = env.code(&d);
    let body = env.pay_body("P15", 100, &code);
    // Signed by someone else's key under the acquirer's client id.
    let other = SignedClient::new(
        ACQ,
        wallet_signer(),
        Some(wallet_signer().public_key()),
        Duration::from_secs(5),
    )
    .with_clock(now_fn(&env.clock));
    let r: PayResponse = other
        .post(&format!("{}{PAY_PATH}", env.url), &body)
        .await
        .unwrap();
    assert_eq!(code_of(&r.result), "SIGNATURE_INVALID");
    let stranger = SignedClient::new(
        "stranger",
        acquirer_signer(),
        Some(wallet_signer().public_key()),
        Duration::from_secs(5),
    )
    .with_clock(now_fn(&env.clock));
    let r: PayResponse = stranger
        .post(&format!("{}{PAY_PATH}", env.url), &body)
        .await
        .unwrap();
    assert_eq!(code_of(&r.result), "CLIENT_INVALID");
    let r: Value = env.mpp("/aps/api/v1/payments/nope", &json!({})).await;
    assert_eq!(r["result"]["resultCode"], "INVALID_API");
    let r: PayResponse = env.mpp(PAY_PATH, &json!({"paymentRequestId": "P15"})).await;
    assert_eq!(code_of(&r.result), "PARAM_ILLEGAL");
    let mut wrong_currency = body.clone();
    wrong_currency["payToAmount"]["currency"] = json!("PHP");
    let r: PayResponse = env.mpp(PAY_PATH, &wrong_currency).await;
    assert_eq!(code_of(&r.result), "CURRENCY_NOT_SUPPORT");
    let mut late = env.pay_body("P15b", 100, &code);
    late["paymentExpiryTime"] = json!(env.iso_in(-1_000));
    let r: PayResponse = env.mpp(PAY_PATH, &late).await;
    assert_eq!(code_of(&r.result), "ORDER_IS_CLOSED");
    // None of that touched the code or the balance.
    assert_eq!(
        code_of(&env.pay("P15c", 100, &code).await.result),
        "SUCCESS"
    );
    assert_eq!(env.balance("sam").await, 9_900);
    env.assert_consistent().await;
}

#[tokio::test]
async fn registration_needs_the_password_and_counts_wrong_ones() {
    let env = Env::new().await;
    env.user("tom", 10_000, 5_000, 5_000).await;
    let bad: DeviceMaterial = env
        .http
        .post(format!("{}/customer/v1/devices/register", env.url))
        .json(&json!({"userName": "tom", "password": "nope"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(code_of(&bad.result), "USER_PAYMENT_VERIFICATION_FAILED");
    assert!(bad.code_secret.is_none());
    let unknown: DeviceMaterial = env
        .http
        .post(format!("{}/customer/v1/devices/register", env.url))
        .json(&json!({"userName": "nobody", "password": "x"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(code_of(&unknown.result), "USER_NOT_EXIST");
    let d = env.register("tom").await;
    assert_eq!(d.material.cii, "281001");
    // Top-up by the operator API, visible in the balance and history.
    let resp: Value = env
        .http
        .post(format!("{}/admin/v1/users/tom/topup", env.url))
        .json(&json!({"amountMinor": 1000}))
        .bearer_auth("op-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp["balance"]["value"], "11000");
    let h: History = env.customer_get(&d, "/customer/v1/history").await;
    assert_eq!(h.items[0].kind, "TOPUP");
    env.assert_consistent().await;
}

/// One step of the random-sequence test.
#[derive(Debug, Clone)]
enum Op {
    /// A payment; over 1,000 it needs the password.
    Pay(i64),
    Confirm(usize),
    WrongPassword(usize),
    Decline(usize),
    Cancel(usize),
    Refund(usize, i64),
    TopUp(i64),
    /// Let time pass (seconds) and drain the background work.
    Wait(i64),
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        3 => (1i64..3_000).prop_map(Op::Pay),
        2 => any::<usize>().prop_map(Op::Confirm),
        1 => any::<usize>().prop_map(Op::WrongPassword),
        1 => any::<usize>().prop_map(Op::Decline),
        1 => any::<usize>().prop_map(Op::Cancel),
        1 => (any::<usize>(), 1i64..2_000).prop_map(|(i, a)| Op::Refund(i, a)),
        1 => (1i64..2_000).prop_map(Op::TopUp),
        1 => (1i64..200).prop_map(Op::Wait),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ModelState {
    Pending { deadline_ms: i64 },
    Paid,
    Reversed,
    Failed,
}

#[derive(Debug)]
struct ModelPayment {
    prid: String,
    challenge_id: Option<String>,
    amount: i64,
    refunded: i64,
    state: ModelState,
}

/// Runs `ops` against the wallet over HTTP and against a naive model of one user's money,
/// comparing the balance after every step; then re-checks the wallet's own invariants.
async fn run_model(ops: Vec<Op>) {
    let env = Env::new().await;
    env.wallet
        .create_user(NewUser {
            name: "zed".into(),
            password: PASSWORD.into(),
            balance_minor: 5_000,
            status_frozen: false,
            password_free_per_payment_minor: 1_000,
            password_free_daily_minor: i64::MAX / 4,
            hard_limit_per_payment_minor: 100_000,
            hard_limit_daily_minor: i64::MAX / 4,
        })
        .await
        .unwrap();
    let d = env.register("zed").await;
    let now = || paycode_wallet::Clock::now_ms(&*env.clock);
    let mut balance = 5_000i64;
    let mut payments: Vec<ModelPayment> = Vec::new();
    let mut n_refunds = 0;
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Pay(amount) => {
                let prid = format!("M{step}");
                let code = env.code(&d);
                let r = env.pay(&prid, amount, &code).await;
                let expect = if amount > balance {
                    "USER_BALANCE_NOT_ENOUGH"
                } else if amount > 1_000 {
                    "PAYMENT_IN_PROCESS"
                } else {
                    "SUCCESS"
                };
                assert_eq!(
                    code_of(&r.result),
                    expect,
                    "step {step}: pay {amount} with {balance}"
                );
                let state = match expect {
                    "SUCCESS" => {
                        balance -= amount;
                        ModelState::Paid
                    }
                    "PAYMENT_IN_PROCESS" => ModelState::Pending {
                        deadline_ms: now() + 120_000,
                    },
                    _ => ModelState::Failed,
                };
                payments.push(ModelPayment {
                    prid,
                    challenge_id: r.payment_id.clone(),
                    amount,
                    refunded: 0,
                    state,
                });
            }
            Op::Confirm(i) | Op::WrongPassword(i) | Op::Decline(i) if !payments.is_empty() => {
                let n = payments.len();
                let p = &mut payments[i % n];
                let id = p.challenge_id.clone().unwrap();
                let expired =
                    matches!(p.state, ModelState::Pending { deadline_ms } if deadline_ms <= now());
                let pending = matches!(p.state, ModelState::Pending { .. }) && !expired;
                if expired {
                    p.state = ModelState::Failed;
                }
                match op {
                    Op::Confirm(_) => {
                        let o = env.confirm(&d, &id, PASSWORD).await;
                        if pending {
                            if p.amount <= balance {
                                assert_eq!(
                                    o.payment_status.as_deref(),
                                    Some("SUCCESS"),
                                    "step {step}"
                                );
                                balance -= p.amount;
                                p.state = ModelState::Paid;
                            } else {
                                assert_eq!(
                                    code_of(&o.result),
                                    "USER_BALANCE_NOT_ENOUGH",
                                    "step {step}"
                                );
                                p.state = ModelState::Failed;
                            }
                        } else {
                            assert_ne!(
                                o.payment_status.as_deref(),
                                Some("PROCESSING"),
                                "step {step}"
                            );
                        }
                    }
                    Op::WrongPassword(_) => {
                        // Stay below the lock: the lock itself has its own test.
                        let o = env.confirm(&d, &id, "wrong").await;
                        if pending {
                            assert_eq!(
                                o.payment_status.as_deref(),
                                Some("PROCESSING"),
                                "step {step}"
                            );
                            env.wallet.unlock_password("zed").await.unwrap();
                        }
                    }
                    _ => {
                        let o: ChallengeOutcome = env
                            .customer_post(
                                &d,
                                &format!("/customer/v1/challenges/{id}/decline"),
                                json!({}),
                            )
                            .await;
                        assert_ne!(
                            o.payment_status.as_deref(),
                            Some("PROCESSING"),
                            "step {step}"
                        );
                        if pending {
                            p.state = ModelState::Failed;
                        }
                    }
                }
            }
            Op::Cancel(i) if !payments.is_empty() => {
                let n = payments.len();
                let p = &mut payments[i % n];
                let c = env.cancel(&p.prid).await;
                match p.state {
                    ModelState::Paid if p.refunded > 0 => {
                        assert_eq!(code_of(&c.result), "PROCESS_FAIL")
                    }
                    ModelState::Paid => {
                        assert_eq!(c.result.result_status, "S");
                        balance += p.amount;
                        p.state = ModelState::Reversed;
                    }
                    _ => {
                        assert_eq!(c.result.result_status, "S");
                        if matches!(p.state, ModelState::Pending { .. }) {
                            p.state = ModelState::Failed;
                        }
                    }
                }
            }
            Op::Refund(i, amount) if !payments.is_empty() => {
                let n = payments.len();
                let p = &mut payments[i % n];
                n_refunds += 1;
                let r = env.refund(&format!("MR{n_refunds}"), &p.prid, amount).await;
                match p.state {
                    ModelState::Paid if p.refunded + amount <= p.amount => {
                        assert_eq!(r.result.result_status, "S", "step {step}");
                        p.refunded += amount;
                        balance += amount;
                    }
                    ModelState::Paid => assert_eq!(code_of(&r.result), "REFUND_AMOUNT_EXCEED"),
                    _ => assert_eq!(code_of(&r.result), "ORDER_STATUS_INVALID"),
                }
            }
            Op::TopUp(amount) => {
                env.wallet.top_up("zed", amount).await.unwrap();
                balance += amount;
            }
            Op::Wait(s) => {
                env.clock.advance_ms(s * 1_000);
                env.drain().await;
                for p in payments.iter_mut() {
                    if matches!(p.state, ModelState::Pending { deadline_ms } if deadline_ms <= now())
                    {
                        p.state = ModelState::Failed;
                    }
                }
            }
            _ => {}
        }
        assert_eq!(
            env.balance("zed").await,
            balance,
            "step {step}: balance differs from the model"
        );
    }
    env.assert_consistent().await;
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 12, ..Default::default() })]
    #[test]
    fn balances_follow_a_naive_model_over_random_operations(ops in proptest::collection::vec(op(), 1..30)) {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(run_model(ops));
    }
}

#[tokio::test]
async fn the_spawned_background_loop_delivers_on_its_own() {
    let env = Env::new().await;
    env.user("uma", 50_000, 100, 100).await;
    let d = env.register("uma").await;
    let handle = env.wallet.spawn_background();
    let code = env.code(&d);
    env.pay("P16", 2_000, &code).await;
    let id = env.challenges(&d).await.challenges[0].challenge_id.clone();
    env.confirm(&d, &id, PASSWORD).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while env.notified().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no notification from the background loop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    handle.abort();
    assert_eq!(env.notified()[0].payment_request_id, "P16");
    env.assert_consistent().await;
}

#[tokio::test]
async fn the_operator_api_needs_its_token() {
    let env = Env::new().await;
    env.user("ivy", 10_000, 5_000, 5_000).await;
    for auth in [None, Some("wrong")] {
        let mut req = env
            .http
            .post(format!("{}/admin/v1/users/ivy/devices", env.url))
            .json(&serde_json::json!({"count": 1}));
        if let Some(t) = auth {
            req = req.bearer_auth(t);
        }
        assert_eq!(req.send().await.unwrap().status(), 401);
    }
    let ok = env
        .http
        .post(format!("{}/admin/v1/users/ivy/devices", env.url))
        .bearer_auth("op-token")
        .json(&serde_json::json!({"count": 2}))
        .send()
        .await
        .unwrap();
    assert!(ok.status().is_success());
    let body: Value = ok.json().await.unwrap();
    assert_eq!(body["devices"].as_array().unwrap().len(), 2);
    // Health stays open.
    let health = env
        .http
        .get(format!("{}/healthz", env.url))
        .send()
        .await
        .unwrap();
    assert!(health.status().is_success());
}

// ------------------------------------------------------------------ Request-Time freshness

/// The wallet's default freshness window, in milliseconds.
const WINDOW_MS: i64 = 300_000;

/// A signed MPP request as bytes on the wire, to send as is any number of times. `time`
/// `None` sends no `Request-Time` (signed over an empty time).
struct RawMpp {
    path: String,
    time: Option<String>,
    signature: String,
    body: Vec<u8>,
}

fn raw_mpp(path: &str, time: Option<String>, body: &Value) -> RawMpp {
    let body = serde_json::to_vec(body).unwrap();
    let signature = paycode_sign::sign(
        acquirer_signer().private_key(),
        1,
        path,
        ACQ,
        time.as_deref().unwrap_or(""),
        &body,
    )
    .unwrap();
    RawMpp {
        path: path.to_string(),
        time,
        signature,
        body,
    }
}

impl Env {
    /// Sends the exact bytes; the answer must be HTTP 200 and signed by the wallet.
    async fn send(&self, raw: &RawMpp) -> Value {
        let mut req = self
            .http
            .post(format!("{}{}", self.url, raw.path))
            .header("Client-Id", ACQ)
            .header("Signature", &raw.signature)
            .header("Content-Type", "application/json; charset=UTF-8")
            .body(raw.body.clone());
        if let Some(t) = &raw.time {
            req = req.header("Request-Time", t);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.unwrap();
        paycode_http::verify_answer(&wallet_signer().public_key(), &headers, &raw.path, &bytes)
            .expect("every answer is signed");
        serde_json::from_slice(&bytes).unwrap()
    }

    fn now_ms(&self) -> i64 {
        paycode_wallet::Clock::now_ms(&*self.clock)
    }
}

fn iso_at(ms: i64, offset_s: i32, secs_only: bool) -> String {
    let zone = chrono::FixedOffset::east_opt(offset_s).unwrap();
    let format = if secs_only {
        chrono::SecondsFormat::Secs
    } else {
        chrono::SecondsFormat::Millis
    };
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .with_timezone(&zone)
        .to_rfc3339_opts(format, false)
}

fn assert_time_refused(v: &Value, what: &str) {
    assert_eq!(v["result"]["resultCode"], "PARAM_ILLEGAL", "{what}: {v}");
    assert_eq!(v["result"]["resultStatus"], "F", "{what}: {v}");
    let m = v["result"]["resultMessage"].as_str().unwrap_or("");
    assert!(
        m.contains("Request-Time") && m.contains("±300 s"),
        "{what}: {m}"
    );
    assert!(v.get("paymentId").is_none(), "{what}: {v}");
}

#[tokio::test]
async fn an_mpp_pay_with_a_bad_request_time_is_refused_with_nothing_written() {
    let env = Env::new().await;
    env.user("tess", 10_000, 5_000, 20_000).await;
    let d = env.register("tess").await;
    let code = env.code(&d);
    let body = env.pay_body("P-RT", 700, &code);
    let now = env.now_ms();
    // The wallet's clock is manual, so the edges are exact: one millisecond beyond them.
    let bad: Vec<(&str, Option<String>)> = vec![
        ("stale epoch ms", Some((now - WINDOW_MS - 1).to_string())),
        ("future epoch ms", Some((now + WINDOW_MS + 1).to_string())),
        (
            "stale ISO-8601 Z",
            Some(iso_at(now - WINDOW_MS - 1, 0, false)),
        ),
        (
            "future ISO-8601 +08:00",
            Some(iso_at(now + WINDOW_MS + 1, 8 * 3600, false)),
        ),
        (
            "stale ISO-8601 whole seconds",
            Some(iso_at(now - WINDOW_MS - 1_000, 0, true)),
        ),
        ("year 2001", Some("1000000000000".into())),
        ("unreadable", Some("not-a-time".into())),
        ("missing", None),
    ];
    for (what, time) in bad {
        let v = env.send(&raw_mpp(PAY_PATH, time, &body)).await;
        assert_time_refused(&v, what);
        let q = env.inquire("P-RT").await;
        assert_eq!(code_of(&q.result), "ORDER_NOT_EXIST", "{what}: {q:?}");
    }
    assert_eq!(env.balance("tess").await, 10_000, "nothing debited");
    let h: History = env.customer_get(&d, "/customer/v1/history").await;
    assert!(
        h.items.iter().all(|i| i.kind == "OPENING"),
        "no wallet payment, only the opening balance: {:?}",
        h.items
    );

    // Exactly at the stale edge (the Python SDK's form, whole seconds): accepted, and the code
    // was not used up by the refused attempts.
    let edge = raw_mpp(PAY_PATH, Some(iso_at(now - WINDOW_MS, 0, true)), &body);
    let v = env.send(&edge).await;
    assert_eq!(v["result"]["resultCode"], "SUCCESS", "{v}");
    assert_eq!(env.balance("tess").await, 9_300);
    // Exactly at the future edge, epoch ms: accepted.
    let q = raw_mpp(
        INQUIRY_PATH,
        Some((now + WINDOW_MS).to_string()),
        &json!({"paymentRequestId": "P-RT"}),
    );
    let v = env.send(&q).await;
    assert_eq!(v["paymentResult"]["resultStatus"], "S", "{v}");
    env.assert_consistent().await;
}

#[tokio::test]
async fn every_mpp_operation_checks_request_time_and_a_late_replay_changes_nothing() {
    let env = Env::new().await;
    env.user("walt", 10_000, 5_000, 20_000).await;
    let d = env.register("walt").await;
    let code = env.code(&d);
    let pay = raw_mpp(
        PAY_PATH,
        Some(env.now_ms().to_string()),
        &env.pay_body("P-RP", 1_000, &code),
    );
    // An exact replay inside the window: the first attempt's answer, one debit.
    let first = env.send(&pay).await;
    assert_eq!(first["result"]["resultCode"], "SUCCESS", "{first}");
    let again = env.send(&pay).await;
    assert_eq!(again["paymentId"], first["paymentId"]);
    assert_eq!(env.balance("walt").await, 9_000, "debited once");

    let refund = json!({"refundRequestId": "R-RP", "paymentRequestId": "P-RP",
                        "refundAmount": {"currency": "CNY", "value": "1000"}});
    let captured_refund = raw_mpp(REFUND_PATH, Some(iso_at(env.now_ms(), 0, false)), &refund);
    let captured_cancel = raw_mpp(
        CANCEL_PATH,
        Some(env.now_ms().to_string()),
        &json!({"paymentRequestId": "P-RP"}),
    );
    env.clock.advance_ms(WINDOW_MS + 1);
    for (what, raw) in [
        ("pay", &pay),
        ("refund", &captured_refund),
        ("cancel", &captured_cancel),
    ] {
        assert_time_refused(&env.send(raw).await, what);
    }
    let stale = Some((env.now_ms() - WINDOW_MS - 1).to_string());
    for (path, body) in [
        (INQUIRY_PATH, json!({"paymentRequestId": "P-RP"})),
        (REFUND_PATH, refund.clone()),
        (CANCEL_PATH, json!({"paymentRequestId": "P-RP"})),
    ] {
        assert_time_refused(&env.send(&raw_mpp(path, stale.clone(), &body)).await, path);
    }
    assert_eq!(env.balance("walt").await, 9_000, "no refund, no reversal");
    let q = env.inquire("P-RP").await;
    assert_eq!(code_of(q.payment_result.as_ref().unwrap()), "SUCCESS");
    // Fresh, the same refund goes through: nothing was recorded for the refused ones.
    let r = env.refund("R-RP", "P-RP", 1_000).await;
    assert_eq!(code_of(&r.result), "SUCCESS", "{r:?}");
    assert_eq!(env.balance("walt").await, 10_000);
    env.assert_consistent().await;
}

/// Posts a signed MPP request with an extra padding header of `pad_bytes` bytes; returns the
/// HTTP status and the answer, whose signature must verify.
async fn mpp_padded(env: &Env, path: &str, body: &[u8], pad_bytes: usize) -> (u16, Value) {
    let time = env.iso_in(0);
    let signature = acquirer_signer()
        .sign(
            path.to_string(),
            ACQ.to_string(),
            time.clone(),
            body.to_vec().into(),
        )
        .await
        .unwrap();
    let resp = env
        .http
        .post(format!("{}{path}", env.url))
        .header("Content-Type", "application/json; charset=UTF-8")
        .header("Client-Id", ACQ)
        .header("Request-Time", &time)
        .header("Signature", signature)
        .header("X-Padding", "p".repeat(pad_bytes))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap();
    paycode_http::verify_answer(&wallet_signer().public_key(), &headers, path, &bytes)
        .expect("the answer is signed");
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn an_mpp_request_with_oversized_headers_or_body_gets_a_signed_param_illegal_and_pays_nothing()
 {
    let env = Env::new().await;
    env.user("alice", 10_000, 5_000, 20_000).await;
    let d = env.register("alice").await;
    let code = env.code(&d);
    let body = serde_json::to_vec(&env.pay_body("P-BIG-HEAD", 1_250, &code)).unwrap();
    let limit = ServerLimits::default().header_max_bytes;

    let (status, v) = mpp_padded(&env, PAY_PATH, &body, limit + 1).await;
    assert_eq!(status, 200);
    assert_eq!(v["result"]["resultCode"], "PARAM_ILLEGAL", "{v}");
    assert_eq!(v["result"]["resultStatus"], "F", "{v}");
    let message = v["result"]["resultMessage"].as_str().unwrap();
    assert!(
        message.starts_with("headers: ") && message.contains(&format!("at most {limit} bytes")),
        "{message}"
    );

    // A body over the wallet's limit is answered the same way, naming the body.
    let huge = vec![b' '; 200 * 1024];
    let (status, v) = mpp_padded(&env, PAY_PATH, &huge, 0).await;
    assert_eq!(status, 200);
    assert_eq!(v["result"]["resultCode"], "PARAM_ILLEGAL", "{v}");
    assert!(
        v["result"]["resultMessage"]
            .as_str()
            .unwrap()
            .starts_with("body: "),
        "{v}"
    );

    // Nothing was paid: the wallet never saw the payment and the balance is whole.
    let r = env.inquire("P-BIG-HEAD").await;
    assert_eq!(code_of(&r.result), "ORDER_NOT_EXIST");
    assert_eq!(env.balance("alice").await, 10_000);

    // The same request with ordinary headers is paid.
    let (status, v) = mpp_padded(&env, PAY_PATH, &body, 16).await;
    assert_eq!(status, 200);
    assert_eq!(v["result"]["resultCode"], "SUCCESS", "{v}");
    assert_eq!(env.balance("alice").await, 10_000 - 1_250);
    env.assert_consistent().await;
}
