//! `paycode serve`: the acquirer and the demo wallets, each on its own port, talking real signed
//! HTTP to each other, with their stores in the data directory.
//!
//! With no `--config` it runs in demo mode: keys are created once under `<data-dir>/keys/`, the
//! demo merchant, wallets, routes and users are seeded (idempotently) on every start, and
//! `<data-dir>/demo.json` is written once every listener is bound, so tools and tests can wait
//! for that file. `--role acquirer` and `--role wallet --wallet NAME` run the parts apart (the
//! wallets then listen on `--wallet-port-base` + their index).

use crate::demo_file::{DemoDashboard, DemoFile, DemoUser, DemoWallet};
use anyhow::{Context, bail};
use paycode_acquirer::registry::{self, NewClient, NewMerchant, NewWallet};
use paycode_acquirer::{Acquirer, AcquirerConfig, Limits};
use paycode_core::Currency;
use paycode_http::Signer;
use paycode_http::server::{ServeOptions, ServerLimits};
use paycode_sign::PrivateKey;
use paycode_wallet::demo::{DemoWalletSpec, demo_wallets};
use paycode_wallet::{Wallet, WalletConfig};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use crate::config_schema::ACQUIRER_CLIENT_ID;
pub const DEMO_CLIENT_ID: &str = "SANDBOX_PAYCODE_DEMO";
pub const DEMO_MERCHANT_ID: &str = "M-KOPI-001";
pub const DEMO_MERCHANT_NAME: &str = "Kopi & Co";
pub const DEMO_SECOND_MERCHANT_ID: &str = "M-KOPI-002";
pub const DEMO_STORE_ID: &str = "S-RAFFLES-01";
pub const DEMO_STORE_NAME: &str = "Kopi & Co Raffles Place";
pub const DEMO_MCC: &str = "5814";
/// The demo merchant client's dashboard user (its password is kept in the data directory).
pub const DEMO_DASHBOARD_USER: &str = "kopi";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// The acquirer and every demo wallet in one process.
    All,
    Acquirer,
    Wallet,
}

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address of the acquirer's HTTP listener (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080", env = "PAYCODE_LISTEN")]
    listen: String,
    /// Which part to run.
    #[arg(long, value_enum, default_value = "all")]
    role: Role,
    /// The wallet to run with `--role wallet`.
    #[arg(long)]
    wallet: Option<String>,
    /// Wallet N listens on this port + N (0: free ports, only with `--role all`).
    #[arg(long, default_value_t = 8081)]
    wallet_port_base: u16,
    /// Base URL at which wallets reach the acquirer (default: from --listen).
    #[arg(long)]
    public_url: Option<String>,
    /// Serve the acquirer over HTTPS with this PEM certificate chain.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Run only what this TOML file configures (no demo data); see `config_file`.
    #[arg(long, env = "PAYCODE_CONFIG")]
    config: Option<PathBuf>,
    /// Load the acquirer's risk rules from this TOML or JSON file at start (replacing the
    /// stored ones; see `risk_file`).
    #[arg(long, env = "PAYCODE_RISK_RULES")]
    risk_rules: Option<PathBuf>,
    /// How long (seconds) to let in-flight requests finish on shutdown.
    #[arg(long, default_value_t = 10)]
    shutdown_grace_s: u64,
    #[command(flatten)]
    pub http: HttpArgs,
}

/// Connection bounds of every listener (see `paycode_http::server`); each overrides the
/// config file's `[http]` section, which overrides the default.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct HttpArgs {
    /// Time (ms) a client has to send a request's line and headers [default: 10000].
    #[arg(long, env = "PAYCODE_HTTP_HEADER_READ_TIMEOUT_MS")]
    pub http_header_read_timeout_ms: Option<u64>,
    /// Time (ms) a keep-alive connection may stay idle between requests [default: 60000].
    #[arg(long, env = "PAYCODE_HTTP_IDLE_TIMEOUT_MS")]
    pub http_idle_timeout_ms: Option<u64>,
    /// Time (ms) a client has to send a request's body once its headers are in [default: 10000].
    #[arg(long, env = "PAYCODE_HTTP_BODY_READ_TIMEOUT_MS")]
    pub http_body_read_timeout_ms: Option<u64>,
    /// Connections open at once per listener; more are closed at once [default: 4096].
    #[arg(long, env = "PAYCODE_HTTP_CONNECTIONS_MAX")]
    pub http_connections_max: Option<usize>,
    /// Largest header block answered normally; larger ones get PARAM_ILLEGAL [default: 16384].
    #[arg(long, env = "PAYCODE_HTTP_HEADER_MAX_BYTES")]
    pub http_header_max_bytes: Option<usize>,
    /// Largest request head read at all; larger ones get HTTP 431 and are closed [default: 32768].
    #[arg(long, env = "PAYCODE_HTTP_HEADER_HARD_MAX_BYTES")]
    pub http_header_hard_max_bytes: Option<usize>,
}

impl HttpArgs {
    /// `base` with these overrides, validated.
    pub(crate) fn apply(&self, base: ServerLimits) -> anyhow::Result<ServerLimits> {
        let mut l = base;
        macro_rules! set {
            ($($flag:ident => $field:ident),*) => { $( if let Some(v) = self.$flag { l.$field = v; } )* };
        }
        set!(
            http_header_read_timeout_ms => header_read_timeout_ms,
            http_idle_timeout_ms => idle_timeout_ms,
            http_body_read_timeout_ms => body_read_timeout_ms,
            http_connections_max => connections_max,
            http_header_max_bytes => header_max_bytes,
            http_header_hard_max_bytes => header_hard_max_bytes
        );
        l.validate()
            .map_err(|e| anyhow::anyhow!("HTTP connection bounds: {e}"))?;
        Ok(l)
    }
}

/// Loads `<data-dir>/keys/<name>.key` (bare base64 PKCS#8) or creates it (mode 0600).
pub fn load_or_create_key(data_dir: &Path, name: &str) -> anyhow::Result<PrivateKey> {
    let dir = data_dir.join("keys");
    let path = dir.join(format!("{name}.key"));
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading key {}", path.display()))?;
        return PrivateKey::parse(&text)
            .with_context(|| format!("key {} is not valid", path.display()));
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let key = PrivateKey::generate().context("generating an RSA key")?;
    write_private(&path, &key.to_pkcs8_base64())?;
    Ok(key)
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn admin_token(data_dir: &Path) -> anyhow::Result<String> {
    data_dir_secret(data_dir, "admin-token")
}

/// A random secret kept in `<data-dir>/<name>` (created on first use, readable by the owner).
fn data_dir_secret(data_dir: &Path, name: &str) -> anyhow::Result<String> {
    let path = data_dir.join(name);
    if let Ok(t) = std::fs::read_to_string(&path) {
        return Ok(t.trim().to_string());
    }
    let mut b = [0u8; 24];
    aws_lc_rs::rand::fill(&mut b)
        .map_err(|_| anyhow::anyhow!("the system random source failed"))?;
    let token: String = b.iter().map(|x| format!("{x:02x}")).collect();
    write_private(&path, &token)?;
    Ok(token)
}

async fn bind(addr: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} (is another paycode already running? use --listen)")
    })
}

struct RunningWallet {
    spec: DemoWalletSpec,
    url: String,
    wallet: Wallet,
    listener: TcpListener,
}

async fn start_wallets(
    data_dir: &Path,
    database_url: Option<&str>,
    specs: Vec<DemoWalletSpec>,
    port_of: impl Fn(usize, &str) -> Option<String>,
    acquirer_public_key: &paycode_sign::PublicKey,
    acquirer_url: Option<&str>,
) -> anyhow::Result<Vec<RunningWallet>> {
    let mut out = Vec::new();
    for (idx, spec) in specs.into_iter().enumerate() {
        let Some(addr) = port_of(idx, spec.name) else {
            continue;
        };
        let listener = bind(&addr).await?;
        let local = listener.local_addr()?;
        let key = load_or_create_key(data_dir, &format!("wallet-{}", spec.name))?;
        let currency = Currency::parse(spec.currency).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut config = WalletConfig::new(
            spec.name,
            spec.cii,
            currency,
            data_dir.join(format!("wallet-{}.db", spec.name)),
            spec.name,
            Signer::new(key, 1),
            ACQUIRER_CLIENT_ID,
            acquirer_public_key.clone(),
        );
        config.postgres = database_url.map(|url| wallet_pg_target(url, spec.name));
        // The demo's operator token guards the wallets' operator API too.
        config.admin_token = Some(admin_token(data_dir)?);
        config.acquirer_url = acquirer_url.map(str::to_string);
        wallet_config_from_env(&mut config)?;
        let wallet = tokio::task::spawn_blocking(move || Wallet::open(config))
            .await
            .context("opening a wallet")??;
        for u in &spec.users {
            wallet
                .create_user(u.user.clone())
                .await
                .with_context(|| format!("seeding user {} of {}", u.user.name, spec.name))?;
        }
        out.push(RunningWallet {
            url: format!("http://{local}"),
            spec,
            wallet,
            listener,
        });
    }
    Ok(out)
}

async fn seed_acquirer(
    acq: &Acquirer,
    merchant_key: &PrivateKey,
    wallets: &[(DemoWalletSpec, String, paycode_sign::PublicKey)],
) -> anyhow::Result<()> {
    let merchant_public = merchant_key.public_key();
    let wallets: Vec<_> = wallets.to_vec();
    let now = acq.clock().now_ms();
    acq.db()
        .write(move |c| {
            registry::upsert_client(
                c,
                &NewClient {
                    client_id: DEMO_CLIENT_ID,
                    name: DEMO_MERCHANT_NAME,
                    notify_url: None,
                },
                now,
            )?;
            registry::upsert_client_key(c, DEMO_CLIENT_ID, 1, &merchant_public, true)?;
            registry::upsert_merchant(
                c,
                &NewMerchant {
                    client_id: DEMO_CLIENT_ID,
                    reference_merchant_id: DEMO_MERCHANT_ID,
                    name: DEMO_MERCHANT_NAME,
                    mcc: DEMO_MCC,
                    currencies: &["SGD".to_string(), "USD".to_string(), "JPY".to_string()],
                    settlement_currency: "SGD",
                    max_amount_minor: Some(1_000_000),
                    notify_url: None,
                    active: true,
                    fee_bps: 180,
                    time_zone: "Asia/Singapore",
                    cutoff_minutes: 0,
                },
            )?;
            registry::upsert_store(
                c,
                DEMO_CLIENT_ID,
                DEMO_MERCHANT_ID,
                &registry::Store {
                    reference_store_id: DEMO_STORE_ID.into(),
                    name: DEMO_STORE_NAME.into(),
                    mcc: DEMO_MCC.into(),
                },
            )?;
            // The same client also acts for a second shop (system-integrator style) that sells
            // in JPY and USD and is settled in USD, so settlement has two currencies.
            registry::upsert_merchant(
                c,
                &NewMerchant {
                    client_id: DEMO_CLIENT_ID,
                    reference_merchant_id: DEMO_SECOND_MERCHANT_ID,
                    name: "Kopi & Co Ginza",
                    mcc: DEMO_MCC,
                    currencies: &["JPY".to_string(), "USD".to_string()],
                    settlement_currency: "USD",
                    max_amount_minor: None,
                    notify_url: None,
                    active: true,
                    fee_bps: 200,
                    time_zone: "Asia/Tokyo",
                    cutoff_minutes: 0,
                },
            )?;
            registry::upsert_store(
                c,
                DEMO_CLIENT_ID,
                DEMO_SECOND_MERCHANT_ID,
                &registry::Store {
                    reference_store_id: "S-GINZA-01".into(),
                    name: "Kopi & Co Ginza".into(),
                    mcc: DEMO_MCC.into(),
                },
            )?;
            for (spec, url, key) in &wallets {
                registry::upsert_wallet(
                    c,
                    &NewWallet {
                        name: spec.name,
                        psp_name: spec.name,
                        base_url: url,
                        public_key: key,
                        currencies: &[spec.currency.to_string()],
                        enabled: true,
                    },
                )?;
                registry::upsert_route(c, "CII", spec.cii, spec.name, 100)?;
            }
            Ok::<_, paycode_acquirer::ApiError>(())
        })
        .await
        .map_err(|e| anyhow::anyhow!("seeding the acquirer: {}", e.message))?;
    acq.registry()
        .reload(acq.db())
        .await
        .context("reloading reference data")?;
    if acq
        .risk_rules_json()
        .await
        .map_err(|e| anyhow::anyhow!("reading risk rules: {}", e.message))?
        .0
        == "[]"
    {
        acq.set_risk_rules(DEMO_RISK_RULES.to_string())
            .await
            .map_err(|e| anyhow::anyhow!("seeding risk rules: {}", e.message))?;
    }
    if acq.rates().mids().next().is_none() {
        acq.set_rate_file(demo_rate_file()?)
            .await
            .map_err(|e| anyhow::anyhow!("seeding exchange rates: {}", e.message))?;
    }
    Ok(())
}

/// The demo rate table: the European Central Bank's reference rates of one day, with a 50 bps
/// spread each way.
fn demo_rate_file() -> anyhow::Result<String> {
    let ecb = paycode_core::ecb::parse(DEMO_ECB_XML)
        .map_err(|e| anyhow::anyhow!("demo ECB rates: {e}"))?;
    let mut table = paycode_core::fx::RateTable::new();
    ecb.apply_to(&mut table)
        .map_err(|e| anyhow::anyhow!("demo ECB rates: {e}"))?;
    Ok(format!(
        "# Demo rates: ECB reference rates of {}\nspread default 50 50\n{}",
        ecb.date(),
        table.to_rate_file()
    ))
}

/// Replaces the acquirer's risk rules with those of a rules file.
pub async fn load_risk_rules(acq: &Acquirer, path: &std::path::Path) -> anyhow::Result<()> {
    let json = crate::risk_file::rules_json(path)?;
    let version = acq
        .set_risk_rules(json)
        .await
        .map_err(|e| anyhow::anyhow!("risk rules file {}: {}", path.display(), e.message))?;
    println!("  risk rules      {} (version {version})", path.display());
    Ok(())
}

/// Demo risk rules: code replay, a single-payment ceiling per currency, and merchant velocity.
const DEMO_RISK_RULES: &str = r#"[
  {"id": "code-replay", "kind": "CODE_REPLAY", "code": "EXPIRED_CODE"},
  {"id": "max-sgd", "kind": "MAX_AMOUNT", "currency": "SGD", "maxMinor": 500000, "code": "PAYMENT_AMOUNT_EXCEED_LIMIT"},
  {"id": "max-usd", "kind": "MAX_AMOUNT", "currency": "USD", "maxMinor": 400000, "code": "PAYMENT_AMOUNT_EXCEED_LIMIT"},
  {"id": "max-jpy", "kind": "MAX_AMOUNT", "currency": "JPY", "maxMinor": 600000, "code": "PAYMENT_AMOUNT_EXCEED_LIMIT"},
  {"id": "merchant-velocity", "kind": "MERCHANT_DAILY_COUNT", "max": 5000000, "code": "PAYMENT_COUNT_EXCEED_LIMIT"},
  {"id": "blocked-gambling", "kind": "BLOCKED_MCC", "mcc": "7995"}
]"#;

const DEMO_ECB_XML: &str = include_str!("../../paycode-core/testdata/eurofxref-daily.xml");

fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            r = ctrl_c => {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "cannot listen for Ctrl-C; stop with SIGTERM");
                    std::future::pending::<()>().await;
                }
            },
            _ = term => {},
        }
        let _ = tx.send(true);
    });
    rx
}

async fn wait_for(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// The acquirer's store in the database at `url`.
pub(crate) fn acquirer_pg_target(url: &str) -> paycode_db::PgTarget {
    paycode_db::PgTarget::new(url, "acquirer")
}

/// A wallet's store in the database at `url`: a schema of its own, as if on its own server.
pub(crate) fn wallet_pg_target(url: &str, wallet: &str) -> paycode_db::PgTarget {
    let name = paycode_db::pg::schema_word(wallet);
    paycode_db::PgTarget::new(url, &format!("wallet_{name}"))
}

pub async fn run(
    data_dir: &Path,
    database_url: Option<&str>,
    args: ServeArgs,
) -> anyhow::Result<()> {
    init_logging();
    if let Some(path) = &args.config {
        return crate::config_file::run(
            path,
            database_url,
            args.risk_rules.as_deref(),
            &args.http,
            shutdown_signal(),
        )
        .await;
    }
    let http_limits = args.http.apply(ServerLimits::default())?;
    let grace = Duration::from_secs(args.shutdown_grace_s);
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let acquirer_signer = Signer::new(load_or_create_key(data_dir, "acquirer")?, 1);
    let acquirer_public_key = acquirer_signer.public_key();
    let merchant_key = load_or_create_key(data_dir, "merchant")?;
    let specs = demo_wallets();
    let shutdown = shutdown_signal();
    let mut tasks = Tasks::new();
    let base = args.wallet_port_base;
    let host = args
        .listen
        .rsplit_once(':')
        .map(|(h, _)| h.to_string())
        .unwrap_or_else(|| "127.0.0.1".into());
    if args.role == Role::Wallet && args.wallet.is_none() {
        bail!(
            "--role wallet needs --wallet NAME (one of: {})",
            specs.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
        );
    }
    if args.role != Role::All && base == 0 {
        bail!(
            "--wallet-port-base 0 only works with --role all: the parts must know each other's ports"
        );
    }
    let wallet_addr = |idx: usize, name: &str| -> Option<String> {
        let wanted = match args.role {
            Role::All => true,
            Role::Wallet => args.wallet.as_deref() == Some(name),
            Role::Acquirer => false,
        };
        let port = if base == 0 { 0 } else { base as usize + idx };
        wanted.then(|| format!("{host}:{port}"))
    };
    // In one process the wallets outlive the acquirer, so that payments in flight at a stop can
    // still reach them while the acquirer finishes its requests.
    let (acquirer_stopped, acquirer_stopped_rx) = watch::channel(false);
    let wallet_shutdown = if args.role == Role::All {
        acquirer_stopped_rx
    } else {
        shutdown.clone()
    };
    // The acquirer's address is known before the wallets start: they report frozen users to
    // it (`reportCustomer`). A wallet run alone reports to `--public-url` when given.
    let acquirer_listener = if args.role != Role::Wallet {
        Some(bind(&args.listen).await?)
    } else {
        None
    };
    let scheme = if args.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    let acquirer_url = match &acquirer_listener {
        Some(l) => {
            let local: SocketAddr = l.local_addr()?;
            Some(
                args.public_url
                    .clone()
                    .unwrap_or_else(|| format!("{scheme}://{local}")),
            )
        }
        None => args.public_url.clone(),
    };
    let running = start_wallets(
        data_dir,
        database_url,
        specs.clone(),
        wallet_addr,
        &acquirer_public_key,
        acquirer_url.as_deref(),
    )
    .await?;
    if args.role == Role::Wallet && running.is_empty() {
        bail!(
            "no demo wallet is called {:?}",
            args.wallet.unwrap_or_default()
        );
    }
    let mut banner = Vec::new();
    let mut demo_wallets_out = Vec::new();
    for w in running {
        banner.push(format!(
            "  wallet {:<6} {}  {}  CII {}",
            w.spec.name, w.spec.currency, w.url, w.spec.cii
        ));
        demo_wallets_out.push((
            w.spec.clone(),
            w.url.clone(),
            w.wallet.config().signer.public_key(),
        ));
        let options = ServeOptions {
            shutdown_grace: grace,
            ..ServeOptions::new(format!("wallet {}", w.spec.name), http_limits.clone())
        };
        spawn_wallet_server(
            &mut tasks,
            w.listener,
            w.wallet,
            options,
            wallet_shutdown.clone(),
        );
    }

    if let (Some(listener), Some(public_url)) = (acquirer_listener, acquirer_url) {
        let config = AcquirerConfig {
            db_path: data_dir.join("acquirer.db"),
            postgres: database_url.map(acquirer_pg_target),
            public_url: public_url.clone(),
            client_id_at_wallets: ACQUIRER_CLIENT_ID.into(),
            signer: acquirer_signer.clone(),
            admin_token: Some(admin_token(data_dir)?),
            time_zone: chrono_tz::Asia::Singapore,
            limits: limits_from_env(Limits::default())?,
        };
        let acq = Acquirer::open(config).await?;
        // With --role acquirer, wallets run elsewhere on their fixed ports.
        let wallets_for_registry: Vec<_> = if args.role == Role::Acquirer {
            specs
                .iter()
                .enumerate()
                .map(|(idx, s)| {
                    let key = load_or_create_key(data_dir, &format!("wallet-{}", s.name))?;
                    Ok((
                        s.clone(),
                        format!("http://{host}:{}", base as usize + idx),
                        key.public_key(),
                    ))
                })
                .collect::<anyhow::Result<_>>()?
        } else {
            demo_wallets_out.clone()
        };
        seed_acquirer(&acq, &merchant_key, &wallets_for_registry).await?;
        let dashboard_password = data_dir_secret(data_dir, "dashboard-merchant-password")?;
        acq.put_dashboard_user(paycode_acquirer::dashboard::users::NewUser {
            name: DEMO_DASHBOARD_USER.into(),
            password: dashboard_password.clone(),
            role: "MERCHANT".into(),
            client_id: Some(DEMO_CLIENT_ID.into()),
            reference_merchant_id: None,
            disabled: false,
        })
        .await
        .map_err(|e| anyhow::anyhow!("seeding the dashboard user: {}", e.message))?;
        if let Some(path) = &args.risk_rules {
            load_risk_rules(&acq, path).await?;
        }
        let demo = DemoFile {
            acquirer_url: public_url.clone(),
            client_id: DEMO_CLIENT_ID.into(),
            merchant_private_key: merchant_key.to_pkcs8_base64(),
            acquirer_public_key: acquirer_public_key.to_base64(),
            reference_merchant_id: DEMO_MERCHANT_ID.into(),
            merchant_name: DEMO_MERCHANT_NAME.into(),
            reference_store_id: DEMO_STORE_ID.into(),
            store_name: DEMO_STORE_NAME.into(),
            merchant_mcc: DEMO_MCC.into(),
            currency: "SGD".into(),
            wallets: wallets_for_registry
                .iter()
                .map(|(s, url, _)| DemoWallet {
                    name: s.name.into(),
                    url: url.clone(),
                    cii: s.cii.into(),
                    currency: s.currency.into(),
                })
                .collect(),
            users: wallets_for_registry
                .iter()
                .flat_map(|(s, _, _)| {
                    s.users.iter().map(|u| DemoUser {
                        name: u.user.name.clone(),
                        wallet: s.name.into(),
                        currency: s.currency.into(),
                        password: u.user.password.clone(),
                        role: u.role.into(),
                    })
                })
                .collect(),
            notify_url: None,
            dashboard: Some(DemoDashboard {
                url: format!("{}/dashboard", public_url.trim_end_matches('/')),
                merchant_user: DEMO_DASHBOARD_USER.into(),
                merchant_password: dashboard_password,
                operator_token_file: "admin-token".into(),
            }),
        };
        let options = ServeOptions {
            tls: tls_acceptor(args.tls_cert.as_deref().zip(args.tls_key.as_deref()))?,
            shutdown_grace: grace,
            ..ServeOptions::new("acquirer", http_limits.clone())
        };
        spawn_acquirer_server(
            &mut tasks,
            listener,
            acq,
            options,
            shutdown.clone(),
            acquirer_stopped,
        );
        write_demo_file(data_dir, &demo)?;
        println!("paycode is running");
        println!(
            "  acquirer        {public_url}  (merchant API /ams/api/v1/payments/…, admin /admin/v1, /metrics)"
        );
        for line in &banner {
            println!("{line}");
        }
        println!(
            "  dashboard       {public_url}/dashboard  (operator: name \"operator\", password in {}; merchant: see demo.json)",
            data_dir.join("admin-token").display()
        );
        println!("  data            {}", data_dir.display());
        println!("  quick start     {}", DemoFile::path(data_dir).display());
        println!(
            "  merchant        {DEMO_CLIENT_ID} / {DEMO_MERCHANT_ID} ({DEMO_MERCHANT_NAME}), SGD"
        );
        println!(
            "try: paycode wallet code --user alice   then   paycode pos charge 4.50 SGD --code <digits>"
        );
    } else {
        println!("paycode wallet is running");
        for line in &banner {
            println!("{line}");
        }
    }

    wait_all(tasks).await
}

/// Wallet settings overridden from the environment: `PAYCODE_REQUEST_TIME_WINDOW_S`, the same
/// variable as the acquirer's, so one process has one freshness window.
pub(crate) fn wallet_config_from_env(config: &mut WalletConfig) -> anyhow::Result<()> {
    let name = "PAYCODE_REQUEST_TIME_WINDOW_S";
    if let Ok(v) = std::env::var(name) {
        config.request_time_window_s = v
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={v:?} is not a valid number"))?;
    }
    Ok(())
}

/// Acquirer limits, with overrides from the environment (`PAYCODE_<LIMIT_NAME>` in upper case,
/// e.g. `PAYCODE_NOTIFY_SCHEDULE_S=0,120,600`, `PAYCODE_WALLET_PAY_TIMEOUT_MS=5000`,
/// `PAYCODE_GUESS_PER_TERMINAL=20/600`).
pub(crate) fn limits_from_env(base: Limits) -> anyhow::Result<Limits> {
    fn num<T: std::str::FromStr>(name: &str, slot: &mut T) -> anyhow::Result<()> {
        if let Ok(v) = std::env::var(name) {
            *slot = v
                .trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("{name}={v:?} is not a valid number"))?;
        }
        Ok(())
    }
    let mut l = base;
    num(
        "PAYCODE_REQUEST_BODY_MAX_BYTES",
        &mut l.request_body_max_bytes,
    )?;
    num(
        "PAYCODE_REQUEST_TIME_WINDOW_S",
        &mut l.request_time_window_s,
    )?;
    num(
        "PAYCODE_PAYMENT_EXPIRY_DEFAULT_S",
        &mut l.payment_expiry_default_s,
    )?;
    num("PAYCODE_PAYMENT_EXPIRY_MAX_S", &mut l.payment_expiry_max_s)?;
    num(
        "PAYCODE_WALLET_PAY_TIMEOUT_MS",
        &mut l.wallet_pay_timeout_ms,
    )?;
    num(
        "PAYCODE_WALLET_CALL_TIMEOUT_MS",
        &mut l.wallet_call_timeout_ms,
    )?;
    num("PAYCODE_REFUND_WINDOW_DAYS", &mut l.refund_window_days)?;
    num(
        "PAYCODE_RECONCILE_INTERVAL_MS",
        &mut l.reconcile_interval_ms,
    )?;
    num("PAYCODE_NOTIFY_TIMEOUT_MS", &mut l.notify_timeout_ms)?;
    num("PAYCODE_WORK_LEASE_MS", &mut l.work_lease_ms)?;
    num("PAYCODE_REGISTRY_RELOAD_S", &mut l.registry_reload_s)?;
    for (name, slot) in [
        ("PAYCODE_GUESS_PER_CLIENT", &mut l.guess_per_client),
        ("PAYCODE_GUESS_PER_MERCHANT", &mut l.guess_per_merchant),
        ("PAYCODE_GUESS_PER_TERMINAL", &mut l.guess_per_terminal),
    ] {
        if let Ok(v) = std::env::var(name) {
            *slot = source_limit(&v).ok_or_else(|| {
                anyhow::anyhow!("{name}={v:?} must be FAILURES/WINDOW_S, e.g. 20/600")
            })?;
        }
    }
    if let Ok(v) = std::env::var("PAYCODE_NOTIFY_SCHEDULE_S") {
        l.notify_schedule_s = v
            .split(',')
            .map(|x| x.trim().parse::<i64>())
            .collect::<Result<_, _>>()
            .map_err(|_| {
                anyhow::anyhow!("PAYCODE_NOTIFY_SCHEDULE_S={v:?} must be comma-separated seconds")
            })?;
    }
    Ok(l)
}

/// A guessing limit written `FAILURES/WINDOW_S`, e.g. `20/600`.
fn source_limit(text: &str) -> Option<paycode_core::guess::SourceLimit> {
    let (failures, window) = text.trim().split_once('/')?;
    Some(paycode_core::guess::SourceLimit {
        failures_max: failures.trim().parse().ok()?,
        window_s: window.trim().parse().ok()?,
    })
}

pub(crate) type Tasks = tokio::task::JoinSet<anyhow::Result<()>>;

/// Waits for every server to stop (after a shutdown signal, or the first failure).
pub(crate) async fn wait_all(mut tasks: Tasks) -> anyhow::Result<()> {
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(e) => bail!("a server task failed: {e}"),
        }
    }
    println!("paycode stopped");
    Ok(())
}

/// The TLS configuration of a listener given a PEM certificate chain and key, if any.
pub(crate) fn tls_acceptor(
    files: Option<(&Path, &Path)>,
) -> anyhow::Result<Option<paycode_http::server::TlsAcceptor>> {
    files
        .map(|(cert, key)| paycode_http::server::load_tls(cert, key).map_err(anyhow::Error::from))
        .transpose()
}

/// Serves a wallet until shutdown, letting in-flight requests finish within the grace period,
/// then stops its background work and closes its store.
pub(crate) fn spawn_wallet_server(
    tasks: &mut Tasks,
    listener: TcpListener,
    wallet: Wallet,
    options: ServeOptions,
    shutdown: watch::Receiver<bool>,
) {
    let router = wallet.router();
    let bg = wallet.spawn_background();
    tasks.spawn(async move {
        let r = paycode_http::server::serve(listener, router, options, wait_for(shutdown)).await;
        bg.abort();
        wallet.close();
        r.context("wallet server")
    });
}

/// Serves the acquirer (over TLS when the options carry it) until shutdown, letting in-flight
/// requests finish within the grace period, then stops its background work and closes its
/// store, and only then tells `stopped` (the wallets of the same process wait for it).
pub(crate) fn spawn_acquirer_server(
    tasks: &mut Tasks,
    listener: TcpListener,
    acq: Acquirer,
    options: ServeOptions,
    shutdown: watch::Receiver<bool>,
    stopped: watch::Sender<bool>,
) {
    let bg = acq.spawn_background();
    let router = paycode_acquirer::router(acq.clone());
    tasks.spawn(async move {
        let r = paycode_http::server::serve(listener, router, options, wait_for(shutdown)).await;
        bg.abort();
        acq.db().close();
        let _ = stopped.send(true);
        r.context("acquirer server")
    });
}

fn write_demo_file(data_dir: &Path, demo: &DemoFile) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(demo).context("encoding demo.json")?;
    write_private(&DemoFile::path(data_dir), &text)
}

/// Logs go to stderr, filtered by `PAYCODE_LOG` (default `info`); `PAYCODE_LOG_FORMAT=json`
/// writes one JSON object per line for log collectors.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("PAYCODE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if std::env::var("PAYCODE_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
