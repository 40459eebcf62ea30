//! `paycode serve --config FILE`: runs exactly what the file configures — an acquirer, any number
//! of reference wallets, or both — with no demo data. Reference data (merchants, keys, wallets,
//! routes, rates) is then managed through the admin API. Relative paths are relative to the
//! file's directory. `PAYCODE_*` environment variables override acquirer limits and the
//! wallets' `request_time_window_s` (see `serve`).
//!
//! ```toml
//! [acquirer]
//! listen = "0.0.0.0:8443"
//! public_url = "https://acquirer.example:8443"   # how wallets reach us
//! db = "acquirer.db"
//! private_key_file = "keys/acquirer.key"         # PEM or bare base64 PKCS#8
//! admin_token_file = "admin-token"
//! time_zone = "Asia/Singapore"                   # cancel window
//! tls_cert = "tls/cert.pem"                      # optional
//! tls_key = "tls/key.pem"
//! rate_file = "rates.txt"                        # optional; loaded at start
//! risk_rules = "risk.toml"                       # optional; loaded at start (see risk_file)
//! [acquirer.limits]
//! notify_schedule_s = [0, 120, 600]
//! request_time_window_s = 300                    # Request-Time freshness, ± seconds
//! guess_per_terminal = { failures_max = 20, window_s = 600 }   # invalid codes per source
//! guess_per_merchant = { failures_max = 100, window_s = 600 }
//! guess_per_client = { failures_max = 300, window_s = 600 }
//!
//! [[wallets]]
//! name = "sgpay"
//! cii = "281005"
//! currency = "SGD"
//! listen = "127.0.0.1:8085"
//! db = "wallet-sgpay.db"
//! private_key_file = "keys/wallet-sgpay.key"
//! acquirer_public_key_file = "keys/acquirer.pub"  # PEM or bare base64 SPKI
//! admin_token_file = "wallet-admin-token"        # optional; enables /admin/v1
//! acquirer_url = "http://127.0.0.1:8080"        # optional; where frozen users are reported
//! request_time_window_s = 300                    # optional; Request-Time freshness, ± s
//! guess_per_merchant = { failures_max = 600, window_s = 600 }  # optional; per acquirer merchant
//! guess_per_terminal = { failures_max = 60, window_s = 600 }   # optional
//! guess_per_slot = { failures_max = 10, window_s = 600 }       # optional; then the password
//!
//! [http]                                         # optional; bounds of every listener
//! header_read_timeout_ms = 10000
//! idle_timeout_ms = 60000
//! body_read_timeout_ms = 10000
//! connections_max = 4096                         # per listener
//! header_max_bytes = 16384                       # larger: signed PARAM_ILLEGAL
//! header_hard_max_bytes = 32768                  # larger: HTTP 431, closed
//! ```
//!
//! `PAYCODE_HTTP_*` variables (or `paycode serve --http-…` flags) override the `[http]` section.

pub use crate::config_schema::*;
use crate::serve::{
    HttpArgs, Tasks, spawn_acquirer_server, spawn_wallet_server, tls_acceptor, wait_all,
};
use anyhow::{Context, bail};
use paycode_acquirer::{Acquirer, AcquirerConfig, Limits};
use paycode_core::guess::SourceLimit;
use paycode_http::Signer;
use paycode_http::server::{ServeOptions, ServerLimits};
use paycode_sign::{PrivateKey, PublicKey};
use paycode_wallet::{Wallet, WalletConfig};
use std::path::Path;
use std::time::Duration;
use tokio::sync::watch;

impl HttpSection {
    fn apply(&self, l: &mut ServerLimits) {
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = self.$f { l.$f = v; } )* };
        }
        set!(
            header_read_timeout_ms,
            idle_timeout_ms,
            body_read_timeout_ms,
            connections_max,
            header_max_bytes,
            header_hard_max_bytes
        );
    }
}

impl From<SourceLimitSection> for SourceLimit {
    fn from(s: SourceLimitSection) -> SourceLimit {
        SourceLimit {
            failures_max: s.failures_max,
            window_s: s.window_s,
        }
    }
}

impl LimitsSection {
    fn apply(&self, l: &mut Limits) {
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = self.$f.clone() { l.$f = v; } )* };
        }
        set!(
            request_body_max_bytes,
            request_time_window_s,
            payment_expiry_default_s,
            payment_expiry_max_s,
            quote_validity_s,
            wallet_pay_timeout_ms,
            wallet_call_timeout_ms,
            cancel_window_next_day_minutes,
            refund_window_days,
            reconcile_interval_ms,
            notify_schedule_s,
            notify_timeout_ms
        );
        for (section, slot) in [
            (self.guess_per_client, &mut l.guess_per_client),
            (self.guess_per_merchant, &mut l.guess_per_merchant),
            (self.guess_per_terminal, &mut l.guess_per_terminal),
        ] {
            if let Some(v) = section {
                *slot = v.into();
            }
        }
    }
}

fn read(base: &Path, p: &Path, what: &str) -> anyhow::Result<String> {
    let path = base.join(p);
    std::fs::read_to_string(&path).with_context(|| format!("reading {what} {}", path.display()))
}

/// A section's store in PostgreSQL, if it or the command line names a database: its own schema
/// when given, else the default one `default_of(url)` names.
fn pg_target(
    url: Option<&str>,
    schema: Option<&str>,
    default_of: impl Fn(&str) -> paycode_db::PgTarget,
) -> Option<paycode_db::PgTarget> {
    let url = url.filter(|u| !u.is_empty())?;
    Some(match schema {
        Some(s) => paycode_db::PgTarget::new(url, s),
        None => default_of(url),
    })
}

pub fn load(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the configuration {}", path.display()))?;
    parse(&text).map_err(|e| anyhow::anyhow!("the configuration {}: {e}", path.display()))
}

/// Runs what the file configures until shutdown.
pub async fn run(
    path: &Path,
    database_url: Option<&str>,
    risk_rules: Option<&Path>,
    http_overrides: &HttpArgs,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let cfg = load(path)?;
    let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut http_limits = ServerLimits::default();
    cfg.http.apply(&mut http_limits);
    let http_limits = http_overrides.apply(http_limits)?;
    // Wallets stop after the acquirer; without one they get the default grace period.
    let grace = Duration::from_secs(
        cfg.acquirer
            .as_ref()
            .map_or_else(default_grace, |a| a.shutdown_grace_s),
    );
    let mut tasks = Tasks::new();
    // Wallets in the same process as the acquirer stop after it (payments in flight need them).
    let (acquirer_stopped, acquirer_stopped_rx) = watch::channel(false);
    let wallet_shutdown = if cfg.acquirer.is_some() {
        acquirer_stopped_rx
    } else {
        shutdown.clone()
    };
    for w in &cfg.wallets {
        let key = PrivateKey::parse(&read(&base, &w.private_key_file, "wallet key")?)
            .with_context(|| format!("wallet {}: private key", w.name))?;
        let acquirer_key = PublicKey::parse(&read(
            &base,
            &w.acquirer_public_key_file,
            "acquirer public key",
        )?)
        .with_context(|| format!("wallet {}: acquirer public key", w.name))?;
        let currency = paycode_core::Currency::parse(&w.currency)
            .map_err(|e| anyhow::anyhow!("wallet {}: currency: {e}", w.name))?;
        let mut wc = WalletConfig::new(
            &w.name,
            &w.cii,
            currency,
            base.join(&w.db),
            w.client_id.as_deref().unwrap_or(&w.name),
            Signer::new(key, 1),
            &w.acquirer_client_id,
            acquirer_key,
        );
        wc.acquirer_url = w.acquirer_url.clone();
        wc.postgres = pg_target(
            w.database_url.as_deref().or(database_url),
            w.database_schema.as_deref(),
            |url| crate::serve::wallet_pg_target(url, &w.name),
        );
        if let Some(v) = w.code_step_s {
            wc.code_step_s = v;
        }
        if let Some(v) = w.code_validity_s {
            wc.code_validity_s = v;
        }
        if let Some(v) = w.challenge_timeout_s {
            wc.challenge_timeout_s = v;
        }
        if let Some(v) = w.request_time_window_s {
            wc.request_time_window_s = v;
        }
        let g = &mut wc.guess_limits;
        for (section, slot) in [
            (w.guess_per_merchant, &mut g.per_merchant),
            (w.guess_per_terminal, &mut g.per_terminal),
            (w.guess_per_slot, &mut g.slot.limit),
        ] {
            if let Some(v) = section {
                *slot = v.into();
            }
        }
        crate::serve::wallet_config_from_env(&mut wc)?;
        if let Some(p) = &w.admin_token_file {
            wc.admin_token = Some(read(&base, p, "wallet admin token")?.trim().to_string());
        }
        let wallet = tokio::task::spawn_blocking(move || Wallet::open(wc)).await??;
        let listener = tokio::net::TcpListener::bind(&w.listen)
            .await
            .with_context(|| format!("wallet {}: cannot listen on {}", w.name, w.listen))?;
        println!(
            "  wallet {:<8} {}  http://{}",
            w.name,
            w.currency,
            listener.local_addr()?
        );
        let options = ServeOptions {
            shutdown_grace: grace,
            ..ServeOptions::new(format!("wallet {}", w.name), http_limits.clone())
        };
        spawn_wallet_server(
            &mut tasks,
            listener,
            wallet,
            options,
            wallet_shutdown.clone(),
        );
    }
    if let Some(a) = &cfg.acquirer {
        let key = PrivateKey::parse(&read(&base, &a.private_key_file, "acquirer key")?)
            .context("acquirer private key")?;
        let admin_token = match &a.admin_token_file {
            Some(p) => Some(read(&base, p, "admin token")?.trim().to_string()),
            None => std::env::var("PAYCODE_ADMIN_TOKEN").ok(),
        };
        let tz: chrono_tz::Tz = a.time_zone.parse().map_err(|_| {
            anyhow::anyhow!("acquirer.time_zone {:?} is not an IANA zone", a.time_zone)
        })?;
        let mut limits = Limits::default();
        a.limits.apply(&mut limits);
        let limits = crate::serve::limits_from_env(limits)?;
        let listener = tokio::net::TcpListener::bind(&a.listen)
            .await
            .with_context(|| format!("acquirer: cannot listen on {}", a.listen))?;
        let tls = match (&a.tls_cert, &a.tls_key) {
            (Some(c), Some(k)) => Some((base.join(c), base.join(k))),
            (None, None) => None,
            _ => bail!("acquirer: tls_cert and tls_key go together"),
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let public_url = a.public_url.clone().unwrap_or_else(|| {
            format!(
                "{scheme}://{}",
                listener
                    .local_addr()
                    .map(|x| x.to_string())
                    .unwrap_or_default()
            )
        });
        let acq = Acquirer::open(AcquirerConfig {
            db_path: base.join(&a.db),
            postgres: pg_target(
                a.database_url.as_deref().or(database_url),
                a.database_schema.as_deref(),
                crate::serve::acquirer_pg_target,
            ),
            public_url: public_url.clone(),
            client_id_at_wallets: a.client_id_at_wallets.clone(),
            signer: Signer::new(key, 1),
            admin_token,
            time_zone: tz,
            limits,
        })
        .await?;
        if let Some(rates) = &a.rate_file {
            acq.set_rate_file(read(&base, rates, "rate file")?)
                .await
                .map_err(|e| anyhow::anyhow!("rate file: {}", e.message))?;
        }
        let rules_file = risk_rules
            .map(Path::to_path_buf)
            .or_else(|| a.risk_rules.as_ref().map(|p| base.join(p)));
        if let Some(path) = rules_file {
            crate::serve::load_risk_rules(&acq, &path).await?;
        }
        println!("  acquirer        {public_url}");
        let options = ServeOptions {
            tls: tls_acceptor(tls.as_ref().map(|(c, k)| (c.as_path(), k.as_path())))?,
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
    }
    println!("paycode is running ({})", path.display());
    wait_all(tasks).await
}
