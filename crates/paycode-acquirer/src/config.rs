//! The acquirer's configuration: one typed struct, every limit and timeout named with its unit,
//! validated once at start-up.

use paycode_core::guess::SourceLimit;
use paycode_http::Signer;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct AcquirerConfig {
    /// SQLite file of the acquirer's store; settlement report files are written beside it
    /// (also when the store is in PostgreSQL).
    pub db_path: PathBuf,
    /// When set, the store lives in this schema of a PostgreSQL database instead of `db_path`.
    pub postgres: Option<paycode_db::PgTarget>,
    /// Base URL wallets use to reach us (for `paymentNotifyUrl`), e.g. `http://127.0.0.1:8080`.
    pub public_url: String,
    /// Our `Client-Id` when we call wallets, and the `client-id` of our MPP answers.
    pub client_id_at_wallets: String,
    /// Signs merchant responses, notifications and wallet requests.
    pub signer: Signer,
    /// Bearer token for `/admin/v1/…`; `None` disables the admin API.
    pub admin_token: Option<String>,
    /// The acquirer's time zone, for the cancel window.
    pub time_zone: chrono_tz::Tz,
    pub limits: Limits,
}

impl AcquirerConfig {
    /// Where the store lives.
    pub fn store_location(&self) -> paycode_db::Location {
        match &self.postgres {
            Some(t) => paycode_db::Location::Postgres(t.clone()),
            None => paycode_db::Location::File(self.db_path.clone()),
        }
    }

    /// The store, named for messages (never with a password).
    pub fn store_name(&self) -> String {
        match &self.postgres {
            Some(t) => format!("schema {} of the PostgreSQL database", t.schema),
            None => self.db_path.display().to_string(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body accepted on any endpoint.
    pub request_body_max_bytes: usize,
    /// A signed request (merchant API or a wallet's `notifyPayment`) is accepted only when its
    /// `Request-Time` is at most this far from our clock, either way.
    pub request_time_window_s: u64,
    /// `paymentExpiryTime` when the merchant gives none.
    pub payment_expiry_default_s: i64,
    /// Latest `paymentExpiryTime` accepted, counted from the request.
    pub payment_expiry_max_s: i64,
    /// How long an FX quote given out stays valid.
    pub quote_validity_s: i64,
    /// How long the synchronous wallet `pay` call may take before the outcome counts as unknown.
    pub wallet_pay_timeout_ms: u64,
    /// Timeout of inquiry, cancel and refund calls to a wallet.
    pub wallet_call_timeout_ms: u64,
    /// The cancel window ends at this local time on the day after the payment (`00:15`).
    pub cancel_window_next_day_minutes: u32,
    /// Refunds are accepted for this long after payment.
    pub refund_window_days: i64,
    /// Pause between reconciler inquiries of a payment still processing at the wallet.
    pub reconcile_interval_ms: i64,
    /// How long a claimed reconciler or notifier item stays claimed.
    pub work_lease_ms: i64,
    /// Items one background pass takes at most.
    pub background_batch_max: usize,
    /// Delays before each notification attempt; after the last one the notification is parked.
    pub notify_schedule_s: Vec<i64>,
    /// Timeout of one notification POST.
    pub notify_timeout_ms: u64,
    /// Pause of the background loop when it found no work.
    pub background_idle_ms: u64,
    /// How often other processes' reference-data changes are picked up.
    pub registry_reload_s: u64,
    /// Failed code look-ups (the wallet answered `INVALID_CODE`) allowed per merchant client, per
    /// merchant and per terminal in a window; a source over its limit is answered
    /// `REQUEST_TRAFFIC_EXCEED_LIMIT` before any wallet is called, and nobody else is affected.
    pub guess_per_client: SourceLimit,
    pub guess_per_merchant: SourceLimit,
    pub guess_per_terminal: SourceLimit,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_body_max_bytes: 64 * 1024,
            request_time_window_s: paycode_http::request_time::REQUEST_TIME_WINDOW_DEFAULT_S,
            payment_expiry_default_s: 60,
            payment_expiry_max_s: 600,
            quote_validity_s: 300,
            wallet_pay_timeout_ms: 10_000,
            wallet_call_timeout_ms: 10_000,
            cancel_window_next_day_minutes: 15,
            refund_window_days: 365,
            reconcile_interval_ms: 2_000,
            work_lease_ms: 30_000,
            background_batch_max: 64,
            notify_schedule_s: vec![0, 120, 600, 600, 3_600, 7_200, 21_600, 54_000],
            notify_timeout_ms: 5_000,
            background_idle_ms: 200,
            registry_reload_s: 10,
            guess_per_client: SourceLimit {
                failures_max: 300,
                window_s: 600,
            },
            guess_per_merchant: SourceLimit {
                failures_max: 100,
                window_s: 600,
            },
            guess_per_terminal: SourceLimit {
                failures_max: 20,
                window_s: 600,
            },
        }
    }
}

impl AcquirerConfig {
    pub fn validate(&self) -> Result<(), String> {
        let l = &self.limits;
        if l.payment_expiry_default_s <= 0 || l.payment_expiry_default_s > l.payment_expiry_max_s {
            return Err(
                "payment_expiry_default_s must be positive and at most payment_expiry_max_s".into(),
            );
        }
        if l.notify_schedule_s.is_empty() {
            return Err("notify_schedule_s needs at least one attempt".into());
        }
        if l.cancel_window_next_day_minutes >= 24 * 60 {
            return Err("cancel_window_next_day_minutes must be less than a day".into());
        }
        paycode_http::request_time::validate_window_s(l.request_time_window_s)?;
        if l.background_batch_max == 0 {
            return Err("background_batch_max must be positive".into());
        }
        l.guess_per_client.validate("guess_per_client")?;
        l.guess_per_merchant.validate("guess_per_merchant")?;
        l.guess_per_terminal.validate("guess_per_terminal")?;
        if !(self.public_url.starts_with("http://") || self.public_url.starts_with("https://")) {
            return Err(format!(
                "public_url {:?} must be an http(s) URL",
                self.public_url
            ));
        }
        Ok(())
    }
}
