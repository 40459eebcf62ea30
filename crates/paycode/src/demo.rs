//! `paycode demo`: the whole story against a running `serve`, narrated step by step:
//!
//! 1. a password-free payment;
//! 2. a visitor paying from a wallet in another currency (the acquirer's quote on the receipt);
//! 3. a payment that needs the password, confirmed on the phone while the POS polls;
//! 4. an insufficient balance;
//! 5. a payment cancelled by the merchant;
//! 6. a partial refund;
//! 7. where the merchant's signed notifications arrived.
//!
//! The demo plays the cashier (the same code as `paycode pos`), the customers' phones (the same
//! code as `paycode wallet`, each payment from a freshly registered device so that single-use
//! codes never collide) and the merchant's backend: a small HTTP receiver on 127.0.0.1 whose
//! URL goes out as `paymentNotifyUrl`, and which verifies each notification's signature with
//! the acquirer's public key. It exits 0 only if every step ended as the story says.

use crate::app::describe_challenge;
use crate::app_device::{CustomerApi, Device, find_user, now_unix_s, register_device};
use crate::demo_file::{DemoFile, DemoUser};
use crate::pos::{
    Charge, ChargeResult, Progress, RefundOutcome, format_refund, run_charge, run_refund, shop,
};
use crate::pos_receipt::format_receipt;
use crate::pos_schedule::{DEFAULT_PAY_TIMEOUT_MS, Outcome, Schedule};
use crate::tools_common::{MerchantApi, new_request_id, parse_amount, show_amount};
use anyhow::Context;
use paycode_core::Money;
use paycode_core::code::PaymentCode;
use paycode_http::SignedRequest;
use paycode_http::paycode_sign::PublicKey;
use paycode_proto::merchant::{PayResponse, PaymentRef, RefundRequest};
use paycode_proto::{Amount, ResultInfo};
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long the demo waits for the notifications of its payments.
const NOTIFY_WAIT_MS: u64 = 15_000;
/// How long the demo's phone waits for the password checkout to appear.
const CHALLENGE_WAIT_MS: u64 = 20_000;
const TERMINAL_ID: &str = "DEMO-POS";

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Waits before each inquiry, in ms (SPEC §2.8 schedule by default).
    #[arg(long, hide = true, value_delimiter = ',', default_values_t = crate::pos_schedule::DEFAULT_INQUIRY_SCHEDULE_MS)]
    inquiry_schedule_ms: Vec<u64>,
}

/// A notification as the demo's receiver got it.
#[derive(Debug, Clone)]
struct Arrived {
    path: String,
    signature_ok: Result<(), String>,
    body: Option<PayResponse>,
}

type Inbox = Arc<Mutex<Vec<Arrived>>>;

/// Starts the merchant's notification receiver on 127.0.0.1, port 0; returns its URL.
async fn start_receiver(acquirer_key: PublicKey, inbox: Inbox) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot open a local port for the notification receiver")?;
    let addr = listener
        .local_addr()
        .context("the receiver's port is unknown")?;
    let handler = move |req: SignedRequest| {
        let key = acquirer_key.clone();
        let inbox = inbox.clone();
        async move {
            let signature_ok = req
                .signature_header()
                .and_then(|h| req.verify(&h, &key))
                .map_err(|e| e.to_string());
            let body = serde_json::from_slice::<PayResponse>(&req.body).ok();
            if let Ok(mut v) = inbox.lock() {
                v.push(Arrived {
                    path: req.path.clone(),
                    signature_ok,
                    body,
                });
            }
            axum::Json(paycode_proto::merchant::NotifyAck {
                result: ResultInfo::new("SUCCESS", "S", "success"),
            })
        }
    };
    let app = axum::Router::new().route("/notify", axum::routing::post(handler));
    tokio::spawn(async move {
        let options = paycode_http::server::ServeOptions::new(
            "demo notification receiver",
            paycode_http::server::ServerLimits::default(),
        );
        let forever = std::future::pending::<()>();
        if let Err(e) = paycode_http::server::serve(listener, app, options, forever).await {
            eprintln!("the notification receiver stopped: {e}");
        }
    });
    Ok(format!("http://{addr}/notify"))
}

struct Story {
    demo: DemoFile,
    api: MerchantApi,
    schedule: Schedule,
    notify_url: String,
    failures: Vec<String>,
    /// Payment request ids that reached a final state (S or F) and so must be notified.
    final_payments: Vec<String>,
}

fn say(text: &str) {
    println!("{text}");
}

fn heading(n: u32, title: &str) {
    println!("\n== {n}. {title} ==");
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("     {l}\n")).collect()
}

impl Story {
    /// The first user with `role`, preferring one whose wallet pays in the merchant's currency
    /// (a payment needs no exchange rate then).
    fn user_with_role(&self, role: &str) -> anyhow::Result<&DemoUser> {
        let mut with_role = self.demo.users.iter().filter(|u| u.role == role);
        let first = with_role.clone().next().with_context(|| {
            format!(
                "demo.json has no user with role {role:?}; restart `paycode serve` with demo data"
            )
        })?;
        Ok(with_role
            .find(|u| u.currency == self.demo.currency)
            .unwrap_or(first))
    }

    fn amount(&self, text: &str) -> anyhow::Result<Money> {
        Ok(parse_amount(text, &self.demo.currency)?)
    }

    /// A fresh phone for `user`: registered now, codes generated from it offline.
    async fn phone(&self, user: &DemoUser) -> anyhow::Result<(CustomerApi, Device)> {
        let (u, wallet) = find_user(&self.demo, &user.name)?;
        let api = CustomerApi::new(wallet);
        let device = register_device(&api, &u.name, &u.password).await?;
        Ok((api, device))
    }

    fn code_of(&self, user: &DemoUser, device: &mut Device) -> anyhow::Result<PaymentCode> {
        let digits = device.next_code(now_unix_s())?.digits;
        say(&format!(
            "   {} ({} wallet {}) opens the app: payment code {} (made on the phone, no network needed)",
            user.name,
            user.currency,
            user.wallet,
            paycode_core::code::mask(&digits)
        ));
        PaymentCode::parse(&digits).context("the wallet app made a code that is not a payment code")
    }

    fn charge_of(&self, amount: Money, code: PaymentCode, what: &str) -> Charge {
        Charge {
            amount,
            code,
            terminal_id: TERMINAL_ID.to_string(),
            payment_request_id: new_request_id("DEMO"),
            notify_url: Some(self.notify_url.clone()),
            description: what.to_string(),
        }
    }

    fn print_receipt(&self, r: &ChargeResult) {
        print!(
            "{}",
            indent(&format_receipt(
                &shop(&self.demo, TERMINAL_ID),
                &r.details,
                &r.status_line(),
                &paycode_http::now_iso()
            ))
        );
    }

    fn note_final(&mut self, r: &ChargeResult) {
        // Only a payment the acquirer recorded (it has a payment id) is notified.
        if matches!(r.outcome, Outcome::Paid | Outcome::Failed { .. })
            && r.details.payment_id.is_some()
        {
            self.final_payments
                .push(r.details.payment_request_id.clone());
        }
    }

    fn check_step(&mut self, step: &str, ok: bool) {
        if !ok {
            self.failures.push(step.to_string());
        }
    }

    async fn charge(&self, charge: &Charge) -> anyhow::Result<ChargeResult> {
        let issuer = crate::pos::look_up_issuer(&self.api, &charge.code).await;
        say(&format!(
            "   the cashier scans it ({}) and charges {}",
            crate::pos::issuer_line(&issuer, &charge.code),
            crate::tools_common::show_money(charge.amount)
        ));
        let mut progress = Progress::stderr("     pos: ");
        run_charge(
            &self.api,
            &self.demo,
            charge,
            self.schedule.clone(),
            &mut progress,
        )
        .await
    }

    async fn password_free(&mut self) -> anyhow::Result<Option<ChargeResult>> {
        heading(1, "A password-free payment");
        let user = self.user_with_role("everyday")?.clone();
        let (_, mut device) = self.phone(&user).await?;
        let code = self.code_of(&user, &mut device)?;
        let charge = self.charge_of(self.amount("12.50")?, code, "Two coffees");
        let r = self.charge(&charge).await?;
        self.print_receipt(&r);
        self.note_final(&r);
        let ok = r.outcome == Outcome::Paid;
        self.check_step("1. password-free payment was not paid", ok);
        Ok(ok.then_some(r))
    }

    /// A wallet in another currency: the acquirer's quote fixes what the customer pays.
    async fn visitor(&mut self) -> anyhow::Result<()> {
        heading(2, "A visitor pays from a wallet in another currency");
        let Some(user) = self
            .demo
            .users
            .iter()
            .find(|u| u.role == "everyday" && u.currency != self.demo.currency)
            .cloned()
        else {
            say("   (every demo wallet pays in the merchant's currency; nothing to show)");
            return Ok(());
        };
        let (_, mut device) = self.phone(&user).await?;
        let code = self.code_of(&user, &mut device)?;
        let charge = self.charge_of(self.amount("6.80")?, code, "A kaya toast set");
        let r = self.charge(&charge).await?;
        self.print_receipt(&r);
        self.note_final(&r);
        self.check_step(
            "2. the payment from a wallet in another currency was not paid",
            r.outcome == Outcome::Paid,
        );
        Ok(())
    }

    async fn with_password(&mut self) -> anyhow::Result<()> {
        heading(3, "A payment that needs the password");
        let user = self.user_with_role("password")?.clone();
        let (customer, mut device) = self.phone(&user).await?;
        let code = self.code_of(&user, &mut device)?;
        let charge = self.charge_of(self.amount("20.00")?, code, "Lunch for two");
        say(&format!(
            "   {} pays password-free only up to a small amount, so the wallet asks for the password",
            user.name
        ));
        let api = self.api.clone();
        let demo = self.demo.clone();
        let schedule = self.schedule.clone();
        let pos_charge = charge.clone();
        let pos = tokio::spawn(async move {
            let mut progress = Progress::stderr("     pos: ");
            run_charge(&api, &demo, &pos_charge, schedule, &mut progress).await
        });
        say(&format!(
            "   the cashier charges {}; meanwhile {}'s phone shows:",
            crate::tools_common::show_money(charge.amount),
            user.name
        ));
        let token = device.token()?.to_string();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(CHALLENGE_WAIT_MS);
        let challenge = loop {
            let list = customer.challenges(&user.name, &token).await?;
            if let Some(c) = list.challenges.into_iter().next() {
                break Some(c);
            }
            if tokio::time::Instant::now() >= deadline || pos.is_finished() {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        match challenge {
            Some(c) => {
                print!("{}", indent(&describe_challenge(&c)));
                say(&format!("   {} enters the password (hidden) …", user.name));
                let outcome = customer
                    .confirm(&user.name, &token, &c.challenge_id, &user.password)
                    .await?;
                say(&format!(
                    "   phone: {} ({})",
                    outcome.result.result_code,
                    outcome.payment_status.as_deref().unwrap_or("-")
                ));
            }
            None => say("   no checkout appeared on the phone"),
        }
        let r = pos.await.context("the POS task stopped")??;
        self.print_receipt(&r);
        self.note_final(&r);
        self.check_step(
            "3. password payment was not paid",
            r.outcome == Outcome::Paid,
        );
        Ok(())
    }

    async fn low_balance(&mut self) -> anyhow::Result<()> {
        heading(4, "Not enough balance");
        let user = self.user_with_role("low-balance")?.clone();
        let (customer, mut device) = self.phone(&user).await?;
        if let Ok(b) = customer.balance(&user.name, device.token()?).await
            && let Some(amount) = &b.balance
        {
            say(&format!(
                "   {} has {} in the wallet",
                user.name,
                show_amount(amount)
            ));
        }
        let code = self.code_of(&user, &mut device)?;
        let charge = self.charge_of(self.amount("30.00")?, code, "A new umbrella");
        let r = self.charge(&charge).await?;
        self.print_receipt(&r);
        self.note_final(&r);
        let ok =
            matches!(&r.outcome, Outcome::Failed { code, .. } if code == "USER_BALANCE_NOT_ENOUGH");
        self.check_step(
            "4. low-balance payment did not fail with USER_BALANCE_NOT_ENOUGH",
            ok,
        );
        Ok(())
    }

    async fn cancel(&mut self) -> anyhow::Result<()> {
        heading(5, "A cancel");
        let user = self.user_with_role("everyday")?.clone();
        let (customer, mut device) = self.phone(&user).await?;
        let token = device.token()?.to_string();
        let code = self.code_of(&user, &mut device)?;
        let charge = self.charge_of(self.amount("8.00")?, code, "A cake");
        let r = self.charge(&charge).await?;
        self.print_receipt(&r);
        let before = customer.balance(&user.name, &token).await?.balance;
        self.note_final(&r);
        say("   the customer changes their mind: the cashier cancels the payment");
        let selector = PaymentRef {
            payment_id: r.details.payment_id.clone(),
            payment_request_id: Some(charge.payment_request_id.clone()),
        };
        let cancelled = match self.api.cancel(&selector).await {
            Ok(c) => {
                let result = c
                    .result
                    .unwrap_or_else(|| ResultInfo::new("UNKNOWN", "U", ""));
                say(&format!(
                    "   cancel: {} {}",
                    result.result_code,
                    c.cancel_time.map(|t| format!("at {t}")).unwrap_or_default()
                ));
                result.is_success()
            }
            Err(e) => {
                say(&format!("   cancel: {}", self.api.explain(&e)));
                false
            }
        };
        let after = customer.balance(&user.name, &token).await?.balance;
        if let (Some(b), Some(a)) = (&before, &after) {
            say(&format!(
                "   {}'s balance: {} after paying, {} after the cancel (reversed in full)",
                user.name,
                show_amount(b),
                show_amount(a)
            ));
        }
        let status = self
            .api
            .inquiry(&selector)
            .await
            .ok()
            .and_then(|i| i.payment_status);
        say(&format!(
            "   the payment is now {}",
            status.as_deref().unwrap_or("(unknown)")
        ));
        self.check_step(
            "5. the payment was not cancelled",
            r.outcome == Outcome::Paid && cancelled && status.as_deref() == Some("CANCELLED"),
        );
        Ok(())
    }

    async fn refund(&mut self, paid: &ChargeResult) -> anyhow::Result<()> {
        heading(6, "A partial refund");
        let Some(payment_id) = paid.details.payment_id.clone() else {
            self.check_step("6. the first payment has no payment id to refund", false);
            return Ok(());
        };
        let amount = self.amount("5.00")?;
        say(&format!(
            "   one coffee is returned: refund {} of the {} payment {payment_id}",
            crate::tools_common::show_money(amount),
            paid.details
                .amount
                .as_ref()
                .map(show_amount)
                .unwrap_or_default()
        ));
        let req = RefundRequest {
            refund_request_id: new_request_id("DEMO-RF"),
            payment_id,
            refund_amount: Amount::new(amount.currency().code(), amount.amount_minor()),
            refund_reason: Some("one coffee returned".to_string()),
            refund_notify_url: None,
        };
        let mut progress = Progress::stderr("     pos: ");
        let ok = match run_refund(&self.api, &req, &self.schedule, &mut progress).await? {
            RefundOutcome::Refunded(r) => {
                print!("{}", indent(&format_refund(&self.demo, &req, &r)));
                true
            }
            RefundOutcome::Failed { code, message } => {
                say(&format!("   refund refused: {code} ({message})"));
                false
            }
            RefundOutcome::Unknown => {
                say("   refund outcome unknown");
                false
            }
        };
        self.check_step("6. the partial refund did not succeed", ok);
        Ok(())
    }

    async fn notifications(&mut self, inbox: &Inbox) {
        let expected = self.final_payments.clone();
        heading(7, "The merchant's notifications");
        say(&format!(
            "   the merchant's backend listens at {}",
            self.notify_url
        ));
        let deadline = tokio::time::Instant::now() + Duration::from_millis(NOTIFY_WAIT_MS);
        loop {
            let have: Vec<String> = inbox
                .lock()
                .map(|v| {
                    v.iter()
                        .filter_map(|a| a.body.as_ref()?.payment_request_id.clone())
                        .collect()
                })
                .unwrap_or_default();
            if expected.iter().all(|id| have.contains(id))
                || tokio::time::Instant::now() >= deadline
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let arrived = inbox.lock().map(|v| v.clone()).unwrap_or_default();
        for a in &arrived {
            let b = a.body.clone().unwrap_or_default();
            let result = b
                .result
                .as_ref()
                .map(|r| r.result_code.as_str())
                .unwrap_or("?");
            say(&format!(
                "   {} {} {} {} → {} (signature {})",
                b.notify_type.as_deref().unwrap_or("?"),
                b.payment_request_id.as_deref().unwrap_or("?"),
                b.payment_amount
                    .as_ref()
                    .map(show_amount)
                    .unwrap_or_default(),
                result,
                a.path,
                match &a.signature_ok {
                    Ok(()) => "verified with the acquirer's key".to_string(),
                    Err(e) => format!("INVALID: {e}"),
                }
            ));
        }
        let got: Vec<&Arrived> = arrived
            .iter()
            .filter(|a| {
                a.body
                    .as_ref()
                    .and_then(|b| b.payment_request_id.as_ref())
                    .is_some_and(|id| expected.contains(id))
            })
            .collect();
        let all_signed = got.iter().all(|a| a.signature_ok.is_ok());
        for id in &expected {
            if !got
                .iter()
                .any(|a| a.body.as_ref().and_then(|b| b.payment_request_id.as_ref()) == Some(id))
            {
                say(&format!(
                    "   no notification arrived for {id} within {} s",
                    NOTIFY_WAIT_MS / 1000
                ));
            }
        }
        self.check_step(
            "7. a notification is missing or badly signed",
            all_signed
                && expected.iter().all(|id| {
                    got.iter().any(|a| {
                        a.body.as_ref().and_then(|b| b.payment_request_id.as_ref()) == Some(id)
                    })
                }),
        );
    }
}

pub async fn run(data_dir: &Path, args: DemoArgs) -> anyhow::Result<ExitCode> {
    let demo = DemoFile::load(data_dir)?;
    let api = MerchantApi::from_demo(&demo, DEFAULT_PAY_TIMEOUT_MS)?;
    let acquirer_key = PublicKey::parse(&demo.acquirer_public_key)
        .context("demo.json: acquirerPublicKey is not a valid public key")?;
    let inbox: Inbox = Arc::new(Mutex::new(Vec::new()));
    let notify_url = start_receiver(acquirer_key, inbox.clone()).await?;
    say(&format!(
        "paycode demo: {} ({}), store {}, acquirer at {}",
        demo.merchant_name, demo.reference_merchant_id, demo.store_name, demo.acquirer_url
    ));
    let mut story = Story {
        api,
        schedule: Schedule {
            inquiry_ms: args.inquiry_schedule_ms.clone(),
            ..Schedule::default()
        },
        notify_url,
        demo,
        failures: Vec::new(),
        final_payments: Vec::new(),
    };
    let paid = story.password_free().await?;
    story.visitor().await?;
    story.with_password().await?;
    story.low_balance().await?;
    story.cancel().await?;
    match &paid {
        Some(p) => story.refund(p).await?,
        None => story.check_step("6. no paid payment to refund", false),
    }
    story.notifications(&inbox).await;
    if story.failures.is_empty() {
        say("\nThe whole story ran as expected.");
        Ok(ExitCode::SUCCESS)
    } else {
        anyhow::bail!(
            "the demo did not go as expected: {}",
            story.failures.join("; ")
        )
    }
}
