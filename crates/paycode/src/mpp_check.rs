//! `paycode mpp-check`: the conformance kit for wallets. It plays the acquirer against any
//! wallet endpoint that speaks the MPP protocol (`paycode_proto::mpp`, SPEC §5) and runs the
//! protocol's scenarios, printing PASS or FAIL per scenario with the evidence, exit 1 on any
//! failure. An acquirer runs it before enabling a new wallet's route; a wallet before going live.
//!
//! The wallet documents how to make its test user produce each outcome, as two commands:
//! `--code-command` prints a fresh payment code of the test user (one per run), and
//! `--confirm-command` confirms the user's pending checkout (the password step). Every outcome
//! is then reached through the protocol itself: a small amount pays at once; the same amount
//! with `paymentFactor.userVerificationRequired` waits for the password (`U`), then is
//! confirmed, cancelled, or both at once; an amount above any balance fails; a code of the wallet's issuer
//! that was never shown fails. For the reference wallet:
//!
//! ```sh
//! paycode mpp-check --url http://127.0.0.1:8085 --wallet-public-key sgpay.pub \
//!   --acquirer-key keys/acquirer.key --currency SGD \
//!   --code-command 'paycode wallet code --user alice --digits' \
//!   --confirm-command 'echo 123456 | paycode wallet confirm --user alice --password-stdin --wait-s 5'
//! ```

use anyhow::{Context, bail};
use axum::body::Bytes;
use axum::http::HeaderMap;
use paycode_http::{CallError, SignedClient, Signer};
use paycode_proto::mpp;
use paycode_sign::{PrivateKey, PublicKey, SignatureHeader};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct CheckArgs {
    /// The wallet's base URL (its MPP paths are under /aps/api/v1/).
    #[arg(long)]
    url: String,
    /// The wallet's public key (PEM or bare base64 SPKI): every answer and notification must
    /// be signed with it.
    #[arg(long, value_name = "FILE")]
    wallet_public_key: PathBuf,
    /// The private key the wallet knows as the acquirer's (PEM or bare base64 PKCS#8).
    #[arg(long, value_name = "FILE")]
    acquirer_key: PathBuf,
    /// The client id the wallet knows the acquirer by.
    #[arg(long, default_value = crate::config_schema::ACQUIRER_CLIENT_ID)]
    client_id: String,
    /// The wallet's currency (pay-to amounts are in it).
    #[arg(long)]
    currency: String,
    /// A small amount the test user pays without a password, in minor units.
    #[arg(long, default_value_t = 100)]
    amount_minor: i64,
    /// Prints one fresh payment code of the test user on stdout.
    #[arg(long, value_name = "SHELL COMMAND")]
    code_command: String,
    /// Confirms the test user's pending checkout.
    #[arg(long, value_name = "SHELL COMMAND")]
    confirm_command: String,
    /// Longest acceptable answer time of a call, and the wait for a notification, in ms.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Where the kit listens for the wallet's notifyPayment (it must reach this address).
    #[arg(long, default_value = "127.0.0.1:0")]
    notify_listen: String,
}

/// A scenario's verdict and what was seen.
struct Verdict {
    name: &'static str,
    failure: Option<String>,
    evidence: Vec<String>,
}

/// What the notification listener received: (paymentRequestId, resultStatus, resultCode).
type Notices = Arc<Mutex<Vec<(String, String, String)>>>;

struct Kit {
    args: CheckArgs,
    client: SignedClient,
    /// Signs with a key the wallet does not know.
    stranger: SignedClient,
    /// Stamps an hour-old Request-Time.
    stale: SignedClient,
    notify_url: String,
    notices: Notices,
    run: String,
    seq: std::sync::atomic::AtomicU32,
}

fn read_key_file(path: &PathBuf, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {what} {}", path.display()))
}

/// A scenario step failed: the reason, with the evidence so far.
type Step<T> = Result<T, String>;

impl Kit {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.args.url.trim_end_matches('/'))
    }

    fn next_id(&self, what: &str) -> String {
        let n = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("mppcheck-{}-{what}-{n}", self.run)
    }

    /// A signed call; the answer must come in time, signed by the wallet.
    async fn call(
        &self,
        client: &SignedClient,
        path: &str,
        body: &Value,
        ev: &mut Vec<String>,
    ) -> Step<Value> {
        let started = Instant::now();
        let answer: Result<Value, CallError> = client.post(&self.url(path), body).await;
        let ms = started.elapsed().as_millis();
        let op = path.rsplit('/').next().unwrap_or(path);
        match answer {
            Ok(v) => {
                let payment = match v["paymentResult"]["resultStatus"].as_str() {
                    Some(status) => format!(
                        ", payment {status} {}",
                        v["paymentResult"]["resultCode"].as_str().unwrap_or("?")
                    ),
                    None => String::new(),
                };
                ev.push(format!(
                    "{op}: {} {}{payment} in {ms} ms",
                    v["result"]["resultStatus"].as_str().unwrap_or("?"),
                    v["result"]["resultCode"].as_str().unwrap_or("?")
                ));
                if ms > u128::from(self.args.timeout_ms) {
                    return Err(format!(
                        "{op} took {ms} ms, over {} ms",
                        self.args.timeout_ms
                    ));
                }
                Ok(v)
            }
            Err(e) => Err(format!("{op}: {e}")),
        }
    }

    async fn code(&self, ev: &mut Vec<String>) -> Step<String> {
        let out = shell(&self.args.code_command).await?;
        let code = out.trim().to_string();
        if code.len() != 24 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("--code-command printed {code:?}, not 24 digits"));
        }
        ev.push(format!("code {}", paycode_core::code::mask(&code)));
        Ok(code)
    }

    fn pay_body(&self, id: &str, code: &str, amount_minor: i64, verify: bool) -> Value {
        let now = chrono::Utc::now();
        let amount = json!({"currency": self.args.currency, "value": amount_minor.to_string()});
        let mut factor = json!({"isInStorePayment": true, "inStorePaymentScenario": "PaymentCode"});
        if verify {
            factor["userVerificationRequired"] = json!(true);
        }
        json!({
            "paymentRequestId": id,
            "paymentAmount": amount,
            "payToAmount": amount,
            "paymentMethod": {"paymentMethodType": "CONNECT_WALLET", "paymentMethodId": code},
            "order": {"orderDescription": "mpp-check", "merchant": {
                "referenceMerchantId": "MPPCHECK", "merchantName": "paycode conformance kit",
                "merchantMCC": "5814",
                "store": {"referenceStoreId": "MPPCHECK-1", "storeName": "Kit store", "storeMCC": "5814"}},
                "env": {"storeTerminalId": "KIT-1"}},
            "paymentExpiryTime": (now + chrono::Duration::minutes(3)).to_rfc3339(),
            "paymentNotifyUrl": self.notify_url,
            "paymentFactor": factor,
        })
    }

    async fn inquiry(&self, id: &str, ev: &mut Vec<String>) -> Step<Value> {
        self.call(
            &self.client,
            mpp::INQUIRY_PATH,
            &json!({"paymentRequestId": id}),
            ev,
        )
        .await
    }

    /// The notification of `id`, waiting up to the timeout.
    async fn notice(&self, id: &str, ev: &mut Vec<String>) -> Step<(String, String)> {
        let deadline = Instant::now() + Duration::from_millis(self.args.timeout_ms);
        loop {
            let found = self
                .notices
                .lock()
                .expect("notices lock")
                .iter()
                .find(|(i, _, _)| i == id)
                .map(|(_, s, c)| (s.clone(), c.clone()));
            if let Some((status, code)) = found {
                ev.push(format!(
                    "notifyPayment: {status} {code}, signed by the wallet"
                ));
                return Ok((status, code));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no notifyPayment for {id} within {} ms",
                    self.args.timeout_ms
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn notices_of(&self, id: &str) -> usize {
        self.notices
            .lock()
            .expect("notices lock")
            .iter()
            .filter(|(i, _, _)| i == id)
            .count()
    }

    /// A payment that waits for the password: paid with userVerificationRequired.
    async fn pending(&self, what: &str, ev: &mut Vec<String>) -> Step<String> {
        let id = self.next_id(what);
        let code = self.code(ev).await?;
        let r = self
            .call(
                &self.client,
                mpp::PAY_PATH,
                &self.pay_body(&id, &code, self.args.amount_minor, true),
                ev,
            )
            .await?;
        expect(
            &r["result"],
            "U",
            "PAYMENT_IN_PROCESS",
            "pay with userVerificationRequired",
        )?;
        Ok(id)
    }

    /// A paid payment: its id and paymentId.
    async fn paid(&self, what: &str, ev: &mut Vec<String>) -> Step<(String, Value)> {
        let id = self.next_id(what);
        let code = self.code(ev).await?;
        let body = self.pay_body(&id, &code, self.args.amount_minor, false);
        let r = self.call(&self.client, mpp::PAY_PATH, &body, ev).await?;
        expect(&r["result"], "S", "SUCCESS", "pay of a small amount")?;
        Ok((id, r))
    }
}

/// Runs a wallet-supplied command off the async threads; its stdout.
async fn shell(command: &str) -> Step<String> {
    shell_owned(command.to_string()).await
}

async fn shell_owned(command: String) -> Step<String> {
    tokio::task::spawn_blocking(move || shell_blocking(&command))
        .await
        .map_err(|e| format!("the command did not finish: {e}"))?
}

fn shell_blocking(command: &str) -> Step<String> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{command:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn expect(result: &Value, status: &str, code: &str, what: &str) -> Step<()> {
    if result["resultStatus"] == status && result["resultCode"] == code {
        Ok(())
    } else {
        Err(format!(
            "{what}: expected {status} {code}, got {} {}",
            result["resultStatus"].as_str().unwrap_or("nothing"),
            result["resultCode"].as_str().unwrap_or("")
        ))
    }
}

/// The failure reasons SPEC §2.3 documents for a payment the wallet refuses.
const PAY_FAILURE_CODES: [&str; 7] = [
    "INVALID_CODE",
    "USER_BALANCE_NOT_ENOUGH",
    "USER_AMOUNT_EXCEED_LIMIT",
    "PAYMENT_AMOUNT_EXCEED_LIMIT",
    "USER_STATUS_ABNORMAL",
    "RISK_REJECT",
    "ORDER_IS_CLOSED",
];

fn expect_refused(result: &Value, what: &str) -> Step<()> {
    let code = result["resultCode"].as_str().unwrap_or("");
    if result["resultStatus"] == "F" && PAY_FAILURE_CODES.contains(&code) {
        Ok(())
    } else {
        Err(format!(
            "{what}: expected F with a documented reason ({}), got {} {code}",
            PAY_FAILURE_CODES.join(", "),
            result["resultStatus"].as_str().unwrap_or("nothing")
        ))
    }
}

async fn pay_success(kit: &Kit, ev: &mut Vec<String>) -> Step<()> {
    let (id, r) = kit.paid("pay", ev).await?;
    for field in ["paymentId", "paymentTime"] {
        if r[field].as_str().is_none_or(str::is_empty) {
            return Err(format!("a successful pay answer carries {field}"));
        }
    }
    let asked = kit.args.amount_minor.to_string();
    if r["payToAmount"]["value"].as_str() != Some(asked.as_str()) {
        return Err(format!(
            "payToAmount {} is not the amount asked",
            r["payToAmount"]
        ));
    }
    let q = kit.inquiry(&id, ev).await?;
    expect(&q["result"], "S", "SUCCESS", "inquiryPayment")?;
    expect(
        &q["paymentResult"],
        "S",
        "SUCCESS",
        "inquiryPayment's paymentResult",
    )?;
    if q["paymentId"] != r["paymentId"] {
        return Err("inquiry names another paymentId than pay".into());
    }
    // Answered at once, so there is nothing to notify; a notification, if any, must agree.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let notified = kit.notices.lock().expect("notices lock").clone();
    if let Some((_, status, code)) = notified.iter().find(|(i, _, _)| *i == id)
        && status != "S"
    {
        return Err(format!(
            "notifyPayment says {status} {code} for a paid payment"
        ));
    }
    Ok(())
}

async fn idempotent_retry(kit: &Kit, ev: &mut Vec<String>) -> Step<()> {
    let id = kit.next_id("retry");
    let code = kit.code(ev).await?;
    let body = kit.pay_body(&id, &code, kit.args.amount_minor, false);
    let first = kit.call(&kit.client, mpp::PAY_PATH, &body, ev).await?;
    expect(&first["result"], "S", "SUCCESS", "first pay")?;
    let again = kit.call(&kit.client, mpp::PAY_PATH, &body, ev).await?;
    expect(&again["result"], "S", "SUCCESS", "the same pay again")?;
    if again["paymentId"] != first["paymentId"] {
        return Err(format!(
            "a retried pay made another payment ({} then {})",
            first["paymentId"], again["paymentId"]
        ));
    }
    let changed = kit.pay_body(&id, &code, kit.args.amount_minor + 1, false);
    let r = kit.call(&kit.client, mpp::PAY_PATH, &changed, ev).await?;
    expect(
        &r["result"],
        "F",
        "REPEAT_REQ_INCONSISTENT",
        "the same id with another amount",
    )?;
    Ok(())
}

async fn refused_code(kit: &Kit, ev: &mut Vec<String>) -> Step<()> {
    // A code of the wallet's own issuer that it never showed.
    let real = kit.code(ev).await?;
    let forged = format!("{}02{:016}", &real[..6], 1_234_567_890_123_457u64);
    let id = kit.next_id("badcode");
    let body = kit.pay_body(&id, &forged, kit.args.amount_minor, false);
    let r = kit.call(&kit.client, mpp::PAY_PATH, &body, ev).await?;
    expect_refused(&r["result"], "pay with a code never shown")?;
    let q = kit.inquiry(&id, ev).await?;
    if q["paymentResult"]["resultStatus"] == "S" {
        return Err("a refused payment inquires as paid".into());
    }
    Ok(())
}

async fn refused_amount(kit: &Kit, ev: &mut Vec<String>) -> Step<()> {
    let id = kit.next_id("toomuch");
    let code = kit.code(ev).await?;
    let body = kit.pay_body(&id, &code, 999_999_999_999, false);
    let r = kit.call(&kit.client, mpp::PAY_PATH, &body, ev).await?;
    expect_refused(&r["result"], "pay of an amount above any balance")?;
    let q = kit.inquiry(&id, ev).await?;
    if q["paymentResult"]["resultStatus"] == "S" {
        return Err("a refused payment inquires as paid".into());
    }
    Ok(())
}

async fn password_then_notify(kit: &Kit, ev: &mut Vec<String>) -> Step<()> {
    let id = kit.pending("password", ev).await?;
    let q = kit.inquiry(&id, ev).await?;
    expect(
        &q["paymentResult"],
        "U",
        "PAYMENT_IN_PROCESS",
        "inquiry while waiting",
    )?;
    if kit.notices_of(&id) > 0 {
        return Err("notifyPayment was sent before the payment was final".into());
    }
    shell(&kit.args.confirm_command).await?;
    ev.push("confirmed by the test user".into());
    let (status, code) = kit.notice(&id, ev).await?;
    if (status.as_str(), code.as_str()) != ("S", "SUCCESS") {
        return Err(format!(
            "notifyPayment after the password says {status} {code}"
        ));
    }
    let q = kit.inquiry(&id, ev).await?;
    expect(
        &q["paymentResult"],
        "S",
        "SUCCESS",
        "inquiry after the notification",
    )?;
    Ok(())
}

async fn cancel_pending(kit: &Kit, ev: &mut Vec<String>) -> Step<()> {
    let id = kit.pending("cancel", ev).await?;
    let body = json!({"paymentRequestId": id});
    let c = kit.call(&kit.client, mpp::CANCEL_PATH, &body, ev).await?;
    expect(
        &c["result"],
        "S",
        "SUCCESS",
        "cancelPayment of a waiting payment",
    )?;
    let again = kit.call(&kit.client, mpp::CANCEL_PATH, &body, ev).await?;
    expect(&again["result"], "S", "SUCCESS", "the same cancel again")?;
    // The user's confirmation comes too late: it must not pay.
    let late = shell(&kit.args.confirm_command).await;
    ev.push(format!(
        "confirmation after the cancel: {}",
        if late.is_ok() {
            "accepted by the command"
        } else {
            "refused"
        }
    ));
    let q = kit.inquiry(&id, ev).await?;
    if q["paymentResult"]["resultStatus"] != "F" {
        return Err(format!(
            "a cancelled payment inquires as {} {}",
            q["paymentResult"]["resultStatus"], q["paymentResult"]["resultCode"]
        ));
    }
    Ok(())
}

async fn cancel_racing_confirmation(kit: &Kit, ev: &mut Vec<String>) -> Step<()> {
    let id = kit.pending("race", ev).await?;
    let confirming = tokio::spawn(shell_owned(kit.args.confirm_command.clone()));
    let body = json!({"paymentRequestId": id});
    let c = kit.call(&kit.client, mpp::CANCEL_PATH, &body, ev).await?;
    let confirmed = confirming.await.map_err(|e| e.to_string())?;
    ev.push(format!(
        "confirmation racing the cancel: {}",
        if confirmed.is_ok() {
            "accepted by the command"
        } else {
            "refused"
        }
    ));
    let q = kit.inquiry(&id, ev).await?;
    let status = q["paymentResult"]["resultStatus"].as_str().unwrap_or("");
    if status != "S" && status != "F" {
        return Err(format!(
            "after the race the payment is {status:?}, not final"
        ));
    }
    // A cancel the wallet accepted is final: a payment the password completed is reversed.
    if c["result"]["resultStatus"] == "S" && status != "F" {
        return Err("cancelPayment answered S, yet the payment inquires as paid".into());
    }
    Ok(())
}

async fn cancel_unknown_then_pay(kit: &Kit, ev: &mut Vec<String>) -> Step<()> {
    // The acquirer gave up on a pay whose answer it lost: cancel first, then the late pay.
    let id = kit.next_id("lostpay");
    let c = kit
        .call(
            &kit.client,
            mpp::CANCEL_PATH,
            &json!({"paymentRequestId": id}),
            ev,
        )
        .await?;
    expect(
        &c["result"],
        "S",
        "SUCCESS",
        "cancelPayment of a payment never seen",
    )?;
    let code = kit.code(ev).await?;
    let body = kit.pay_body(&id, &code, kit.args.amount_minor, false);
    let r = kit.call(&kit.client, mpp::PAY_PATH, &body, ev).await?;
    expect(
        &r["result"],
        "F",
        "ORDER_IS_CLOSED",
        "a pay after its cancel",
    )?;
    Ok(())
}

async fn refunds(kit: &Kit, ev: &mut Vec<String>) -> Step<()> {
    let amount = kit.args.amount_minor;
    if amount < 2 {
        return Err("--amount-minor must be at least 2 for a partial refund".into());
    }
    let (id, _) = kit.paid("refund", ev).await?;
    let refund = |rid: &str, minor: i64| {
        json!({"refundRequestId": rid, "paymentRequestId": id,
               "refundAmount": {"currency": kit.args.currency, "value": minor.to_string()}})
    };
    let part = amount / 2;
    let r1 = kit.next_id("r");
    let a = kit
        .call(&kit.client, mpp::REFUND_PATH, &refund(&r1, part), ev)
        .await?;
    expect(&a["result"], "S", "SUCCESS", "a partial refund")?;
    let again = kit
        .call(&kit.client, mpp::REFUND_PATH, &refund(&r1, part), ev)
        .await?;
    expect(&again["result"], "S", "SUCCESS", "the same refund again")?;
    if again["refundId"] != a["refundId"] {
        return Err("a retried refund made another refund".into());
    }
    let over = kit
        .call(
            &kit.client,
            mpp::REFUND_PATH,
            &refund(&kit.next_id("r"), amount - part + 1),
            ev,
        )
        .await?;
    expect(
        &over["result"],
        "F",
        "REFUND_AMOUNT_EXCEED",
        "a refund above what is left",
    )?;
    let rest = kit
        .call(
            &kit.client,
            mpp::REFUND_PATH,
            &refund(&kit.next_id("r"), amount - part),
            ev,
        )
        .await?;
    expect(&rest["result"], "S", "SUCCESS", "refunding the rest")?;
    Ok(())
}

async fn signatures_and_time(kit: &Kit, ev: &mut Vec<String>) -> Step<()> {
    for (client, what) in [
        (&kit.stranger, "unknown key"),
        (&kit.stale, "an hour-old time"),
    ] {
        let id = kit.next_id("refused");
        let code = kit.code(ev).await?;
        let body = kit.pay_body(&id, &code, kit.args.amount_minor, false);
        let r = kit.call(client, mpp::PAY_PATH, &body, ev).await?;
        if r["result"]["resultStatus"] != "F" {
            return Err(format!(
                "a pay signed with {what} was answered {}",
                r["result"]
            ));
        }
        let q = kit.inquiry(&id, ev).await?;
        expect(
            &q["result"],
            "F",
            "ORDER_NOT_EXIST",
            &format!("inquiry of the pay with {what}"),
        )?;
    }
    let q = kit.inquiry(&kit.next_id("never"), ev).await?;
    expect(
        &q["result"],
        "F",
        "ORDER_NOT_EXIST",
        "inquiry of a payment never sent",
    )?;
    Ok(())
}

pub async fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let wallet_key = PublicKey::parse(&read_key_file(&args.wallet_public_key, "the wallet key")?)
        .context("--wallet-public-key")?;
    let acquirer_key = PrivateKey::parse(&read_key_file(&args.acquirer_key, "the acquirer key")?)
        .context("--acquirer-key")?;
    paycode_core::Currency::parse(&args.currency)
        .map_err(|e| anyhow::anyhow!("--currency: {e}"))?;
    if args.amount_minor < 2 {
        bail!("--amount-minor must be at least 2");
    }
    let timeout = Duration::from_millis(args.timeout_ms.max(1_000) * 3);
    let signer = Signer::new(acquirer_key, 1);
    let client = SignedClient::new(
        &args.client_id,
        signer.clone(),
        Some(wallet_key.clone()),
        timeout,
    );
    let stranger = SignedClient::new(
        &args.client_id,
        Signer::new(PrivateKey::generate()?, 1),
        Some(wallet_key.clone()),
        timeout,
    );
    let stale = client.clone().with_clock(Arc::new(|| {
        chrono::Utc::now().timestamp_millis() - 3_600_000
    }));

    let notices: Notices = Arc::default();
    let listener = tokio::net::TcpListener::bind(&args.notify_listen)
        .await
        .with_context(|| format!("--notify-listen {}", args.notify_listen))?;
    let notify_url = format!("http://{}{}", listener.local_addr()?, mpp::NOTIFY_PATH);
    {
        let (notices, signer, key) = (notices.clone(), signer.clone(), wallet_key.clone());
        let app = axum::Router::new().route(
            mpp::NOTIFY_PATH,
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let (notices, signer, key) = (notices.clone(), signer.clone(), key.clone());
                async move { receive_notice(&notices, &signer, &key, &headers, body).await }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
    }

    let kit = Kit {
        client,
        stranger,
        stale,
        notify_url,
        notices,
        run: chrono::Utc::now().format("%Y%m%d%H%M%S").to_string(),
        seq: Default::default(),
        args,
    };
    println!("paycode mpp-check against {}", kit.args.url);
    let mut verdicts = Vec::new();
    macro_rules! scenario {
        ($name:literal, $f:ident) => {{
            let mut evidence = Vec::new();
            let failure = $f(&kit, &mut evidence).await.err();
            verdicts.push(Verdict {
                name: $name,
                failure,
                evidence,
            });
        }};
    }
    scenario!("pay answered S and inquired alike", pay_success);
    scenario!(
        "retried pay is idempotent, changed pay inconsistent",
        idempotent_retry
    );
    scenario!("pay with a code never shown is F", refused_code);
    scenario!("pay above the balance is F", refused_amount);
    scenario!(
        "U while waiting for the password, then notify S",
        password_then_notify
    );
    scenario!(
        "cancel of a waiting payment wins over a late password",
        cancel_pending
    );
    scenario!(
        "cancel racing the password ends in one outcome",
        cancel_racing_confirmation
    );
    scenario!(
        "cancel of an unseen payment closes it",
        cancel_unknown_then_pay
    );
    scenario!("refund partial, retried, too much, the rest", refunds);
    scenario!(
        "foreign signature and stale time refused, nothing written",
        signatures_and_time
    );

    let mut failed = 0;
    for v in &verdicts {
        match &v.failure {
            None => println!("PASS  {}", v.name),
            Some(why) => {
                failed += 1;
                println!("FAIL  {}: {why}", v.name);
            }
        }
        for e in &v.evidence {
            println!("        {e}");
        }
    }
    println!("{} scenarios, {failed} failed", verdicts.len());
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The kit's notifyPayment endpoint: only a notification signed by the wallet is recorded
/// and acknowledged; anything else is answered `SIGNATURE_INVALID` and forgotten.
async fn receive_notice(
    notices: &Notices,
    signer: &Signer,
    key: &PublicKey,
    headers: &HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (client_id, time) = (text("client-id"), text("request-time"));
    let verified = SignatureHeader::parse(&text("signature")).is_ok_and(|h| {
        paycode_sign::verify(key, &h, mpp::NOTIFY_PATH, &client_id, &time, &body).is_ok()
    });
    let result = match (
        verified,
        serde_json::from_slice::<mpp::NotifyPayment>(&body),
    ) {
        (true, Ok(n)) => {
            notices.lock().expect("notices lock").push((
                n.payment_request_id,
                n.payment_result.result_status,
                n.payment_result.result_code,
            ));
            json!({"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success"})
        }
        (true, Err(e)) => {
            json!({"resultCode": "PARAM_ILLEGAL", "resultStatus": "F", "resultMessage": e.to_string()})
        }
        (false, _) => {
            json!({"resultCode": "SIGNATURE_INVALID", "resultStatus": "F", "resultMessage": "not signed by the wallet's key"})
        }
    };
    let body = serde_json::to_vec(&json!({ "result": result })).expect("JSON");
    paycode_http::signed_response(signer, mpp::NOTIFY_PATH, &client_id, body).await
}
