//! `paycode bench-verify FILE`: checks what a `paycode bench --record FILE` run was told
//! against what the acquirer's store now says, by a signed `inquiryPayment` of every payment
//! sent. Made for crash loops: kill the server under load, restart it, and prove that every
//! payment acknowledged as paid is still paid, that none answered as failed was later paid,
//! and how much was paid in all (to compare with the wallet's debit of the bench user).

use crate::demo_file::DemoFile;
use anyhow::{Context, bail};
use futures_util::StreamExt;
use paycode_http::{SignedClient, Signer};
use paycode_sign::{PrivateKey, PublicKey};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The file `paycode bench --record` wrote (several may be given).
    #[arg(required = true)]
    records: Vec<PathBuf>,
    /// Acquirer base URL; default: the one in demo.json.
    #[arg(long = "acquirer-url", value_name = "URL")]
    acquirer_url: Option<String>,
    /// Inquiries in flight at once.
    #[arg(long, default_value_t = 16)]
    clients: usize,
}

/// One payment of a record: its request id and the status the bench was answered.
struct Sent {
    request_id: String,
    answered: char,
}

fn read_record(path: &Path) -> anyhow::Result<(String, i64, Vec<Sent>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let rest = header
        .strip_prefix("# paycode bench record: user ")
        .with_context(|| format!("{}: not a paycode bench record", path.display()))?;
    let mut words = rest.split_whitespace();
    let (user, amount) = match (words.next(), words.next(), words.next()) {
        (Some(user), Some("amount"), Some(minor)) => (user.to_string(), minor.parse::<i64>()?),
        _ => bail!("{}: the header names no user and amount", path.display()),
    };
    let mut sent = Vec::new();
    for (n, line) in lines.enumerate() {
        let mut f = line.split(' ');
        match (f.next(), f.next().and_then(|s| s.chars().next())) {
            (Some(id), Some(answered)) if !id.is_empty() => sent.push(Sent {
                request_id: id.to_string(),
                answered,
            }),
            _ => bail!(
                "{} line {}: expected REQUEST_ID STATUS CODE",
                path.display(),
                n + 2
            ),
        }
    }
    Ok((user, amount, sent))
}

pub async fn run(data_dir: &Path, args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let demo = DemoFile::load(data_dir)?;
    let client = SignedClient::new(
        &demo.client_id,
        Signer::new(PrivateKey::parse(&demo.merchant_private_key)?, 1),
        Some(PublicKey::parse(&demo.acquirer_public_key)?),
        Duration::from_secs(30),
    );
    let base = args
        .acquirer_url
        .clone()
        .unwrap_or_else(|| demo.acquirer_url.clone());
    let url = format!(
        "{}/ams/api/v1/payments/inquiryPayment",
        base.trim_end_matches('/')
    );
    let mut failed = false;
    for path in &args.records {
        let (user, amount, sent) = read_record(path)?;
        let statuses: Vec<(char, String)> = futures_util::stream::iter(sent.iter())
            .map(|s| {
                let (client, url) = (client.clone(), url.clone());
                async move {
                    let body = json!({ "paymentRequestId": s.request_id });
                    let status = match client.post::<Value, Value>(&url, &body).await {
                        Ok(v) if v["result"]["resultCode"] == "SUCCESS" => v["paymentStatus"]
                            .as_str()
                            .unwrap_or("NO_STATUS")
                            .to_string(),
                        Ok(v) => v["result"]["resultCode"]
                            .as_str()
                            .unwrap_or("NO_RESULT")
                            .to_string(),
                        Err(e) => bail!("inquiring {}: {e}", s.request_id),
                    };
                    Ok((s.answered, status))
                }
            })
            .buffered(args.clients.max(1))
            .collect::<Vec<anyhow::Result<_>>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<_>>()?;
        let mut finals: BTreeMap<&str, usize> = BTreeMap::new();
        let (mut acked, mut lost, mut answered_failed, mut failed_then_paid) = (0, 0, 0, 0);
        for (s, (answered, status)) in sent.iter().zip(&statuses) {
            *finals.entry(status.as_str()).or_default() += 1;
            match answered {
                'S' => {
                    acked += 1;
                    if status != "SUCCESS" {
                        lost += 1;
                        println!("LOST {} acknowledged paid, now {status}", s.request_id);
                    }
                }
                'F' => {
                    answered_failed += 1;
                    if status == "SUCCESS" {
                        failed_then_paid += 1;
                        println!("PAID AFTER F {} answered failed, now SUCCESS", s.request_id);
                    }
                }
                _ => {}
            }
        }
        let paid = finals.get("SUCCESS").copied().unwrap_or(0);
        println!(
            "{}: {} payment(s) sent by {user}; {acked} acknowledged paid, {lost} lost; \
             {answered_failed} answered failed, {failed_then_paid} of them later paid",
            path.display(),
            sent.len()
        );
        let finals: Vec<String> = finals.iter().map(|(k, n)| format!("{k} {n}")).collect();
        println!("  now: {}", finals.join(", "));
        println!(
            "  paid in all: {paid} x {amount} = {} minor units",
            paid as i64 * amount
        );
        failed |= lost > 0 || failed_then_paid > 0;
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
