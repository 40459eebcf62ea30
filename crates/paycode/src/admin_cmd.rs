//! `paycode admin risk …`: the operator's risk commands over a running acquirer's admin API
//! (`/admin/v1/risk/…`). The URL and token come from the data directory (`demo.json`,
//! `admin-token`) unless `--url` and `--token` name them.

use crate::demo_file::DemoFile;
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Args, Debug)]
pub struct AdminArgs {
    /// The acquirer's base URL [default: from demo.json in the data directory].
    #[arg(long, env = "PAYCODE_ADMIN_URL", global = true)]
    url: Option<String>,
    /// The operator token [default: admin-token in the data directory].
    #[arg(
        long,
        env = "PAYCODE_ADMIN_TOKEN",
        global = true,
        hide_env_values = true
    )]
    token: Option<String>,
    /// Print the JSON answer as it came.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    what: AdminCommand,
}

#[derive(Subcommand, Debug)]
enum AdminCommand {
    /// The acquirer's risk rules, dry runs, blocked customers and decisions.
    #[command(subcommand)]
    Risk(RiskCommand),
}

#[derive(Subcommand, Debug)]
enum RiskCommand {
    /// Print the rules in force and their version.
    Get,
    /// Replace the rules with those of a TOML or JSON file (validated whole first).
    Set { file: PathBuf },
    /// Evaluate the rules of a file against the stored payments of a period; changes nothing.
    Try {
        file: PathBuf,
        /// How far back: 30m, 24h, 7d.
        #[arg(long, default_value = "7d")]
        since: String,
    },
    /// Block a wallet customer (the BLOCKED_CUSTOMER rule).
    Block {
        wallet: String,
        customer_id: String,
        #[arg(long)]
        reason: String,
    },
    /// Lift a block.
    Unblock { wallet: String, customer_id: String },
    /// List the blocked customers.
    Blocked,
    /// The latest decisions in which a rule fired, with hits per rule.
    Decisions {
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

const ADMIN_CALL_TIMEOUT_S: u64 = 120;

struct Api {
    url: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    fn new(data_dir: &Path, args: &AdminArgs) -> anyhow::Result<Api> {
        let url = match &args.url {
            Some(u) => u.clone(),
            None => DemoFile::load(data_dir)
                .map(|d| d.acquirer_url)
                .with_context(|| {
                    format!(
                        "no demo.json in {} to find the acquirer: pass --url",
                        data_dir.display()
                    )
                })?,
        };
        let token = match &args.token {
            Some(t) => t.clone(),
            None => std::fs::read_to_string(data_dir.join("admin-token"))
                .with_context(|| format!("no admin-token in {}: pass --token", data_dir.display()))?
                .trim()
                .to_string(),
        };
        Ok(Api {
            url: url.trim_end_matches('/').to_string(),
            token,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(ADMIN_CALL_TIMEOUT_S))
                .build()
                .context("building the HTTP client")?,
        })
    }

    /// Calls the admin API; a refusal becomes one line with the server's message.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<String>,
    ) -> anyhow::Result<(reqwest::header::HeaderMap, serde_json::Value)> {
        let url = format!("{}{path}", self.url);
        let mut req = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().await.with_context(|| {
            format!("cannot reach the acquirer at {url} (is `paycode serve` running?)")
        })?;
        let (status, headers) = (resp.status(), resp.headers().clone());
        let text = resp
            .text()
            .await
            .with_context(|| format!("reading {url}"))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{url} answered HTTP {status}: {}", text.trim()))?;
        if !status.is_success() {
            let why = value["message"].as_str().unwrap_or(text.trim());
            bail!("refused: {why}");
        }
        Ok((headers, value))
    }
}

fn print_report(r: &serde_json::Value) {
    println!(
        "{} payments: would allow {}, challenge {}, reject {}",
        r["payments"], r["wouldAllow"], r["wouldChallenge"], r["wouldReject"]
    );
    println!(
        "{:<24} {:<24} {:>8} {:>10} {:>8} {:>6} {:>9}",
        "rule", "kind", "mode", "challenge", "reject", "paid", "refunded"
    );
    for rule in r["rules"].as_array().into_iter().flatten() {
        let n = |k: &str| rule[k].as_u64().unwrap_or(0).to_string();
        let (challenge, reject) = if rule["evaluable"] == false {
            ("n/a".to_string(), "n/a".to_string())
        } else {
            (n("wouldChallenge"), n("wouldReject"))
        };
        println!(
            "{:<24} {:<24} {:>8} {:>10} {:>8} {:>6} {:>9}",
            rule["ruleId"].as_str().unwrap_or(""),
            rule["kind"].as_str().unwrap_or(""),
            rule["mode"].as_str().unwrap_or(""),
            challenge,
            reject,
            n("ofWhichPaid"),
            n("ofWhichRefunded")
        );
    }
}

pub async fn run(data_dir: &Path, args: AdminArgs) -> anyhow::Result<()> {
    let api = Api::new(data_dir, &args)?;
    let AdminCommand::Risk(cmd) = &args.what;
    use reqwest::Method;
    let (headers, answer) = match cmd {
        RiskCommand::Get => api.call(Method::GET, "/admin/v1/risk/rules", None).await?,
        RiskCommand::Set { file } => {
            let json = crate::risk_file::rules_json(file)?;
            api.call(Method::POST, "/admin/v1/risk/rules", Some(json))
                .await?
        }
        RiskCommand::Try { file, since } => {
            let json = crate::risk_file::rules_json(file)?;
            api.call(
                Method::POST,
                &format!("/admin/v1/risk/try?since={since}"),
                Some(json),
            )
            .await?
        }
        RiskCommand::Block {
            wallet,
            customer_id,
            reason,
        } => {
            let body =
                serde_json::json!({"wallet": wallet, "customerId": customer_id, "reason": reason});
            api.call(
                Method::POST,
                "/admin/v1/risk/blocked-customers",
                Some(body.to_string()),
            )
            .await?
        }
        RiskCommand::Unblock {
            wallet,
            customer_id,
        } => {
            api.call(
                Method::DELETE,
                &format!("/admin/v1/risk/blocked-customers/{wallet}/{customer_id}"),
                None,
            )
            .await?
        }
        RiskCommand::Blocked => {
            api.call(Method::GET, "/admin/v1/risk/blocked-customers", None)
                .await?
        }
        RiskCommand::Decisions { limit } => {
            api.call(
                Method::GET,
                &format!("/admin/v1/risk/decisions?limit={limit}"),
                None,
            )
            .await?
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    match cmd {
        RiskCommand::Get => {
            let version = headers
                .get("rules-version")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?");
            println!("rule set version {version}");
            println!("{}", serde_json::to_string_pretty(&answer)?);
        }
        RiskCommand::Set { file } => {
            println!(
                "rules of {} in force: version {}",
                file.display(),
                answer["version"]
            );
        }
        RiskCommand::Try { .. } => print_report(&answer),
        RiskCommand::Block { .. } | RiskCommand::Unblock { .. } => println!("OK"),
        RiskCommand::Blocked | RiskCommand::Decisions { .. } => {
            println!("{}", serde_json::to_string_pretty(&answer)?)
        }
    }
    Ok(())
}
