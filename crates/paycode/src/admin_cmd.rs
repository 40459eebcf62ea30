//! `paycode admin …`: the operator's commands over a running acquirer's admin API
//! (`/admin/v1/…`): the registry (clients, keys, merchants, wallets), agent tokens, and the risk
//! rules. The URL and token come from the data directory (`demo.json`, `admin-token`) unless
//! `--url` and `--token` name them. A refusal is one line with the server's reason.

use crate::admin_api::AdminApi;
use crate::demo_file::DemoFile;
use anyhow::Context;
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
    /// Who makes the change, for the operator log [default: the USER environment variable].
    #[arg(long = "as", value_name = "NAME", global = true)]
    operator: Option<String>,
    #[command(subcommand)]
    what: AdminCommand,
}

#[derive(Subcommand, Debug)]
enum AdminCommand {
    /// The acquirer's risk rules, dry runs, blocked customers and decisions.
    #[command(subcommand)]
    Risk(RiskCommand),
    #[command(flatten)]
    Registry(RegistryCommand),
}

#[derive(Subcommand, Debug)]
enum RegistryCommand {
    /// What the acquirer sees: clients, merchants, wallets and routes.
    Registry,
    /// The operator log: every admin change, who made it and when (newest first).
    Log {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// API clients (merchants, ISVs, integrators).
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// Key versions of a client.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Add or change a merchant (with its stores) from a JSON file of the admin API's body.
    Merchants {
        #[command(subcommand)]
        what: FileCommand,
    },
    /// Stores of a merchant.
    #[command(subcommand)]
    Stores(StoresCommand),
    /// Add or change a wallet (with its routes) from a JSON file of the admin API's body.
    Wallets {
        #[command(subcommand)]
        what: FileCommand,
    },
    /// Agent-Tokens of system integrators.
    #[command(subcommand)]
    AgentTokens(AgentCommand),
    /// Dashboard users: operators, and merchant users who see their own merchants only.
    #[command(subcommand)]
    Users(UsersCommand),
}

#[derive(Subcommand, Debug)]
enum UsersCommand {
    /// Create a user or replace one of the same name (its password too).
    Add {
        name: String,
        /// `operator` or `merchant`.
        #[arg(long, default_value = "merchant")]
        role: String,
        /// A merchant user's client.
        #[arg(long)]
        client: Option<String>,
        /// A merchant user's one merchant; without it the user sees every merchant of the
        /// client (an ISV or system integrator).
        #[arg(long)]
        merchant: Option<String>,
        /// A file holding the password; without it the password is asked for.
        #[arg(long)]
        password_file: Option<std::path::PathBuf>,
        /// Keep the user but refuse its sign-ins.
        #[arg(long)]
        disabled: bool,
    },
    List,
}

#[derive(Subcommand, Debug)]
enum ClientsCommand {
    /// Register a client, or change its name and notify URL.
    Add {
        client_id: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        notify_url: Option<String>,
    },
    /// Refuse every request of the client until it is activated again.
    Suspend {
        client_id: String,
    },
    Activate {
        client_id: String,
    },
}

#[derive(Subcommand, Debug)]
enum StoresCommand {
    /// Add a store to a merchant, or change its name and MCC.
    Add {
        client_id: String,
        reference_merchant_id: String,
        reference_store_id: String,
        #[arg(long)]
        name: String,
        /// The store's 4-digit merchant category code.
        #[arg(long)]
        mcc: String,
    },
    /// List a merchant's stores.
    List {
        client_id: String,
        reference_merchant_id: String,
    },
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Add a key version (several may be active during a rotation).
    Add {
        client_id: String,
        #[arg(long)]
        version: u32,
        /// A file holding the base64 SPKI public key.
        #[arg(long)]
        public_key: PathBuf,
    },
    /// Retire a key version: requests signed with it are refused.
    Retire {
        client_id: String,
        #[arg(long)]
        version: u32,
        #[arg(long)]
        public_key: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum FileCommand {
    Add { file: PathBuf },
}

#[derive(Subcommand, Debug)]
enum AgentCommand {
    /// Grant an integrator a token for one merchant; prints the token (shown once).
    Issue {
        #[arg(long)]
        integrator: String,
        /// The merchant's client.
        #[arg(long)]
        client: String,
        #[arg(long)]
        merchant: String,
        /// Comma-separated operations, e.g. pay,inquiryPayment,refund.
        #[arg(long)]
        scope: String,
        /// Life in seconds.
        #[arg(long, default_value_t = 86_400)]
        expires_in_s: i64,
    },
    List,
    Revoke {
        token_id: String,
    },
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

const ADMIN_CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// The admin API named by `--url`/`--token`, or else by the data directory's files.
fn api(data_dir: &Path, args: &AdminArgs) -> anyhow::Result<AdminApi> {
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
            .with_context(|| format!("no admin-token in {}: pass --token", data_dir.display()))?,
    };
    let operator = args
        .operator
        .clone()
        .unwrap_or_else(crate::admin_api::default_operator);
    AdminApi::new(&url, &token, &operator, ADMIN_CALL_TIMEOUT)
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

/// Prints an answer: as JSON with `--json`, else `OK` or the pretty body.
fn print_answer(json: bool, answer: &serde_json::Value) -> anyhow::Result<()> {
    if json || answer.get("result").and_then(|r| r.as_str()) != Some("SUCCESS") {
        println!("{}", serde_json::to_string_pretty(answer)?);
    } else {
        println!("OK");
    }
    Ok(())
}

/// A client as the registry lists it (to change one field and keep the others).
async fn registered_client(api: &AdminApi, client_id: &str) -> anyhow::Result<serde_json::Value> {
    let (_, reg) = api
        .call_running(reqwest::Method::GET, "/admin/v1/registry", None)
        .await?;
    reg["clients"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["clientId"] == client_id)
        .cloned()
        .with_context(|| format!("no client {client_id} is registered"))
}

fn read_text(path: &Path, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading the {what} {}", path.display()))
}

async fn run_registry(api: &AdminApi, cmd: &RegistryCommand, json: bool) -> anyhow::Result<()> {
    use reqwest::Method;
    let (_, answer) = match cmd {
        RegistryCommand::Log { limit } => {
            let (_, v) = api
                .call_running(
                    Method::GET,
                    &format!("/admin/v1/operator-log?limit={limit}"),
                    None,
                )
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            for e in v["entries"].as_array().into_iter().flatten() {
                let s = |k: &str| e[k].as_str().unwrap_or("").to_string();
                println!(
                    "{}  {:<12} {:<18} {} {}",
                    s("time"),
                    s("actor"),
                    s("action"),
                    s("target"),
                    s("detail")
                );
            }
            return Ok(());
        }
        RegistryCommand::Registry => {
            let (_, v) = api
                .call_running(Method::GET, "/admin/v1/registry", None)
                .await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            return Ok(());
        }
        RegistryCommand::Stores(StoresCommand::Add {
            client_id,
            reference_merchant_id,
            reference_store_id,
            name,
            mcc,
        }) => {
            let path = format!("/admin/v1/merchants/{client_id}/{reference_merchant_id}/stores");
            let body = serde_json::json!({"referenceStoreId": reference_store_id, "name": name, "mcc": mcc});
            api.call_running(Method::POST, &path, Some(body.to_string()))
                .await?
        }
        RegistryCommand::Stores(StoresCommand::List {
            client_id,
            reference_merchant_id,
        }) => {
            let (_, v) = api
                .call_running(Method::GET, "/admin/v1/registry", None)
                .await?;
            let merchant = v["merchants"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|m| {
                    m["clientId"] == client_id.as_str()
                        && m["referenceMerchantId"] == reference_merchant_id.as_str()
                })
                .with_context(|| {
                    format!("no merchant {reference_merchant_id} of client {client_id}")
                })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&merchant["stores"])?);
            } else {
                for s in merchant["stores"].as_array().into_iter().flatten() {
                    let f = |k: &str| s[k].as_str().unwrap_or("").to_string();
                    println!("{:<20} {}  {}", f("referenceStoreId"), f("mcc"), f("name"));
                }
            }
            return Ok(());
        }
        RegistryCommand::Clients(c) => {
            let body = match c {
                ClientsCommand::Add {
                    client_id,
                    name,
                    notify_url,
                } => {
                    serde_json::json!({"clientId": client_id, "name": name, "notifyUrl": notify_url})
                }
                ClientsCommand::Suspend { client_id } | ClientsCommand::Activate { client_id } => {
                    let current = registered_client(api, client_id).await?;
                    serde_json::json!({"clientId": client_id, "name": current["name"],
                        "notifyUrl": current["notifyUrl"],
                        "active": matches!(c, ClientsCommand::Activate { .. })})
                }
            };
            api.call_running(Method::POST, "/admin/v1/clients", Some(body.to_string()))
                .await?
        }
        RegistryCommand::Keys(k) => {
            let (client_id, version, path, active) = match k {
                KeysCommand::Add {
                    client_id,
                    version,
                    public_key,
                } => (client_id, version, public_key, true),
                KeysCommand::Retire {
                    client_id,
                    version,
                    public_key,
                } => (client_id, version, public_key, false),
            };
            let key = read_text(path, "public key file")?;
            let body = serde_json::json!({"keyVersion": version, "publicKey": key.trim(), "active": active});
            api.call_running(
                Method::POST,
                &format!("/admin/v1/clients/{client_id}/keys"),
                Some(body.to_string()),
            )
            .await?
        }
        RegistryCommand::Merchants {
            what: FileCommand::Add { file },
        } => {
            let body = read_text(file, "merchant file")?;
            api.call_running(Method::POST, "/admin/v1/merchants", Some(body))
                .await?
        }
        RegistryCommand::Wallets {
            what: FileCommand::Add { file },
        } => {
            let body = read_text(file, "wallet file")?;
            api.call_running(Method::POST, "/admin/v1/wallets", Some(body))
                .await?
        }
        RegistryCommand::Users(UsersCommand::List) => {
            let (_, v) = api
                .call_running(Method::GET, "/admin/v1/dashboard-users", None)
                .await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            return Ok(());
        }
        RegistryCommand::Users(UsersCommand::Add {
            name,
            role,
            client,
            merchant,
            password_file,
            disabled,
        }) => {
            let password = match password_file {
                Some(path) => read_text(path, "password file")?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
                None => rpassword::prompt_password(format!("password for {name}: "))?,
            };
            let body = serde_json::json!({"name": name, "password": password,
                "role": role.to_ascii_uppercase(), "clientId": client,
                "referenceMerchantId": merchant, "disabled": disabled});
            api.call_running(
                Method::POST,
                "/admin/v1/dashboard-users",
                Some(body.to_string()),
            )
            .await?
        }
        RegistryCommand::AgentTokens(a) => match a {
            AgentCommand::Issue {
                integrator,
                client,
                merchant,
                scope,
                expires_in_s,
            } => {
                let scope: Vec<&str> = scope.split(',').map(str::trim).collect();
                let body = serde_json::json!({"integratorClientId": integrator, "clientId": client,
                    "referenceMerchantId": merchant, "scope": scope, "expiresInS": expires_in_s});
                let (h, v) = api
                    .call_running(
                        Method::POST,
                        "/admin/v1/agent-tokens",
                        Some(body.to_string()),
                    )
                    .await?;
                if !json {
                    println!(
                        "token {} for {integrator} acting for {client}/{merchant}, until {}",
                        v["tokenId"].as_str().unwrap_or("?"),
                        v["expiresTime"].as_str().unwrap_or("?")
                    );
                    println!("Agent-Token: {}", v["agentToken"].as_str().unwrap_or("?"));
                    println!("(shown once: give it to the integrator now)");
                    return Ok(());
                }
                (h, v)
            }
            AgentCommand::List => {
                let (_, v) = api
                    .call_running(Method::GET, "/admin/v1/agent-tokens", None)
                    .await?;
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            AgentCommand::Revoke { token_id } => {
                api.call_running(
                    Method::DELETE,
                    &format!("/admin/v1/agent-tokens/{token_id}"),
                    None,
                )
                .await?
            }
        },
    };
    print_answer(json, &answer)
}

pub async fn run(data_dir: &Path, args: AdminArgs) -> anyhow::Result<()> {
    let api = api(data_dir, &args)?;
    match &args.what {
        AdminCommand::Risk(cmd) => run_risk(&api, cmd, args.json).await,
        AdminCommand::Registry(cmd) => run_registry(&api, cmd, args.json).await,
    }
}

async fn run_risk(api: &AdminApi, cmd: &RiskCommand, json: bool) -> anyhow::Result<()> {
    use reqwest::Method;
    let (headers, answer) = match cmd {
        RiskCommand::Get => {
            api.call_running(Method::GET, "/admin/v1/risk/rules", None)
                .await?
        }
        RiskCommand::Set { file } => {
            let json = crate::risk_file::rules_json(file)?;
            api.call_running(Method::POST, "/admin/v1/risk/rules", Some(json))
                .await?
        }
        RiskCommand::Try { file, since } => {
            let json = crate::risk_file::rules_json(file)?;
            api.call_running(
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
            api.call_running(
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
            api.call_running(
                Method::DELETE,
                &format!("/admin/v1/risk/blocked-customers/{wallet}/{customer_id}"),
                None,
            )
            .await?
        }
        RiskCommand::Blocked => {
            api.call_running(Method::GET, "/admin/v1/risk/blocked-customers", None)
                .await?
        }
        RiskCommand::Decisions { limit } => {
            api.call_running(
                Method::GET,
                &format!("/admin/v1/risk/decisions?limit={limit}"),
                None,
            )
            .await?
        }
    };
    if json {
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
