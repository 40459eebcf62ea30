//! The shape of a `paycode serve --config` file and the checks that need no file or network:
//! parsed and checked before anything starts, so that a bad file is refused as a whole with an
//! error naming the section and field. (Keys, tokens and listeners are read and bound at start.)
//! This module depends on nothing else of the binary, so that the config fuzz target builds it
//! on its own.

use serde::Deserialize;
use std::collections::HashSet;
use std::path::PathBuf;

/// The client id the acquirer uses at the wallets, unless configured otherwise.
pub const ACQUIRER_CLIENT_ID: &str = "paycode-acquirer";

/// Parses and checks a configuration file's text.
pub fn parse(text: &str) -> Result<FileConfig, String> {
    let cfg: FileConfig = toml::from_str(text).map_err(|e| e.to_string())?;
    cfg.check()?;
    Ok(cfg)
}

impl FileConfig {
    /// Everything that can be checked without reading a file or binding a port.
    pub fn check(&self) -> Result<(), String> {
        if self.acquirer.is_none() && self.wallets.is_empty() {
            return Err("runs nothing: add an [acquirer] section or [[wallets]]".into());
        }
        let mut listens = HashSet::new();
        let mut listen = |field: String, addr: &str| {
            let port = addr
                .rsplit_once(':')
                .filter(|(host, _)| !host.is_empty())
                .and_then(|(_, port)| port.parse::<u16>().ok())
                .ok_or_else(|| format!("{field}: {addr:?} is not HOST:PORT"))?;
            if port != 0 && !listens.insert(addr.to_string()) {
                return Err(format!(
                    "{field}: {addr} is already used by another section"
                ));
            }
            Ok(())
        };
        if let Some(a) = &self.acquirer {
            listen("acquirer.listen".into(), &a.listen)?;
            if a.time_zone.parse::<chrono_tz::Tz>().is_err() {
                return Err(format!(
                    "acquirer.time_zone: {:?} is not an IANA zone",
                    a.time_zone
                ));
            }
            if a.tls_cert.is_some() != a.tls_key.is_some() {
                return Err("acquirer: tls_cert and tls_key go together".into());
            }
            if let Some(u) = &a.public_url
                && !(u.starts_with("http://") || u.starts_with("https://"))
            {
                return Err(format!("acquirer.public_url: {u:?} is not an http(s) URL"));
            }
            let l = &a.limits;
            if let Some(s) = &l.notify_schedule_s
                && (s.is_empty() || s.iter().any(|d| *d < 0))
            {
                return Err(
                    "acquirer.limits.notify_schedule_s: must be non-empty, each delay >= 0".into(),
                );
            }
            for (name, v) in [
                ("guess_per_client", l.guess_per_client),
                ("guess_per_merchant", l.guess_per_merchant),
                ("guess_per_terminal", l.guess_per_terminal),
            ] {
                check_limit(&format!("acquirer.limits.{name}"), v)?;
            }
        }
        let mut names = HashSet::new();
        for (i, w) in self.wallets.iter().enumerate() {
            let at = format!("wallets[{i}]");
            if w.name.is_empty()
                || !w
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(format!(
                    "{at}.name: {:?} must be letters, digits, - or _",
                    w.name
                ));
            }
            let at = format!("wallets[{i}] ({})", w.name);
            if !names.insert(w.name.as_str()) {
                return Err(format!("{at}.name: another wallet has this name"));
            }
            if w.cii.len() != 6 || !w.cii.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("{at}.cii: {:?} is not 6 digits", w.cii));
            }
            paycode_core::Currency::parse(&w.currency)
                .map_err(|e| format!("{at}.currency: {e}"))?;
            listen(format!("{at}.listen"), &w.listen)?;
            if w.code_step_s == Some(0) {
                return Err(format!("{at}.code_step_s: must be positive"));
            }
            for (name, v) in [
                ("guess_per_merchant", w.guess_per_merchant),
                ("guess_per_terminal", w.guess_per_terminal),
                ("guess_per_slot", w.guess_per_slot),
            ] {
                check_limit(&format!("{at}.{name}"), v)?;
            }
        }
        Ok(())
    }
}

fn check_limit(field: &str, limit: Option<SourceLimitSection>) -> Result<(), String> {
    match limit {
        Some(l) if l.failures_max == 0 || l.window_s == 0 => Err(format!(
            "{field}: failures_max and window_s must be positive"
        )),
        _ => Ok(()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub acquirer: Option<AcquirerSection>,
    #[serde(default)]
    pub wallets: Vec<WalletSection>,
    #[serde(default)]
    pub http: HttpSection,
}

/// Optional overrides of [`ServerLimits`] for every listener; names and units as there.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    pub header_read_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub body_read_timeout_ms: Option<u64>,
    pub connections_max: Option<usize>,
    pub header_max_bytes: Option<usize>,
    pub header_hard_max_bytes: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcquirerSection {
    pub listen: String,
    pub public_url: Option<String>,
    /// The SQLite file of the store (and, with `database_url`, where report files go).
    pub db: PathBuf,
    /// Keep the store in this PostgreSQL database (overrides `--database-url`).
    pub database_url: Option<String>,
    /// The schema of the store in that database [default: `acquirer`].
    pub database_schema: Option<String>,
    pub private_key_file: PathBuf,
    #[serde(default = "default_acquirer_id")]
    pub client_id_at_wallets: String,
    pub admin_token_file: Option<PathBuf>,
    #[serde(default = "default_tz")]
    pub time_zone: String,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub rate_file: Option<PathBuf>,
    pub risk_rules: Option<PathBuf>,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default = "default_grace")]
    pub shutdown_grace_s: u64,
}

/// Optional overrides of [`Limits`]; names and units as there.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    pub request_body_max_bytes: Option<usize>,
    pub request_time_window_s: Option<u64>,
    pub payment_expiry_default_s: Option<i64>,
    pub payment_expiry_max_s: Option<i64>,
    pub quote_validity_s: Option<i64>,
    pub wallet_pay_timeout_ms: Option<u64>,
    pub wallet_call_timeout_ms: Option<u64>,
    pub cancel_window_next_day_minutes: Option<u32>,
    pub refund_window_days: Option<i64>,
    pub reconcile_interval_ms: Option<i64>,
    pub notify_schedule_s: Option<Vec<i64>>,
    pub notify_timeout_ms: Option<u64>,
    pub guess_per_client: Option<SourceLimitSection>,
    pub guess_per_merchant: Option<SourceLimitSection>,
    pub guess_per_terminal: Option<SourceLimitSection>,
}

/// A guessing limit: at most `failures_max` invalid codes per `window_s`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceLimitSection {
    pub failures_max: u32,
    pub window_s: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalletSection {
    pub name: String,
    pub cii: String,
    pub currency: String,
    pub listen: String,
    pub db: PathBuf,
    /// Keep the store in this PostgreSQL database (overrides `--database-url`).
    pub database_url: Option<String>,
    /// The schema of the store in that database [default: `wallet_NAME`].
    pub database_schema: Option<String>,
    pub private_key_file: PathBuf,
    pub acquirer_public_key_file: PathBuf,
    pub client_id: Option<String>,
    #[serde(default = "default_acquirer_id")]
    pub acquirer_client_id: String,
    pub code_step_s: Option<u64>,
    pub code_validity_s: Option<u64>,
    pub challenge_timeout_s: Option<u64>,
    pub request_time_window_s: Option<u64>,
    pub guess_per_merchant: Option<SourceLimitSection>,
    pub guess_per_terminal: Option<SourceLimitSection>,
    pub guess_per_slot: Option<SourceLimitSection>,
    /// The operator API's bearer token; without it the wallet's `/admin/v1` is disabled.
    pub admin_token_file: Option<PathBuf>,
    /// The acquirer's base URL, to which freezing and unfreezing users is reported
    /// (`reportCustomer`); without it nothing is reported.
    pub acquirer_url: Option<String>,
}

fn default_acquirer_id() -> String {
    ACQUIRER_CLIENT_ID.to_string()
}

fn default_tz() -> String {
    "UTC".into()
}

/// Seconds to let requests in flight finish at shutdown.
pub fn default_grace() -> u64 {
    10
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[acquirer]
listen = "127.0.0.1:8080"
db = "acquirer.db"
private_key_file = "acquirer.key"
time_zone = "Asia/Singapore"
[[wallets]]
name = "sgpay"
cii = "281005"
currency = "SGD"
listen = "127.0.0.1:8085"
db = "wallet.db"
private_key_file = "wallet.key"
acquirer_public_key_file = "acquirer.pub"
"#;

    /// Parses GOOD with `from` replaced by `to`: `None` for a file that parses, else the error.
    fn check(from: &str, to: &str) -> Option<String> {
        assert!(GOOD.contains(from), "{from}");
        parse(&GOOD.replacen(from, to, 1)).err()
    }

    #[test]
    fn a_good_file_parses_with_its_defaults() {
        let cfg = parse(GOOD).unwrap();
        let a = cfg.acquirer.unwrap();
        assert_eq!(a.client_id_at_wallets, ACQUIRER_CLIENT_ID);
        assert_eq!(a.shutdown_grace_s, default_grace());
        assert_eq!(cfg.wallets[0].acquirer_client_id, ACQUIRER_CLIENT_ID);
        assert_eq!(check("127.0.0.1:8085", "localhost:8085"), None);
    }

    #[test]
    fn each_bad_field_is_named() {
        for (from, to, named) in [
            ("Asia/Singapore", "Mars/Olympus", "acquirer.time_zone"),
            ("\"127.0.0.1:8080\"", "\"127.0.0.1\"", "acquirer.listen"),
            (
                "127.0.0.1:8085",
                "127.0.0.1:8080",
                "wallets[0] (sgpay).listen",
            ),
            ("281005", "28100", "wallets[0] (sgpay).cii"),
            ("SGD", "SGX", "wallets[0] (sgpay).currency"),
            ("name = \"sgpay\"", "name = \"sg pay\"", "wallets[0].name"),
            (
                "db = \"wallet.db\"",
                "db = \"wallet.db\"\ncode_step_s = 0",
                "code_step_s",
            ),
            (
                "db = \"wallet.db\"",
                "db = \"wallet.db\"\nguess_per_slot = { failures_max = 0, window_s = 60 }",
                "wallets[0] (sgpay).guess_per_slot",
            ),
            (
                "time_zone",
                "tls_cert = \"c.pem\"\ntime_zone",
                "tls_cert and tls_key",
            ),
            (
                "db = \"acquirer.db\"",
                "db = \"acquirer.db\"\ncolour = 1",
                "colour",
            ),
        ] {
            let err = check(from, to).unwrap_or_else(|| panic!("{to} was accepted"));
            assert!(err.contains(named), "{to}: {err}");
        }
        assert!(parse("").unwrap_err().contains("runs nothing"));
    }
}
