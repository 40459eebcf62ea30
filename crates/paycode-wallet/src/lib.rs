//! The reference wallet (a Mobile Payment Partner, SPEC §4.3, §5, §6): users and devices, offline
//! payment codes, limits and password challenges, the MPP API the acquirer calls, the customer
//! API the phone app calls, and an operator API.
//!
//! The one key decision: **every decision that moves money is one closure on the database's
//! single writer** ([`paycode_db::Db::write`]). Checking a code and marking it used, deciding a
//! payment and debiting the user, confirming a challenge against a concurrent cancel: each is a
//! read-then-write inside one job, so the group-commit writer serialises them and exactly one
//! outcome wins. The same job writes the user's ledger row and, when the acquirer must be told
//! later, the `notifyPayment` outbox row; the background pass ([`Wallet::run_background_once`])
//! delivers those with retries and closes challenges that time out.
//!
//! Modules:
//! - [`code`]: code generation (used offline by the phone) and checking; the construction and
//!   the guessing odds are documented there.
//! - [`policy`]: pay now / challenge / reject, as one pure function.
//! - `payment_state`: the wallet's payment transition table, pure.
//! - `payments`, `challenges`, `code_check`, `devices`, `users`, `notify`, `audit`: the use
//!   cases, each a job on the writer (or a read) composed of storage functions.
//! - `store`: the storage layer: schema, typed rows, one function per SQL statement.
//! - `mpp`, `customer`, `admin`: the three HTTP surfaces.
//! - [`demo`]: the demo wallets and users that `paycode serve` creates.

pub mod code;
pub mod demo;
pub mod policy;

mod admin;
mod audit;
mod background;
mod challenges;
mod code_check;
mod customer;
mod devices;
mod mpp;
mod notify;
mod password;
mod payment_state;
mod payments;
mod random;
mod store;
mod users;

use axum::Router;
use paycode_core::{Currency, Money};
use paycode_db::{Db, DbConfig, DbError};
use paycode_http::{SignedClient, Signer};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

pub use audit::AuditFinding;
pub use code::{
    CodeDisplay, CodeMaterial, CodeMaterialError, GuessLimits, ShownCode, SlotSuspicion,
    TooManyCodes, generate_code_at,
};
pub use mpp::decode_request as decode_mpp_request;
pub use store::{SCHEMA, StoreError};

/// Seconds per code step unless configured: a device shows new codes each step.
pub const CODE_STEP_S_DEFAULT: u64 = 30;

/// The wallet's idea of "now", injectable so that tests move time instead of sleeping.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
}

/// A clock that only moves when told to (tests).
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ms: AtomicI64,
}

impl ManualClock {
    pub fn new(now_ms: i64) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            now_ms: AtomicI64::new(now_ms),
        })
    }

    pub fn advance_ms(&self, ms: i64) {
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
    }

    pub fn set_ms(&self, ms: i64) {
        self.now_ms.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

/// Everything a wallet needs to run, validated by [`Wallet::open`].
#[derive(Debug, Clone)]
pub struct WalletConfig {
    /// E.g. `sgpay`; also the `pspName` shown to merchants.
    pub name: String,
    /// 6-digit Code Issuer Identifier.
    pub cii: String,
    pub currency: Currency,
    /// SQLite file of the wallet's store.
    pub db_path: PathBuf,
    /// When set, the store lives in this schema of a PostgreSQL database instead of `db_path`.
    pub postgres: Option<paycode_db::PgTarget>,
    /// The wallet's `Client-Id` when it calls the acquirer (`notifyPayment`).
    pub client_id: String,
    /// The wallet's private key: signs responses and notifications.
    pub signer: Signer,
    /// The `Client-Id` the acquirer uses when calling the wallet.
    pub acquirer_client_id: String,
    /// Verifies the acquirer's requests and its answers to notifications.
    pub acquirer_public_key: paycode_sign::PublicKey,
    pub code_step_s: u64,
    pub code_validity_s: u64,
    /// How long a password challenge waits (also capped by the pay's `paymentExpiryTime`).
    pub challenge_timeout_s: u64,
    /// Delay before each `notifyPayment` attempt: the first entry is the delay of the first
    /// attempt, the last one repeats until the acquirer acknowledges.
    pub notify_retry_ms: Vec<u64>,
    pub notify_timeout_ms: u64,
    /// Wrong passwords before the password is locked.
    pub password_max_attempts: u32,
    /// Argon2id memory cost; lower only in tests.
    pub password_memory_kib: u32,
    /// Failed code look-ups allowed per acquirer merchant and terminal, and the per-slot
    /// threshold after which codes need the password.
    pub guess_limits: GuessLimits,
    /// Pause between background passes of [`Wallet::spawn_background`].
    pub background_interval_ms: u64,
    /// Most challenges expired and notifications attempted per background pass.
    pub background_batch_max: usize,
    pub max_body_bytes: usize,
    /// A request from the acquirer is accepted only when its `Request-Time` is at most this far
    /// from the wallet's clock, either way.
    pub request_time_window_s: u64,
    /// Bearer token of the operator API (`/admin/v1/…`); `None` disables it. It can create
    /// users, move balances and provision devices, so it is never open.
    pub admin_token: Option<String>,
    /// The acquirer's base URL, where freezing or unfreezing a user is reported
    /// (`reportCustomer`, delivered through the notification outbox); `None`: not reported.
    pub acquirer_url: Option<String>,
    pub clock: Arc<dyn Clock>,
}

impl WalletConfig {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &str,
        cii: &str,
        currency: Currency,
        db_path: PathBuf,
        client_id: &str,
        signer: Signer,
        acquirer_client_id: &str,
        acquirer_public_key: paycode_sign::PublicKey,
    ) -> WalletConfig {
        WalletConfig {
            name: name.to_string(),
            cii: cii.to_string(),
            currency,
            db_path,
            postgres: None,
            client_id: client_id.to_string(),
            signer,
            acquirer_client_id: acquirer_client_id.to_string(),
            acquirer_public_key,
            code_step_s: CODE_STEP_S_DEFAULT,
            code_validity_s: 60,
            challenge_timeout_s: 120,
            notify_retry_ms: vec![
                0, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 120_000, 300_000,
            ],
            notify_timeout_ms: 5_000,
            password_max_attempts: 5,
            password_memory_kib: paycode_sign::password::MEMORY_KIB_DEFAULT,
            guess_limits: GuessLimits::default(),
            background_interval_ms: 250,
            background_batch_max: 64,
            max_body_bytes: 64 * 1024,
            request_time_window_s: paycode_http::request_time::REQUEST_TIME_WINDOW_DEFAULT_S,
            admin_token: None,
            acquirer_url: None,
            clock: Arc::new(SystemClock),
        }
    }

    fn validate(&self) -> Result<(), WalletError> {
        let bad = |m: String| Err(WalletError::Config(m));
        if self.cii.len() != 6 || !self.cii.bytes().all(|b| b.is_ascii_digit()) {
            return bad(format!(
                "wallet {}: CII {:?} is not 6 digits",
                self.name, self.cii
            ));
        }
        if self.code_step_s == 0 || self.code_validity_s == 0 {
            return bad(format!(
                "wallet {}: code step and validity must be positive",
                self.name
            ));
        }
        if self.notify_retry_ms.is_empty() {
            return bad(format!(
                "wallet {}: the notify retry schedule is empty",
                self.name
            ));
        }
        if self.password_max_attempts == 0 {
            return bad(format!(
                "wallet {}: password_max_attempts must be positive",
                self.name
            ));
        }
        if let Err(e) = paycode_http::request_time::validate_window_s(self.request_time_window_s) {
            return bad(format!("wallet {}: {e}", self.name));
        }
        if self.background_batch_max == 0 {
            return bad(format!(
                "wallet {}: background_batch_max must be positive",
                self.name
            ));
        }
        if let Err(e) = self.guess_limits.validate() {
            return bad(format!("wallet {}: {e}", self.name));
        }
        Ok(())
    }
}

/// A user to create (operator or demo seeding). Amounts in the wallet's minor units. Its
/// `Debug` hides the password.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewUser {
    pub name: String,
    pub password: String,
    pub balance_minor: i64,
    #[serde(default)]
    pub status_frozen: bool,
    pub password_free_per_payment_minor: i64,
    pub password_free_daily_minor: i64,
    pub hard_limit_per_payment_minor: i64,
    pub hard_limit_daily_minor: i64,
}

impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("name", &self.name)
            .field("password", &"***")
            .field("balance_minor", &self.balance_minor)
            .field("status_frozen", &self.status_frozen)
            .field(
                "password_free_per_payment_minor",
                &self.password_free_per_payment_minor,
            )
            .field("password_free_daily_minor", &self.password_free_daily_minor)
            .field(
                "hard_limit_per_payment_minor",
                &self.hard_limit_per_payment_minor,
            )
            .field("hard_limit_daily_minor", &self.hard_limit_daily_minor)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("invalid wallet configuration: {0}")]
    Config(String),
    #[error("user {0:?} does not exist")]
    UnknownUser(String),
    #[error("invalid user: {0}")]
    InvalidUser(String),
    #[error("password hashing failed: {0}")]
    Password(String),
    #[error("amount overflows")]
    Overflow,
}

/// A running wallet; cheap to clone.
#[derive(Clone)]
pub struct Wallet {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: WalletConfig,
    pub(crate) db: Db,
    pub(crate) notify_client: SignedClient,
    id_counter: AtomicU64,
}

impl Inner {
    pub(crate) fn now_ms(&self) -> i64 {
        self.config.clock.now_ms()
    }

    pub(crate) fn window(&self) -> code::CodeWindow {
        code::CodeWindow {
            step_s: self.config.code_step_s,
            validity_s: self.config.code_validity_s,
        }
    }

    /// Runs storage functions on a reader connection.
    pub(crate) async fn read_store<R, F>(&self, f: F) -> Result<R, WalletError>
    where
        R: Send + 'static,
        F: Fn(&paycode_db::sql::Connection<'_>) -> Result<R, StoreError> + Send + 'static,
    {
        self.db.read(move |c| Ok(f(c)?)).await
    }

    /// Runs storage functions as one job on the writer (nothing to decide between them).
    pub(crate) async fn write_store<R, F>(&self, f: F) -> Result<R, WalletError>
    where
        R: Send + 'static,
        F: Fn(&paycode_db::sql::Connection<'_>) -> Result<R, StoreError> + Send + 'static,
    {
        self.db.write(move |c| Ok(f(c)?)).await
    }

    /// A new id of this wallet: a kind letter, the time and a counter (unique within the
    /// process; the random counter start keeps restarts apart).
    pub(crate) fn new_id(&self, kind: &str) -> String {
        let n = self.id_counter.fetch_add(1, Ordering::Relaxed) % 100_000_000;
        format!("{kind}{}{n:08}", self.now_ms())
    }
}

impl std::fmt::Debug for Wallet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wallet")
            .field("name", &self.inner.config.name)
            .field("cii", &self.inner.config.cii)
            .finish_non_exhaustive()
    }
}

impl Wallet {
    /// Opens (creating if needed) the wallet's store.
    pub fn open(config: WalletConfig) -> anyhow::Result<Wallet> {
        use anyhow::Context;
        config.validate()?;
        let location = match &config.postgres {
            Some(t) => paycode_db::Location::Postgres(t.clone()),
            None => paycode_db::Location::File(config.db_path.clone()),
        };
        let db_config = DbConfig::from_env().map_err(|e| anyhow::anyhow!(e))?;
        let db = Db::open_at(&location, &store::migrations(), db_config)
            .with_context(|| format!("opening the store of wallet {}", config.name))?;
        let notify_client = SignedClient::new(
            &config.client_id,
            config.signer.clone(),
            Some(config.acquirer_public_key.clone()),
            Duration::from_millis(config.notify_timeout_ms),
        )
        .with_clock({
            // Our `notifyPayment`s carry the time of the clock that decided them.
            let clock = config.clock.clone();
            Arc::new(move || clock.now_ms())
        });
        let mut seed = [0u8; 4];
        random::random_bytes(&mut seed);
        Ok(Wallet {
            inner: Arc::new(Inner {
                config,
                db,
                notify_client,
                id_counter: AtomicU64::new(u64::from(u32::from_be_bytes(seed))),
            }),
        })
    }

    pub fn config(&self) -> &WalletConfig {
        &self.inner.config
    }

    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// The MPP API (`/aps/api/v1/payments/…`), the customer API (`/customer/v1/…`), the operator
    /// API (`/admin/v1/…`) and `/healthz`. Any other path answers a signed `INVALID_API`.
    pub fn router(&self) -> Router {
        let state = self.inner.clone();
        Router::new()
            .merge(mpp::routes())
            .merge(customer::routes())
            .merge(admin::routes(state.clone()))
            .fallback(mpp::invalid_api)
            .layer(axum::extract::DefaultBodyLimit::max(
                self.inner.config.max_body_bytes,
            ))
            .with_state(state)
    }

    /// Runs [`Wallet::run_background_once`] forever, pausing between passes.
    pub fn spawn_background(&self) -> tokio::task::JoinHandle<()> {
        let wallet = self.clone();
        tokio::spawn(async move {
            let pause = Duration::from_millis(wallet.inner.config.background_interval_ms);
            loop {
                match wallet.run_background_once().await {
                    Ok(0) => tokio::time::sleep(pause).await,
                    Ok(_) => tokio::task::yield_now().await,
                    Err(e) => {
                        tracing::warn!(wallet = %wallet.name(), error = %e, "background pass failed");
                        tokio::time::sleep(pause).await;
                    }
                }
            }
        })
    }

    /// One pass: closes challenges past their deadline (each with its `notifyPayment F`) and
    /// attempts every due notification. Returns the work done (challenges closed plus delivery
    /// attempts); tests call this until it returns 0 instead of sleeping.
    pub async fn run_background_once(&self) -> anyhow::Result<usize> {
        background::run_once(&self.inner).await
    }

    /// Creates a user; a no-op if one with that name exists.
    pub async fn create_user(&self, u: NewUser) -> anyhow::Result<()> {
        users::create_user(&self.inner, u).await?;
        Ok(())
    }

    pub async fn balance_of(&self, user: &str) -> anyhow::Result<Money> {
        let minor = users::balance_of(&self.inner, user).await?;
        Ok(Money::new(minor, self.inner.config.currency))
    }

    /// Credits a user by operator top-up (with its ledger row).
    pub async fn top_up(&self, user: &str, amount_minor: i64) -> anyhow::Result<Money> {
        let minor = users::top_up(&self.inner, user, amount_minor).await?;
        Ok(Money::new(minor, self.inner.config.currency))
    }

    pub async fn set_frozen(&self, user: &str, frozen: bool) -> anyhow::Result<()> {
        users::set_flag(&self.inner, user, users::UserFlag::Frozen(frozen)).await?;
        Ok(())
    }

    /// Clears a password lock and its wrong-attempt count.
    pub async fn unlock_password(&self, user: &str) -> anyhow::Result<()> {
        users::set_flag(&self.inner, user, users::UserFlag::Unlock).await?;
        Ok(())
    }

    /// Re-checks the wallet's invariants from the store: per user, balance = sum of ledger rows
    /// and never negative; per payment, ledger rows match its state (one debit when paid, one
    /// credit back when reversed, refund credits = refunded total ≤ paid). Empty when all hold.
    pub async fn audit(&self) -> anyhow::Result<Vec<AuditFinding>> {
        Ok(audit::audit(&self.inner).await?)
    }

    /// Undelivered `notifyPayment` rows (outbox depth).
    pub async fn pending_notifications(&self) -> anyhow::Result<usize> {
        Ok(notify::pending_notifications(&self.inner).await?)
    }

    /// Stops the store's writer after queued writes (for a clean shutdown).
    pub fn close(&self) {
        self.inner.db.close();
    }
}

/// Formats epoch milliseconds as the APIs' ISO-8601 (UTC, milliseconds).
pub(crate) fn iso_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
