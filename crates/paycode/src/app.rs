//! The customer's wallet app (`paycode wallet …`): show the payment code (QR code and Code 128
//! barcode in the terminal, or a PNG), confirm or decline a checkout that needs the password,
//! and see the balance and history.
//!
//! The code works with the wallet unreachable: it is generated on the "phone" from the device
//! material stored at first registration ([`crate::app_device`]). Everything else is a call to
//! the wallet's customer API.

use crate::app_device::{
    CustomerApi, Device, ensure_device, find_user, now_unix_s, register_device, save_device,
    show_stored_code,
};
use crate::demo_file::DemoFile;
use crate::render;
use crate::tools_common::show_amount;
use anyhow::Context;
use paycode_proto::customer::Challenge;
use paycode_wallet::ShownCode;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

const EXIT_OK: u8 = 0;
const EXIT_REFUSED: u8 = 2;

const WALLET_EXIT_HELP: &str = "\
Exit codes:
  0  done (code shown, payment confirmed, …)
  1  usage or other error (wallet unreachable, unknown user, …)
  2  refused (wrong password, no pending checkout, payment not completed)";

#[derive(clap::Args)]
#[command(after_help = WALLET_EXIT_HELP)]
pub struct WalletArgs {
    #[command(subcommand)]
    command: WalletCommand,
}

#[derive(clap::Subcommand)]
enum WalletCommand {
    /// Show the payment code as a QR code and a barcode, refreshed as it changes.
    Code(CodeArgs),
    /// Confirm a pending checkout with the password.
    #[command(after_help = WALLET_EXIT_HELP)]
    Confirm(ConfirmArgs),
    /// Decline a pending checkout.
    #[command(after_help = WALLET_EXIT_HELP)]
    Decline(DeclineArgs),
    /// Show the balance.
    Balance(UserArg),
    /// Show recent payments, refunds and top-ups, newest first.
    History(HistoryArgs),
    /// Register this phone for a user again (new device material).
    Register(RegisterArgs),
}

#[derive(clap::Args)]
struct UserArg {
    /// The wallet user (see demo.json).
    #[arg(long)]
    user: String,
}

#[derive(clap::Args)]
struct CodeArgs {
    #[arg(long)]
    user: String,
    /// Write a scannable image (QR code above a Code 128 barcode, the digits under it) to FILE.
    #[arg(long, value_name = "FILE")]
    png: Option<PathBuf>,
    /// Print only the 24 digits (for scripts).
    #[arg(long)]
    digits: bool,
    /// Draw once and exit instead of refreshing (the default when stdout is not a terminal).
    #[arg(long)]
    once: bool,
    /// Draw without colours (dark modules as blocks, for a light background).
    #[arg(long)]
    no_color: bool,
}

#[derive(clap::Args)]
struct ConfirmArgs {
    #[arg(long)]
    user: String,
    /// Read the password from the first line of stdin instead of asking.
    #[arg(long)]
    password_stdin: bool,
    /// Which checkout (default: the only, or newest, pending one).
    #[arg(long)]
    challenge: Option<String>,
    /// How long to wait for a checkout to appear, in seconds.
    #[arg(long, default_value_t = 30)]
    wait_s: u64,
}

#[derive(clap::Args)]
struct DeclineArgs {
    #[arg(long)]
    user: String,
    #[arg(long)]
    challenge: Option<String>,
    #[arg(long, default_value_t = 30)]
    wait_s: u64,
}

#[derive(clap::Args)]
struct HistoryArgs {
    #[arg(long)]
    user: String,
    /// Most entries to show.
    #[arg(long, default_value_t = 20)]
    limit: usize,
}

#[derive(clap::Args)]
struct RegisterArgs {
    #[arg(long)]
    user: String,
    /// Read the password from stdin instead of demo.json.
    #[arg(long)]
    password_stdin: bool,
}

pub async fn run(data_dir: &Path, args: WalletArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        WalletCommand::Code(a) => code_command(data_dir, a).await,
        WalletCommand::Confirm(a) => confirm_command(data_dir, a).await,
        WalletCommand::Decline(a) => decline_command(data_dir, a).await,
        WalletCommand::Balance(a) => balance_command(data_dir, a).await,
        WalletCommand::History(a) => history_command(data_dir, a).await,
        WalletCommand::Register(a) => register_command(data_dir, a).await,
    }
}

/// The device of `user`; registers on first use. The code needs `demo.json` only then.
async fn device_for(data_dir: &Path, user: &str) -> anyhow::Result<Device> {
    if let Some(m) = crate::app_device::load_device(data_dir, user)? {
        return Device::from_material(m);
    }
    let demo = DemoFile::load(data_dir)?;
    ensure_device(data_dir, &demo, user).await
}

/// The customer API and a device whose token the wallet accepts. A phone whose registration the
/// wallet no longer knows (its store was reset) registers again with the password of
/// `demo.json`, as a person would log in again.
async fn session(
    data_dir: &Path,
    demo: &DemoFile,
    user: &str,
) -> anyhow::Result<(CustomerApi, Device)> {
    let (u, wallet) = find_user(demo, user)?;
    let api = CustomerApi::new(wallet);
    let device = ensure_device(data_dir, demo, user).await?;
    match api.balance(user, device.token()?).await {
        Ok(_) => Ok((api, device)),
        Err(e) if e.code() == Some("ACCESS_DENIED") => {
            eprintln!("the wallet no longer knows this phone; registering it again for {user}");
            let device = register_device(&api, &u.name, &u.password).await?;
            save_device(data_dir, user, &device.material)?;
            Ok((api, device))
        }
        Err(e) => Err(e.into()),
    }
}

/// What the screen shows for one code.
pub fn code_screen(
    user: &str,
    shown: &ShownCode,
    now_s: u64,
    color: bool,
) -> anyhow::Result<String> {
    let digits = shown.digits.as_str();
    let qr = render::terminal_qr(digits, color)?;
    let bar = render::terminal_barcode(digits, color)?;
    Ok(format!(
        "Payment code for {user}\n\n{qr}\n{bar}\n  {}\n\n{}",
        render::group_digits(digits),
        validity_line(shown, now_s)
    ))
}

fn validity_line(shown: &ShownCode, now_s: u64) -> String {
    let left_s = shown.valid_until_s.saturating_sub(now_s);
    format!("  valid for {left_s:>2} s · pays once · every display is a new code")
}

async fn code_command(data_dir: &Path, a: CodeArgs) -> anyhow::Result<ExitCode> {
    let mut device = device_for(data_dir, &a.user).await?;
    let stdout_tty = std::io::stdout().is_terminal();
    let live = !(a.digits || a.png.is_some() || a.once || !stdout_tty);
    if live {
        // A person is looking at the screen and no code is shown yet: when the wallet is
        // reachable, take a fresh pseudonymous slot so codes cannot be linked across sessions.
        // Offline, the stored material keeps working.
        device = rotate_if_online(data_dir, &a.user, device).await;
    }
    let now_s = now_unix_s();
    let shown = show_stored_code(data_dir, &a.user, &mut device, now_s)?;
    if let Some(path) = &a.png {
        render::write_code_png(&shown.digits, path)?;
        if !a.digits {
            eprintln!(
                "wrote the payment code image to {} (valid about a minute, single use)",
                path.display()
            );
        }
    }
    if a.digits {
        println!("{}", shown.digits);
        return Ok(ExitCode::from(EXIT_OK));
    }
    if a.png.is_some() {
        return Ok(ExitCode::from(EXIT_OK));
    }
    let color = !a.no_color && stdout_tty && std::env::var_os("NO_COLOR").is_none();
    if !live {
        println!("{}", code_screen(&a.user, &shown, now_s, color)?);
        return Ok(ExitCode::from(EXIT_OK));
    }
    live_code(data_dir, &a.user, device, shown, color).await
}

async fn rotate_if_online(data_dir: &Path, user: &str, device: Device) -> Device {
    let rotated = async {
        let demo = DemoFile::load(data_dir).ok()?;
        let (_, wallet) = find_user(&demo, user).ok()?;
        let m = CustomerApi::new(wallet)
            .rotate(user, device.token().ok()?)
            .await
            .ok()?;
        save_device(data_dir, user, &m).ok()?;
        Device::from_material(m).ok()
    };
    rotated.await.unwrap_or(device)
}

/// Shows a new code whenever the one on screen has less than [`LIVE_REFRESH_LEFT_S`] of
/// validity left, with its countdown each second, until Ctrl-C. Codes shown earlier stay valid
/// until they expire.
async fn live_code(
    data_dir: &Path,
    user: &str,
    mut device: Device,
    mut shown: ShownCode,
    color: bool,
) -> anyhow::Result<ExitCode> {
    let mut drawn = false;
    loop {
        let now_s = now_unix_s();
        if shown.valid_until_s.saturating_sub(now_s) < LIVE_REFRESH_LEFT_S {
            shown = show_stored_code(data_dir, user, &mut device, now_s)?;
            drawn = false;
        }
        {
            let mut out = std::io::stdout().lock();
            if drawn {
                write!(out, "\r\x1b[2K{}", validity_line(&shown, now_s))?;
            } else {
                write!(
                    out,
                    "\x1b[H\x1b[2J{}",
                    code_screen(user, &shown, now_s, color)?
                )?;
                drawn = true;
            }
            out.flush()?;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = tokio::signal::ctrl_c() => {
                println!();
                return Ok(ExitCode::from(EXIT_OK));
            }
        }
    }
}

/// The live screen replaces a code when it has less validity left than this.
const LIVE_REFRESH_LEFT_S: u64 = 30;

/// Waits up to `wait_s` for a pending checkout (the POS may still be sending it).
async fn pending_challenge(
    api: &CustomerApi,
    user: &str,
    token: &str,
    wanted: Option<&str>,
    wait_s: u64,
) -> anyhow::Result<Option<Challenge>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait_s);
    let mut told = false;
    loop {
        let list = api.challenges(user, token).await?;
        let found = match wanted {
            Some(id) => list.challenges.into_iter().find(|c| c.challenge_id == id),
            None => list
                .challenges
                .into_iter()
                .max_by(|a, b| a.create_time.cmp(&b.create_time)),
        };
        if found.is_some() {
            return Ok(found);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
        if !told {
            eprintln!("waiting for a checkout that needs your password (up to {wait_s} s) …");
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The checkout as the phone shows it.
pub fn describe_challenge(c: &Challenge) -> String {
    let mut s = format!("Pay {}", c.merchant_name);
    if let Some(store) = &c.store_name {
        s.push_str(&format!(" ({store})"));
    }
    s.push('\n');
    s.push_str(&format!(
        "  amount        {}\n",
        show_amount(&c.payment_amount)
    ));
    if c.pay_to_amount != c.payment_amount {
        s.push_str(&format!(
            "  you pay       {}",
            show_amount(&c.pay_to_amount)
        ));
        if let Some(rate) = &c.quote_price {
            s.push_str(&format!(
                "  (1 {} = {rate} {})",
                c.payment_amount.currency, c.pay_to_amount.currency
            ));
        }
        s.push('\n');
    } else {
        s.push_str(&format!(
            "  you pay       {}\n",
            show_amount(&c.pay_to_amount)
        ));
    }
    s.push_str(&format!("  why           {}\n", c.reason));
    s.push_str(&format!("  expires       {}\n", c.expiry_time));
    s
}

fn read_stdin_line() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from stdin")?;
    let p = line.trim_end_matches(['\n', '\r']).to_string();
    anyhow::ensure!(!p.is_empty(), "no password on stdin");
    Ok(p)
}

async fn read_password(from_stdin: bool, prompt: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        if from_stdin {
            read_stdin_line()
        } else {
            rpassword::prompt_password(prompt)
                .context("cannot read the password (no terminal? use --password-stdin)")
        }
    })
    .await
    .context("the password prompt stopped")?
}

async fn confirm_command(data_dir: &Path, a: ConfirmArgs) -> anyhow::Result<ExitCode> {
    let demo = DemoFile::load(data_dir)?;
    let (api, device) = session(data_dir, &demo, &a.user).await?;
    let token = device.token()?;
    let Some(c) = pending_challenge(&api, &a.user, token, a.challenge.as_deref(), a.wait_s).await?
    else {
        eprintln!("no checkout is waiting for {}'s password", a.user);
        return Ok(ExitCode::from(EXIT_REFUSED));
    };
    eprint!("{}", describe_challenge(&c));
    loop {
        let password =
            read_password(a.password_stdin, format!("Password for {}: ", a.user)).await?;
        let outcome = api
            .confirm(&a.user, token, &c.challenge_id, &password)
            .await?;
        if outcome.result.is_success() {
            let status = outcome.payment_status.as_deref().unwrap_or("SUCCESS");
            if status == "SUCCESS" {
                println!(
                    "Paid {} to {}.",
                    show_amount(&c.pay_to_amount),
                    c.merchant_name
                );
                return Ok(ExitCode::from(EXIT_OK));
            }
            println!("Confirmed; the payment is {status}.");
            return Ok(ExitCode::from(if status == "PROCESSING" {
                EXIT_OK
            } else {
                EXIT_REFUSED
            }));
        }
        let r = &outcome.result;
        match outcome.remaining_attempts {
            Some(n) if n > 0 && r.result_code == "USER_PAYMENT_VERIFICATION_FAILED" => {
                eprintln!("wrong password; {n} attempt(s) left");
                if a.password_stdin {
                    return Ok(ExitCode::from(EXIT_REFUSED));
                }
            }
            _ => {
                eprintln!(
                    "the payment was not confirmed: {} ({})",
                    r.result_code, r.result_message
                );
                return Ok(ExitCode::from(EXIT_REFUSED));
            }
        }
    }
}

async fn decline_command(data_dir: &Path, a: DeclineArgs) -> anyhow::Result<ExitCode> {
    let demo = DemoFile::load(data_dir)?;
    let (api, device) = session(data_dir, &demo, &a.user).await?;
    let token = device.token()?;
    let Some(c) = pending_challenge(&api, &a.user, token, a.challenge.as_deref(), a.wait_s).await?
    else {
        eprintln!("no checkout is waiting for {}", a.user);
        return Ok(ExitCode::from(EXIT_REFUSED));
    };
    eprint!("{}", describe_challenge(&c));
    let outcome = api.decline(&a.user, token, &c.challenge_id).await?;
    if outcome.result.is_success() {
        println!(
            "Declined: {} will not be charged.",
            show_amount(&c.pay_to_amount)
        );
        Ok(ExitCode::from(EXIT_OK))
    } else {
        eprintln!(
            "the decline was refused: {} ({})",
            outcome.result.result_code, outcome.result.result_message
        );
        Ok(ExitCode::from(EXIT_REFUSED))
    }
}

async fn balance_command(data_dir: &Path, a: UserArg) -> anyhow::Result<ExitCode> {
    let demo = DemoFile::load(data_dir)?;
    let (_, wallet) = find_user(&demo, &a.user)?;
    let (api, device) = session(data_dir, &demo, &a.user).await?;
    let b = api.balance(&a.user, device.token()?).await?;
    let amount = b.balance.context("the wallet's answer has no balance")?;
    let status = b.user_status.map(|s| format!(" ({s})")).unwrap_or_default();
    println!(
        "{}: {} in {}{status}",
        a.user,
        show_amount(&amount),
        wallet.name
    );
    Ok(ExitCode::from(EXIT_OK))
}

async fn history_command(data_dir: &Path, a: HistoryArgs) -> anyhow::Result<ExitCode> {
    let demo = DemoFile::load(data_dir)?;
    let (api, device) = session(data_dir, &demo, &a.user).await?;
    let h = api.history(&a.user, device.token()?).await?;
    if h.items.is_empty() {
        println!("no payments yet");
    }
    for item in h.items.iter().take(a.limit) {
        println!(
            "{:<26} {:<9} {:>14} {:<10} {}",
            item.time,
            item.kind,
            show_amount(&item.amount),
            item.status,
            item.merchant_name.as_deref().unwrap_or("")
        );
    }
    Ok(ExitCode::from(EXIT_OK))
}

async fn register_command(data_dir: &Path, a: RegisterArgs) -> anyhow::Result<ExitCode> {
    let demo = DemoFile::load(data_dir)?;
    let (u, wallet) = find_user(&demo, &a.user)?;
    let password = if a.password_stdin {
        read_password(true, String::new()).await?
    } else {
        u.password.clone()
    };
    let device = register_device(&CustomerApi::new(wallet), &u.name, &password).await?;
    save_device(data_dir, &a.user, &device.material)?;
    println!(
        "registered this phone for {} with wallet {}; codes now work offline",
        a.user, wallet.name
    );
    Ok(ExitCode::from(EXIT_OK))
}

#[cfg(test)]
mod tests {
    use super::*;
    use paycode_proto::Amount;

    #[test]
    fn checkout_shows_merchant_store_and_both_amounts() {
        let c = Challenge {
            challenge_id: "C1".into(),
            payment_request_id: "P1".into(),
            merchant_name: "Kopi Corner".into(),
            store_name: Some("Orchard".into()),
            payment_amount: Amount::new("SGD", 15000),
            pay_to_amount: Amount::new("CNY", 80550),
            quote_price: Some("5.37".into()),
            create_time: "t0".into(),
            expiry_time: "t1".into(),
            reason: "over the password-free limit".into(),
        };
        let text = describe_challenge(&c);
        for part in [
            "Kopi Corner (Orchard)",
            "SGD 150.00",
            "CNY 805.50",
            "1 SGD = 5.37 CNY",
            "password-free",
        ] {
            assert!(text.contains(part), "missing {part:?} in {text}");
        }
    }

    #[test]
    fn code_screen_has_the_digits_grouped_and_a_countdown() {
        let shown = paycode_wallet::ShownCode {
            digits: "281012020000123487654321".into(),
            step: 100,
            seq: 0,
            valid_until_s: 3_090,
        };
        let s = code_screen("alice", &shown, 3_078, false).unwrap();
        assert!(s.contains("2810 1202 0000 1234 8765 4321"));
        assert!(s.contains("valid for 12 s"), "{s}");
        let rows = render::terminal_qr_modules(s.split("\n\n").nth(1).unwrap());
        let img = render::modules_to_image(&rows, 6, 4);
        assert_eq!(
            render::decode_image(image::DynamicImage::ImageLuma8(img)).as_deref(),
            Some("281012020000123487654321")
        );
    }
}
