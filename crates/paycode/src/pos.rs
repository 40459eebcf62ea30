//! The merchant's POS terminal (`paycode pos …`): charge a scanned payment code, follow the
//! payment to a final state with the best practice of SPEC §2.8 ([`crate::pos_schedule`]), print
//! a receipt; refund, cancel, and look a payment up.
//!
//! Credentials, URLs and the merchant's identity come from `<data-dir>/demo.json`, which
//! `paycode serve` writes. Progress goes to stderr, the receipt to stdout, and the exit code
//! says how it ended (see [`EXIT_CODES_HELP`]).

use crate::demo_file::DemoFile;
use crate::pos_receipt::{PaymentDetails, Shop, format_receipt, hint_for};
use crate::pos_schedule::{
    Action, CancelAnswer, DEFAULT_CANCEL_RETRY_MS, DEFAULT_INQUIRY_SCHEDULE_MS,
    DEFAULT_PAY_TIMEOUT_MS, Event, InquiryAnswer, Machine, Outcome, PayAnswer, Schedule,
};
use crate::render;
use crate::tools_common::{
    DEFAULT_LOOKUP_TIMEOUT_MS, MerchantApi, new_request_id, parse_amount, show_amount, show_money,
};
use anyhow::Context;
use paycode_core::Money;
use paycode_core::code::PaymentCode;
use paycode_http::CallError;
use paycode_proto::Amount;
use paycode_proto::merchant::{
    CodeIssuerRequest, CodeIssuerResponse, Env, InquiryPaymentResponse, InquiryRefundRequest,
    Merchant, Order, PayRequest, PaymentFactor, PaymentMethod, PaymentRef, RefundRequest, Store,
};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

pub const EXIT_PAID: u8 = 0;
pub const EXIT_FAILED: u8 = 2;
pub const EXIT_UNKNOWN: u8 = 3;

pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  paid / done (charge paid, refund or cancel succeeded, status SUCCESS)
  1  usage or other error (bad amount, unreadable image, server not reachable, …)
  2  failed: a definitive failure (declined, cancelled, refund refused, status FAIL/CANCELLED)
  3  unknown: no final state after the whole inquiry schedule and every cancel attempt
     (status PROCESSING); check again later with `paycode pos status`";

#[derive(clap::Args)]
#[command(after_help = EXIT_CODES_HELP)]
pub struct PosArgs {
    #[command(subcommand)]
    command: PosCommand,
}

#[derive(clap::Subcommand)]
enum PosCommand {
    /// Charge a customer's payment code and print the receipt.
    #[command(after_help = EXIT_CODES_HELP)]
    Charge(ChargeArgs),
    /// Refund part or all of a paid payment.
    #[command(after_help = EXIT_CODES_HELP)]
    Refund(RefundArgs),
    /// Show a payment's current state, with its refunds and cancels.
    #[command(after_help = EXIT_CODES_HELP)]
    Status(PaymentSelector),
    /// Cancel a payment (void it if unfinished, reverse it in full if paid today).
    #[command(after_help = EXIT_CODES_HELP)]
    Cancel(CancelArgs),
}

/// Timing of the §2.8 flow; hidden flags shorten it for tests.
#[derive(clap::Args, Clone)]
struct TimingArgs {
    /// Waits before each inquiry, in ms.
    #[arg(long, hide = true, value_delimiter = ',', default_values_t = DEFAULT_INQUIRY_SCHEDULE_MS)]
    inquiry_schedule_ms: Vec<u64>,
    /// Waits before each cancel retry, in ms.
    #[arg(long, hide = true, value_delimiter = ',', default_values_t = DEFAULT_CANCEL_RETRY_MS)]
    cancel_retry_ms: Vec<u64>,
    /// How long to wait for the pay answer before inquiring, in ms.
    #[arg(long, hide = true, default_value_t = DEFAULT_PAY_TIMEOUT_MS)]
    pay_timeout_ms: u64,
}

impl TimingArgs {
    fn schedule(&self) -> Schedule {
        Schedule {
            inquiry_ms: self.inquiry_schedule_ms.clone(),
            cancel_retry_ms: self.cancel_retry_ms.clone(),
        }
    }
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["code", "scan"])))]
struct ChargeArgs {
    /// Amount as written on the price tag, e.g. 12.50 (exact; no rounding).
    amount: String,
    /// ISO 4217 currency of the amount, e.g. SGD.
    currency: String,
    /// The payment code's digits, as typed by the cashier.
    #[arg(long)]
    code: Option<String>,
    /// A picture of the customer's screen (PNG or JPEG) holding a QR code or a Code 128 barcode.
    #[arg(long, value_name = "IMAGE")]
    scan: Option<PathBuf>,
    /// This terminal's id, printed on the receipt and sent as storeTerminalId.
    #[arg(long, default_value = "POS-01")]
    terminal: String,
    /// Idempotency key of the charge (default: a new unique id). Repeat it to retry safely.
    #[arg(long)]
    request_id: Option<String>,
    /// Where the acquirer should send the payment notification.
    #[arg(long)]
    notify_url: Option<String>,
    /// What the customer buys.
    #[arg(long, default_value = "In-store purchase")]
    description: String,
    /// How long to wait for the name of the code's wallet before charging without it, in ms.
    #[arg(long, default_value_t = DEFAULT_LOOKUP_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(1..))]
    lookup_timeout_ms: u64,
    #[command(flatten)]
    timing: TimingArgs,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("payment").required(true).args(["payment_id", "request_id"])))]
struct PaymentSelector {
    /// The acquirer's payment id (on the receipt).
    #[arg(long)]
    payment_id: Option<String>,
    /// The POS's payment request id (on the receipt).
    #[arg(long)]
    request_id: Option<String>,
}

impl PaymentSelector {
    fn to_ref(&self) -> PaymentRef {
        PaymentRef {
            payment_id: self.payment_id.clone(),
            payment_request_id: self.request_id.clone(),
        }
    }
}

#[derive(clap::Args)]
struct CancelArgs {
    #[command(flatten)]
    payment: PaymentSelector,
    #[command(flatten)]
    timing: TimingArgs,
}

#[derive(clap::Args)]
struct RefundArgs {
    /// Amount to refund, in the payment's currency, e.g. 5.00.
    amount: String,
    /// ISO 4217 currency of the payment.
    currency: String,
    /// The payment to refund (its payment id, on the receipt).
    #[arg(long)]
    payment_id: String,
    /// Idempotency key of the refund (default: a new unique id). Repeat it to retry safely.
    #[arg(long)]
    refund_request_id: Option<String>,
    #[arg(long)]
    reason: Option<String>,
    #[command(flatten)]
    timing: TimingArgs,
}

pub async fn run(data_dir: &Path, args: PosArgs) -> anyhow::Result<ExitCode> {
    let demo = DemoFile::load(data_dir)?;
    match args.command {
        PosCommand::Charge(a) => charge_command(&demo, a).await,
        PosCommand::Refund(a) => refund_command(&demo, a).await,
        PosCommand::Status(a) => status_command(&demo, a).await,
        PosCommand::Cancel(a) => cancel_command(&demo, a).await,
    }
}

/// Live progress on one line of stderr (rewritten in place on a terminal, one line per step
/// otherwise).
pub struct Progress {
    tty: bool,
    prefix: String,
    open_line: bool,
}

impl Progress {
    pub fn stderr(prefix: &str) -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
            prefix: prefix.to_string(),
            open_line: false,
        }
    }

    pub fn show(&mut self, text: &str) {
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{}{text}", self.prefix);
            self.open_line = true;
        } else {
            let _ = writeln!(err, "{}{text}", self.prefix);
        }
        let _ = err.flush();
    }

    /// A line that stays on screen (a terminal's line in progress is replaced by it).
    pub fn line(&mut self, text: &str) {
        let mut err = std::io::stderr().lock();
        if self.open_line {
            let _ = write!(err, "\r\x1b[2K");
            self.open_line = false;
        }
        let _ = writeln!(err, "{}{text}", self.prefix);
        let _ = err.flush();
    }

    pub fn finish(&mut self) {
        if self.open_line {
            let _ = writeln!(std::io::stderr());
            self.open_line = false;
        }
    }
}

/// The shop printed on receipts, from `demo.json`.
pub fn shop(demo: &DemoFile, terminal_id: &str) -> Shop {
    Shop {
        merchant_name: demo.merchant_name.clone(),
        reference_merchant_id: demo.reference_merchant_id.clone(),
        store_name: demo.store_name.clone(),
        reference_store_id: demo.reference_store_id.clone(),
        terminal_id: terminal_id.to_string(),
    }
}

/// `2.0 s`, `0.1 s`: a wait as a person reads it.
fn show_wait(ms: u64) -> String {
    format!("{}.{} s", ms / 1000, (ms % 1000) / 100)
}

/// One charge to make.
#[derive(Debug, Clone)]
pub struct Charge {
    pub amount: Money,
    pub code: PaymentCode,
    pub terminal_id: String,
    pub payment_request_id: String,
    pub notify_url: Option<String>,
    pub description: String,
}

/// How a charge ended, with everything learnt about it.
#[derive(Debug, Clone)]
pub struct ChargeResult {
    pub outcome: Outcome,
    pub details: PaymentDetails,
}

impl ChargeResult {
    pub fn exit_code(&self) -> u8 {
        match self.outcome {
            Outcome::Paid => EXIT_PAID,
            Outcome::Failed { .. } | Outcome::Cancelled => EXIT_FAILED,
            Outcome::Unknown { .. } => EXIT_UNKNOWN,
        }
    }

    pub fn status_line(&self) -> String {
        match &self.outcome {
            Outcome::Paid => "PAID".to_string(),
            Outcome::Cancelled => "CANCELLED (nothing charged)".to_string(),
            Outcome::Failed { code, message } => {
                let mut s = format!("FAILED {code}");
                if !message.is_empty() {
                    s.push_str(&format!(" ({message})"));
                }
                if let Some(h) = hint_for(code) {
                    s.push_str(&format!("\n                {h}"));
                }
                s
            }
            Outcome::Unknown { reason } => format!("UNKNOWN: {reason}"),
        }
    }
}

fn pay_request(demo: &DemoFile, c: &Charge) -> PayRequest {
    let amount = Amount::new(c.amount.currency().code(), c.amount.amount_minor());
    PayRequest {
        product_code: "IN_STORE_PAYMENT".to_string(),
        payment_request_id: c.payment_request_id.clone(),
        payment_amount: amount,
        payment_method: PaymentMethod {
            payment_method_type: "CONNECT_WALLET".to_string(),
            payment_method_id: c.code.expose_digits().to_string(),
        },
        order: Order {
            reference_order_id: Some(c.payment_request_id.clone()),
            order_description: c.description.clone(),
            order_amount: None,
            merchant: Merchant {
                reference_merchant_id: demo.reference_merchant_id.clone(),
                merchant_name: Some(demo.merchant_name.clone()),
                merchant_mcc: Some(demo.merchant_mcc.clone()),
                store: Some(Store {
                    reference_store_id: demo.reference_store_id.clone(),
                    store_name: Some(demo.store_name.clone()),
                    store_mcc: Some(demo.merchant_mcc.clone()),
                }),
            },
            env: Some(Env {
                store_terminal_id: Some(c.terminal_id.clone()),
                store_terminal_request_time: Some(paycode_http::now_iso()),
            }),
        },
        payment_factor: Some(PaymentFactor {
            in_store_payment_scenario: Some("PaymentCode".to_string()),
        }),
        payment_notify_url: c.notify_url.clone(),
        payment_expiry_time: None,
        settlement_strategy: None,
        merchant_account_id: None,
    }
}

fn classify_inquiry(r: &Result<InquiryPaymentResponse, CallError>) -> InquiryAnswer {
    let Ok(r) = r else {
        return InquiryAnswer::Unknown;
    };
    let Some(result) = &r.result else {
        return InquiryAnswer::Unknown;
    };
    match result.result_status.as_str() {
        "S" => match r.payment_status.as_deref() {
            Some("SUCCESS") => InquiryAnswer::Success,
            Some("FAIL") => InquiryAnswer::Failed {
                code: r
                    .payment_result_code
                    .clone()
                    .unwrap_or_else(|| "FAIL".to_string()),
                message: r.payment_result_message.clone().unwrap_or_default(),
            },
            Some("CANCELLED") => InquiryAnswer::Cancelled,
            _ => InquiryAnswer::Processing,
        },
        "F" if result.result_code == "ORDER_NOT_EXIST" => InquiryAnswer::NotFound,
        _ => InquiryAnswer::Unknown,
    }
}

fn classify_cancel(r: &Result<paycode_proto::merchant::CancelResponse, CallError>) -> CancelAnswer {
    let Ok(r) = r else {
        return CancelAnswer::Unknown;
    };
    let Some(result) = &r.result else {
        return CancelAnswer::Unknown;
    };
    match result.result_status.as_str() {
        "S" => CancelAnswer::Cancelled,
        "F" if result.result_code == "ORDER_NOT_EXIST" => CancelAnswer::NotFound,
        "F" => CancelAnswer::Failed {
            code: result.result_code.clone(),
            message: result.result_message.clone(),
        },
        _ => CancelAnswer::Unknown,
    }
}

/// What the acquirer said, before the charge, about the wallet that issued the code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuerAnswer {
    /// The wallet that `pay` will ask: its display name and its routing id.
    Known {
        psp_name: String,
        wallet_name: String,
    },
    /// No wallet takes this code (unknown or disabled issuer): `pay` would be refused alike.
    Refused { code: String, message: String },
    /// The acquirer could not say (no answer, an unexpected answer, or an acquirer without the
    /// look-up): the charge goes on and `pay` decides.
    Unavailable(String),
}

fn classify_issuer(r: &Result<CodeIssuerResponse, CallError>) -> IssuerAnswer {
    let r = match r {
        Ok(r) => r,
        Err(e) => return IssuerAnswer::Unavailable(e.to_string()),
    };
    let Some(result) = &r.result else {
        return IssuerAnswer::Unavailable("the answer has no result".to_string());
    };
    match (result.result_status.as_str(), &r.psp_name) {
        ("S", Some(psp_name)) if !psp_name.is_empty() => IssuerAnswer::Known {
            psp_name: psp_name.clone(),
            wallet_name: r.wallet_name.clone().unwrap_or_default(),
        },
        ("S", _) => IssuerAnswer::Unavailable("the answer names no wallet".to_string()),
        ("F", _) if result.result_code == "INVALID_CODE" => IssuerAnswer::Refused {
            code: result.result_code.clone(),
            message: result.result_message.clone(),
        },
        _ => IssuerAnswer::Unavailable(format!("{} {}", result.result_code, result.result_message)),
    }
}

/// Asks the acquirer which wallet issued `code`. Never fails: what it cannot learn is
/// [`IssuerAnswer::Unavailable`].
pub async fn look_up_issuer(api: &MerchantApi, code: &PaymentCode) -> IssuerAnswer {
    let req = CodeIssuerRequest {
        payment_code: code.expose_digits().to_string(),
    };
    classify_issuer(&api.code_issuer(&req).await)
}

/// The cashier's line for a known or unavailable issuer: `wallet: SGPay (sgpay)`.
pub fn issuer_line(answer: &IssuerAnswer, code: &PaymentCode) -> String {
    let text = match answer {
        IssuerAnswer::Known {
            psp_name,
            wallet_name,
        } if wallet_name.is_empty() || wallet_name == psp_name => {
            format!("wallet: {psp_name}")
        }
        IssuerAnswer::Known {
            psp_name,
            wallet_name,
        } => format!("wallet: {psp_name} ({wallet_name})"),
        IssuerAnswer::Unavailable(why) => {
            format!("wallet: unknown (the acquirer did not say: {why}); charging anyway")
        }
        IssuerAnswer::Refused { code, message } => {
            format!("wallet: none ({code}: {message})")
        }
    };
    mask_in(&text, code)
}

/// The one line that explains a charge refused before `pay`.
pub fn refused_line(code: &PaymentCode, result_code: &str, message: &str) -> String {
    mask_in(
        &format!(
            "not charged: the acquirer refused the code before paying ({result_code}: {message}); ask the customer to pay with another wallet or another way"
        ),
        code,
    )
}

/// Masks `code` wherever it occurs in `text` (the acquirer masks its messages; this makes sure).
fn mask_in(text: &str, code: &PaymentCode) -> String {
    text.replace(code.expose_digits(), &code.masked())
}

/// Whether the acquirer may already hold a payment for this charge's request id: anything but a
/// definite "no such payment" counts as maybe.
async fn was_sent_before(api: &MerchantApi, charge: &Charge) -> bool {
    let selector = PaymentRef {
        payment_id: None,
        payment_request_id: Some(charge.payment_request_id.clone()),
    };
    classify_inquiry(&api.inquiry(&selector).await) != InquiryAnswer::NotFound
}

/// Sends the pay request and follows SPEC §2.8 to a final state. Fails only when the pay
/// request certainly did not reach the acquirer (nothing was charged).
pub async fn run_charge(
    api: &MerchantApi,
    demo: &DemoFile,
    charge: &Charge,
    schedule: Schedule,
    progress: &mut Progress,
) -> anyhow::Result<ChargeResult> {
    let req = pay_request(demo, charge);
    let mut details = PaymentDetails::new(&charge.payment_request_id, req.payment_amount.clone());
    let selector = PaymentRef {
        payment_id: None,
        payment_request_id: Some(charge.payment_request_id.clone()),
    };
    progress.show(&format!(
        "charging {} to code {} …",
        show_money(charge.amount),
        charge.code.masked()
    ));
    let mut machine = Machine::new(schedule);
    let answer = match api.pay(&req).await {
        Ok(r) => {
            details.absorb_pay(&r);
            let code = r.result.as_ref().map(|x| x.result_code.as_str());
            match r.result.as_ref().map(|x| x.result_status.as_str()) {
                Some("S") => PayAnswer::Success,
                // `U` REQUEST_TRAFFIC_EXCEED_LIMIT: refused before anything was stored (this
                // terminal, merchant or client sent too many invalid codes), so nothing can land
                // later: a definite failure.
                Some(status) if status == "F" || code == Some("REQUEST_TRAFFIC_EXCEED_LIMIT") => {
                    let result = r
                        .result
                        .clone()
                        .unwrap_or_else(paycode_proto::ResultInfo::success);
                    PayAnswer::Failed {
                        code: result.result_code,
                        message: result.result_message,
                    }
                }
                _ => {
                    let code = details.result_code.clone().unwrap_or_default();
                    if code == "PAYMENT_IN_PROCESS" {
                        progress
                            .show("waiting for the customer to enter the password on the phone …");
                    } else {
                        progress.show(&format!("outcome not known yet ({code}); inquiring …"));
                    }
                    PayAnswer::Unknown
                }
            }
        }
        Err(e @ CallError::NotDelivered(_)) => {
            progress.finish();
            anyhow::bail!(
                "the charge was not sent, nothing was charged: {}",
                api.explain(&e)
            );
        }
        Err(e) => {
            progress.show(&format!("no answer to the pay request ({e}); inquiring …"));
            PayAnswer::Unknown
        }
    };
    let mut action = machine.next(Event::Pay(answer));
    let waiting_for = |d: &PaymentDetails| -> &'static str {
        if d.result_code.as_deref() == Some("PAYMENT_IN_PROCESS") {
            "waiting for the customer's password"
        } else {
            "waiting for the outcome"
        }
    };
    let outcome = loop {
        match action {
            Action::Finish(outcome) => break outcome,
            Action::Inquire {
                wait_ms,
                attempt_idx,
                n_attempts,
            } => {
                progress.show(&format!(
                    "{} (inquiry {}/{} in {}) …",
                    waiting_for(&details),
                    attempt_idx + 1,
                    n_attempts,
                    show_wait(wait_ms)
                ));
                tokio::time::sleep(Duration::from_millis(wait_ms)).await;
                let r = api.inquiry(&selector).await;
                if let Ok(r) = &r {
                    details.absorb_inquiry(r);
                }
                action = machine.next(Event::Inquiry(classify_inquiry(&r)));
            }
            Action::Cancel {
                wait_ms,
                attempt_idx,
                n_attempts,
            } => {
                progress.show(&format!(
                    "no final state in time: cancelling (attempt {}/{}) …",
                    attempt_idx + 1,
                    n_attempts
                ));
                tokio::time::sleep(Duration::from_millis(wait_ms)).await;
                let answer = classify_cancel(&api.cancel(&selector).await);
                if let CancelAnswer::Failed { .. } = answer {
                    // The cancel was refused: the payment may have reached a final state meanwhile.
                    let r = api.inquiry(&selector).await;
                    if let Ok(r) = &r {
                        details.absorb_inquiry(r);
                    }
                    match classify_inquiry(&r) {
                        InquiryAnswer::Success => break Outcome::Paid,
                        InquiryAnswer::Cancelled => break Outcome::Cancelled,
                        InquiryAnswer::Failed { code, message } => {
                            break Outcome::Failed { code, message };
                        }
                        InquiryAnswer::Processing
                        | InquiryAnswer::NotFound
                        | InquiryAnswer::Unknown => {}
                    }
                }
                action = machine.next(Event::Cancel(answer));
            }
        }
    };
    progress.finish();
    Ok(ChargeResult { outcome, details })
}

/// Reads the code from `--code` or `--scan`.
fn read_code(code: Option<&str>, scan: Option<&Path>) -> anyhow::Result<PaymentCode> {
    let (digits, source) = match (code, scan) {
        (Some(c), _) => (
            c.chars().filter(|c| !c.is_whitespace()).collect::<String>(),
            "--code".to_string(),
        ),
        (None, Some(path)) => (
            render::decode_image_file(path)?,
            format!("the image {}", path.display()),
        ),
        (None, None) => {
            anyhow::bail!("give the customer's code with --code DIGITS or --scan IMAGE")
        }
    };
    PaymentCode::parse(&digits).map_err(|e| {
        anyhow::anyhow!(
            "{source} does not hold a payment code ({e}); ask the customer to open the payment code in the wallet app"
        )
    })
}

async fn charge_command(demo: &DemoFile, a: ChargeArgs) -> anyhow::Result<ExitCode> {
    let amount = parse_amount(&a.amount, &a.currency)?;
    let code = read_code(a.code.as_deref(), a.scan.as_deref())?;
    let api =
        MerchantApi::from_demo_with_lookup(demo, a.timing.pay_timeout_ms, a.lookup_timeout_ms)?;
    let charge = Charge {
        amount,
        code,
        terminal_id: a.terminal.clone(),
        payment_request_id: a
            .request_id
            .clone()
            .unwrap_or_else(|| new_request_id("POS")),
        notify_url: a.notify_url.clone(),
        description: a.description.clone(),
    };
    let mut progress = Progress::stderr("");
    // Name the wallet before charging: the cashier can tell the customer at once, and a code no
    // wallet here takes is turned away without a payment being created.
    progress.show(&format!(
        "identifying the wallet of code {} …",
        charge.code.masked()
    ));
    let answer = look_up_issuer(&api, &charge.code).await;
    if let IssuerAnswer::Refused {
        code: result_code,
        message,
    } = &answer
    {
        // A repeated request id may be a retry of a charge made before the wallet was
        // disabled: `pay` then answers with that charge's state, so it must still be asked.
        let is_retry = a.request_id.is_some() && was_sent_before(&api, &charge).await;
        if !is_retry {
            progress.line(&refused_line(&charge.code, result_code, message));
            return Ok(ExitCode::from(EXIT_FAILED));
        }
        progress.line(&format!(
            "{}; request {} was sent before: following it",
            issuer_line(&answer, &charge.code),
            charge.payment_request_id
        ));
    } else {
        progress.line(&issuer_line(&answer, &charge.code));
    }
    let result = run_charge(&api, demo, &charge, a.timing.schedule(), &mut progress).await?;
    print!(
        "{}",
        format_receipt(
            &shop(demo, &a.terminal),
            &result.details,
            &result.status_line(),
            &paycode_http::now_iso()
        )
    );
    Ok(ExitCode::from(result.exit_code()))
}

async fn status_command(demo: &DemoFile, a: PaymentSelector) -> anyhow::Result<ExitCode> {
    let api = MerchantApi::from_demo(demo, DEFAULT_PAY_TIMEOUT_MS)?;
    let r = api
        .inquiry(&a.to_ref())
        .await
        .map_err(|e| anyhow::anyhow!(api.explain(&e)))?;
    let result = r
        .result
        .clone()
        .context("the acquirer's answer has no result")?;
    if !result.is_success() {
        if result.result_code == "ORDER_NOT_EXIST" {
            anyhow::bail!(
                "no such payment: the acquirer knows no payment with this id (check the receipt)"
            );
        }
        anyhow::bail!(
            "the inquiry failed: {} ({}){}",
            result.result_code,
            result.result_message,
            hint_for(&result.result_code)
                .map(|h| format!("; {h}"))
                .unwrap_or_default()
        );
    }
    let mut details = PaymentDetails {
        payment_request_id: r.payment_request_id.clone().unwrap_or_default(),
        ..PaymentDetails::default()
    };
    details.absorb_inquiry(&r);
    let status = r
        .payment_status
        .clone()
        .unwrap_or_else(|| "PROCESSING".to_string());
    let (line, code) = match status.as_str() {
        "SUCCESS" => ("SUCCESS".to_string(), EXIT_PAID),
        "FAIL" => (
            format!(
                "FAIL {} ({})",
                r.payment_result_code.as_deref().unwrap_or(""),
                r.payment_result_message.as_deref().unwrap_or("")
            ),
            EXIT_FAILED,
        ),
        "CANCELLED" => ("CANCELLED".to_string(), EXIT_FAILED),
        other => (other.to_string(), EXIT_UNKNOWN),
    };
    let terminal = "-";
    print!(
        "{}",
        format_receipt(
            &shop(demo, terminal),
            &details,
            &line,
            &paycode_http::now_iso()
        )
    );
    Ok(ExitCode::from(code))
}

/// Cancels with the §2.8 retries; returns the exit code and prints the result.
async fn cancel_command(demo: &DemoFile, a: CancelArgs) -> anyhow::Result<ExitCode> {
    let api = MerchantApi::from_demo(demo, a.timing.pay_timeout_ms)?;
    let selector = a.payment.to_ref();
    let mut progress = Progress::stderr("");
    let n_attempts = a.timing.cancel_retry_ms.len() + 1;
    for attempt_idx in 0..n_attempts {
        if attempt_idx > 0 {
            let wait_ms = a.timing.cancel_retry_ms[attempt_idx - 1];
            progress.show(&format!(
                "no definite answer; retrying the cancel in {} …",
                show_wait(wait_ms)
            ));
            tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        }
        let r = api.cancel(&selector).await;
        if let Err(e @ CallError::NotDelivered(_)) = &r {
            progress.finish();
            anyhow::bail!("the cancel was not sent: {}", api.explain(e));
        }
        match classify_cancel(&r) {
            CancelAnswer::Cancelled => {
                progress.finish();
                let time = r.ok().and_then(|r| r.cancel_time).unwrap_or_default();
                println!(
                    "CANCELLED at {time}: the customer is not charged (or is refunded in full)"
                );
                return Ok(ExitCode::from(EXIT_PAID));
            }
            CancelAnswer::NotFound => {
                progress.finish();
                anyhow::bail!(
                    "no such payment: the acquirer knows no payment with this id (check the receipt)"
                );
            }
            CancelAnswer::Failed { code, message } => {
                progress.finish();
                let hint = match code.as_str() {
                    "CANCEL_WINDOW_EXCEED" => {
                        "; the cancel window has passed: use `paycode pos refund`"
                    }
                    "PROCESS_FAIL" => "; a refunded payment cannot be cancelled",
                    _ => "",
                };
                eprintln!("cancel refused: {code} ({message}){hint}");
                return Ok(ExitCode::from(EXIT_FAILED));
            }
            CancelAnswer::Unknown => {}
        }
    }
    progress.finish();
    eprintln!(
        "cancel outcome unknown after {n_attempts} attempts; check with `paycode pos status`"
    );
    Ok(ExitCode::from(EXIT_UNKNOWN))
}

/// The result of a refund.
#[derive(Debug, Clone)]
pub enum RefundOutcome {
    Refunded(Box<paycode_proto::merchant::RefundResponse>),
    Failed { code: String, message: String },
    Unknown,
}

/// Sends a refund and, when its outcome is unknown, inquires on the schedule.
pub async fn run_refund(
    api: &MerchantApi,
    req: &RefundRequest,
    schedule: &Schedule,
    progress: &mut Progress,
) -> anyhow::Result<RefundOutcome> {
    progress.show(&format!("refunding {} …", show_amount(&req.refund_amount)));
    let r = api.refund(req).await;
    if let Err(e @ CallError::NotDelivered(_)) = &r {
        progress.finish();
        anyhow::bail!(
            "the refund was not sent, nothing was refunded: {}",
            api.explain(e)
        );
    }
    if let Ok(r) = &r
        && let Some(result) = &r.result
    {
        match result.result_status.as_str() {
            "S" => {
                progress.finish();
                return Ok(RefundOutcome::Refunded(Box::new(r.clone())));
            }
            "F" => {
                progress.finish();
                return Ok(RefundOutcome::Failed {
                    code: result.result_code.clone(),
                    message: result.result_message.clone(),
                });
            }
            _ => {}
        }
    }
    let inquiry = InquiryRefundRequest {
        refund_request_id: Some(req.refund_request_id.clone()),
        refund_id: None,
    };
    for (idx, wait_ms) in schedule.inquiry_ms.iter().enumerate() {
        progress.show(&format!(
            "refund outcome not known yet (inquiry {}/{}) …",
            idx + 1,
            schedule.inquiry_ms.len()
        ));
        tokio::time::sleep(Duration::from_millis(*wait_ms)).await;
        let Ok(r) = api.inquiry_refund(&inquiry).await else {
            continue;
        };
        if !r.result.as_ref().is_some_and(|x| x.is_success()) {
            continue;
        }
        match r.refund_status.as_deref() {
            Some("SUCCESS") => {
                progress.finish();
                return Ok(RefundOutcome::Refunded(Box::new(r)));
            }
            Some("FAIL") => {
                progress.finish();
                let (code, message) = r
                    .result
                    .map(|x| (x.result_code, x.result_message))
                    .unwrap_or_default();
                return Ok(RefundOutcome::Failed { code, message });
            }
            _ => {}
        }
    }
    progress.finish();
    Ok(RefundOutcome::Unknown)
}

async fn refund_command(demo: &DemoFile, a: RefundArgs) -> anyhow::Result<ExitCode> {
    let amount = parse_amount(&a.amount, &a.currency)?;
    let api = MerchantApi::from_demo(demo, a.timing.pay_timeout_ms)?;
    let req = RefundRequest {
        refund_request_id: a
            .refund_request_id
            .clone()
            .unwrap_or_else(|| new_request_id("RF")),
        payment_id: a.payment_id.clone(),
        refund_amount: Amount::new(amount.currency().code(), amount.amount_minor()),
        refund_reason: a.reason.clone(),
        refund_notify_url: None,
    };
    let mut progress = Progress::stderr("");
    match run_refund(&api, &req, &a.timing.schedule(), &mut progress).await? {
        RefundOutcome::Refunded(r) => {
            print!("{}", format_refund(demo, &req, &r));
            Ok(ExitCode::from(EXIT_PAID))
        }
        RefundOutcome::Failed { code, message } => {
            let hint = match code.as_str() {
                "REFUND_AMOUNT_EXCEED" => "; the refunds would exceed the paid amount",
                "REFUND_WINDOW_EXCEED" => "; the refund window has passed",
                "ORDER_NOT_EXIST" => "; no such payment (check the payment id on the receipt)",
                "ORDER_STATUS_INVALID" | "PROCESS_FAIL" => "; only a paid payment can be refunded",
                _ => "",
            };
            eprintln!("refund refused: {code} ({message}){hint}");
            Ok(ExitCode::from(EXIT_FAILED))
        }
        RefundOutcome::Unknown => {
            eprintln!(
                "refund outcome unknown; retry later with --refund-request-id {} (safe: it is idempotent)",
                req.refund_request_id
            );
            Ok(ExitCode::from(EXIT_UNKNOWN))
        }
    }
}

/// The refund slip.
pub fn format_refund(
    demo: &DemoFile,
    req: &RefundRequest,
    r: &paycode_proto::merchant::RefundResponse,
) -> String {
    let mut out = String::new();
    let rule = "-".repeat(44);
    out.push_str(&format!("{rule}\n{}  REFUND\n{rule}\n", demo.merchant_name));
    out.push_str(&format!("{:<16}{}\n", "Payment id", req.payment_id));
    out.push_str(&format!(
        "{:<16}{}\n",
        "Refund id",
        r.refund_id.as_deref().unwrap_or("(not assigned)")
    ));
    out.push_str(&format!("{:<16}{}\n", "Request id", req.refund_request_id));
    out.push_str(&format!(
        "{:<16}{}\n",
        "Amount",
        show_amount(r.refund_amount.as_ref().unwrap_or(&req.refund_amount))
    ));
    if let Some(w) = &r.actual_refund_amount {
        out.push_str(&format!("{:<16}{}\n", "To the wallet", show_amount(w)));
    }
    out.push_str(&format!(
        "{:<16}{}\n",
        "Time",
        r.refund_time.as_deref().unwrap_or("")
    ));
    out.push_str(&format!("{rule}\n{:<16}REFUNDED\n{rule}\n", "Status"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use paycode_proto::ResultInfo;

    fn inquiry(status: &str, code: &str, payment_status: Option<&str>) -> InquiryPaymentResponse {
        InquiryPaymentResponse {
            result: Some(ResultInfo::new(code, status, "")),
            payment_status: payment_status.map(str::to_string),
            payment_result_code: Some("USER_BALANCE_NOT_ENOUGH".into()),
            ..InquiryPaymentResponse::default()
        }
    }

    #[test]
    fn inquiry_answers_map_to_the_schedule_events() {
        let c = |r| classify_inquiry(&Ok(r));
        assert_eq!(
            c(inquiry("S", "SUCCESS", Some("SUCCESS"))),
            InquiryAnswer::Success
        );
        assert_eq!(
            c(inquiry("S", "SUCCESS", Some("PROCESSING"))),
            InquiryAnswer::Processing
        );
        assert_eq!(
            c(inquiry("S", "SUCCESS", Some("CANCELLED"))),
            InquiryAnswer::Cancelled
        );
        assert!(matches!(
            c(inquiry("S", "SUCCESS", Some("FAIL"))),
            InquiryAnswer::Failed { code, .. } if code == "USER_BALANCE_NOT_ENOUGH"
        ));
        assert_eq!(
            c(inquiry("F", "ORDER_NOT_EXIST", None)),
            InquiryAnswer::NotFound
        );
        assert_eq!(
            c(inquiry("U", "UNKNOWN_EXCEPTION", None)),
            InquiryAnswer::Unknown
        );
        assert_eq!(
            classify_inquiry(&Err(CallError::Unknown("timeout".into()))),
            InquiryAnswer::Unknown
        );
    }

    fn issuer(
        status: &str,
        code: &str,
        psp: Option<&str>,
        wallet: Option<&str>,
    ) -> CodeIssuerResponse {
        CodeIssuerResponse {
            result: Some(ResultInfo::new(code, status, "why")),
            psp_name: psp.map(str::to_string),
            wallet_name: wallet.map(str::to_string),
        }
    }

    fn check_issuer(
        answer: Result<CodeIssuerResponse, CallError>,
        expect: IssuerAnswer,
        line: &str,
    ) {
        let code = PaymentCode::parse("281012020000123487654321").unwrap();
        let got = classify_issuer(&answer);
        assert_eq!(got, expect);
        let shown = issuer_line(&got, &code);
        assert!(shown.contains(line), "{shown:?} lacks {line:?}");
        assert!(!shown.contains("2810120200001234"), "{shown}");
    }

    #[test]
    fn issuer_answers_name_the_wallet_refuse_unknown_issuers_and_otherwise_go_on() {
        let known = |psp: &str, wallet: &str| IssuerAnswer::Known {
            psp_name: psp.into(),
            wallet_name: wallet.into(),
        };
        check_issuer(
            Ok(issuer("S", "SUCCESS", Some("SGPay"), Some("sgpay"))),
            known("SGPay", "sgpay"),
            "wallet: SGPay (sgpay)",
        );
        // One name when both are the same.
        check_issuer(
            Ok(issuer("S", "SUCCESS", Some("sgpay"), Some("sgpay"))),
            known("sgpay", "sgpay"),
            "wallet: sgpay",
        );
        check_issuer(
            Ok(issuer("F", "INVALID_CODE", None, None)),
            IssuerAnswer::Refused {
                code: "INVALID_CODE".into(),
                message: "why".into(),
            },
            "wallet: none",
        );
        // Anything else is not a verdict on the code: the charge goes on.
        for (status, code) in [
            ("F", "INVALID_API"),
            ("U", "UNKNOWN_EXCEPTION"),
            ("F", "CLIENT_INVALID"),
        ] {
            check_issuer(
                Ok(issuer(status, code, None, None)),
                IssuerAnswer::Unavailable(format!("{code} why")),
                "wallet: unknown",
            );
        }
        check_issuer(
            Ok(issuer("S", "SUCCESS", None, None)),
            IssuerAnswer::Unavailable("the answer names no wallet".into()),
            "charging anyway",
        );
        for e in [
            CallError::NotDelivered("connection refused".into()),
            CallError::Unknown("timeout".into()),
        ] {
            let why = e.to_string();
            check_issuer(Err(e), IssuerAnswer::Unavailable(why), "wallet: unknown");
        }
    }

    #[test]
    fn printed_lines_mask_the_code_even_when_the_acquirer_does_not() {
        let code = PaymentCode::parse("281012020000123487654321").unwrap();
        let line = refused_line(
            &code,
            "INVALID_CODE",
            "code 281012020000123487654321 is odd",
        );
        assert!(!line.contains("28101202"), "{line}");
        assert!(line.contains("********************4321"), "{line}");
        assert!(line.starts_with("not charged: "), "{line}");
        assert_eq!(line.lines().count(), 1);
        let line = issuer_line(
            &IssuerAnswer::Unavailable("bad 281012020000123487654321".into()),
            &code,
        );
        assert!(!line.contains("28101202"), "{line}");
    }

    #[test]
    fn codes_are_read_from_digits_with_spaces_and_rejected_when_not_a_payment_code() {
        let code = read_code(Some("2810 1202 0000 1234 8765 4321"), None).unwrap();
        assert_eq!(code.expose_digits(), "281012020000123487654321");
        let err = read_code(Some("12345"), None).unwrap_err().to_string();
        assert!(err.contains("--code does not hold a payment code"), "{err}");
    }
}
