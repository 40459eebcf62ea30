//! The acquirer's use cases: pay, inquire, cancel, refund, and applying what wallets report.
//!
//! Every change of a payment goes through [`Acquirer::apply`], which runs the core transition
//! table and writes the new state with its journal entry, its outbox notification and its
//! timeline event in one group-commit job. No database work is ever held across a wallet call:
//! a use case writes its intent (a `PROCESSING` row), calls the wallet, then writes the outcome.
//! If the process dies in between, the row's `next_check_ms` hands it to the reconciler.

use crate::config::AcquirerConfig;
use crate::registry::{Registry, Snapshot, Wallet};
use crate::store::{self, NewNotification, PaymentRow, RefundRow, StoreError};
use crate::wallet_client::WalletClient;
use crate::wire;
use paycode_core::code::PaymentCode;
use paycode_core::fx::{Flow, FlowRequest, RateTable};
use paycode_core::guess::{Source, SourceLimit};
use paycode_core::ledger::JournalEntry;
use paycode_core::payment::{
    self, CancelDecision, Effect, Outcome, PaymentEvent, PaymentState, RefundEvent, RefundState,
};
use paycode_core::risk::{RuleSet, Verdict};
use paycode_core::settlement::Movement;
use paycode_core::{Currency, Money, ResultCode};
use paycode_db::{Db, DbError};
use paycode_http::{CallError, SignedClient};
use paycode_proto::{Amount, Quote, merchant, mpp};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// A wire-level failure: the result code and a message naming what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ResultCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ResultCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
        }
    }

    /// `PARAM_ILLEGAL` naming the field.
    pub fn param(field: &str, why: impl std::fmt::Display) -> ApiError {
        ApiError::new(ResultCode::PARAM_ILLEGAL, format!("{field}: {why}"))
    }
}

/// The one place a storage failure becomes a wire answer. None of them is the merchant's
/// fault, so each is `UNKNOWN_EXCEPTION` (the merchant retries with the same parameters, which
/// replays idempotently); the log says which it was.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::Corrupt(_) => tracing::error!(error = %e, "corrupt stored data"),
            StoreError::NotFound(_) | StoreError::Unique { .. } => {
                tracing::error!(error = %e, "store precondition failed")
            }
            StoreError::Database(_) => tracing::error!(error = %e, "database failure"),
        }
        ApiError::new(
            ResultCode::UNKNOWN_EXCEPTION,
            "internal error; retry with the same parameters",
        )
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        ApiError::from(StoreError::from(e))
    }
}

/// Wall-clock time with an adjustable offset, so tests can move through windows and expiries.
#[derive(Clone, Default, Debug)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    pub fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis() + self.offset_ms.load(Ordering::Relaxed)
    }

    pub fn advance_ms(&self, ms: i64) {
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// This clock for a signing client's `Request-Time`.
    pub fn now_fn(&self) -> paycode_http::NowMs {
        let clock = self.clone();
        Arc::new(move || clock.now_ms())
    }
}

/// Unique ids: 14-digit UTC time, 4-digit random node, 6-digit per-process sequence.
#[derive(Debug)]
struct IdGen {
    node: u64,
    seq: AtomicU64,
}

impl IdGen {
    fn new() -> IdGen {
        let mut b = [0u8; 8];
        aws_lc_rs::rand::fill(&mut b).expect("the system random source is available");
        IdGen {
            node: u64::from_le_bytes(b) % 10_000,
            seq: AtomicU64::new(0),
        }
    }

    fn next(&self, now_ms: i64) -> String {
        let t = chrono::DateTime::from_timestamp_millis(now_ms).unwrap_or_default();
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) % 1_000_000;
        format!("{}{:04}{:06}", t.format("%Y%m%d%H%M%S"), self.node, seq)
    }
}

/// A validated pay request.
#[derive(Debug, Clone)]
pub struct PayInput {
    pub client_id: String,
    pub payment_request_id: String,
    pub amount: Money,
    pub code: PaymentCode,
    pub order: merchant::Order,
    pub notify_url: Option<String>,
    pub expiry_ms: Option<i64>,
    pub settlement_currency: Option<Currency>,
}

#[derive(Debug, Clone)]
pub struct RefundInput {
    pub client_id: String,
    pub refund_request_id: String,
    pub payment_id: String,
    pub amount: Money,
    pub reason: Option<String>,
    pub notify_url: Option<String>,
}

/// What the wallet told us besides the state.
#[derive(Debug, Clone, Default)]
pub struct WalletFacts {
    pub wallet_payment_id: Option<String>,
    pub customer_id: Option<String>,
    pub message: Option<String>,
}

/// A validated, priced payment, ready to insert.
struct Prepared {
    row: PaymentRow,
    pricing: Pricing,
    wallet: Wallet,
    merchant_mcc: String,
    store_mcc: Option<String>,
    merchant_country: Option<String>,
    merchant_time_zone: String,
}

/// Amounts of a payment in the wallet's and the settlement currency.
#[derive(Debug, Clone)]
struct Pricing {
    pay_to: Money,
    payment_quote: Option<(Quote, i64, i64)>,
    settle: Money,
    settlement_quote: Option<(Quote, i64, i64)>,
    fee: Money,
}

pub(crate) struct Inner {
    pub config: AcquirerConfig,
    pub db: Db,
    pub registry: Registry,
    pub wallets: WalletClient,
    pub notifier: SignedClient,
    pub clock: Clock,
    pub rates: RwLock<Arc<RateTable>>,
    /// The stored rate file's `updated_ms` this process last loaded (0: none).
    rates_loaded_ms: AtomicI64,
    pub risk_rules: RwLock<Arc<RuleSet>>,
    ids: IdGen,
}

/// The acquirer: cheap to clone, shared by the HTTP handlers and the background workers.
#[derive(Clone)]
pub struct Acquirer {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) fn sha256_hex(parts: &[&str]) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for p in parts {
        ctx.update(p.as_bytes());
        ctx.update(&[0x1f]);
    }
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The ledger name of a merchant: unique across clients.
pub(crate) fn merchant_key(p: &PaymentRow) -> String {
    format!("{}/{}", p.client_id, p.reference_merchant_id)
}

fn money(minor: i64, currency: &str) -> Result<Money, StoreError> {
    let c = Currency::parse(currency)
        .map_err(|e| StoreError::Corrupt(format!("stored currency: {e}")))?;
    Ok(Money::new(minor, c))
}

/// A paid payment as a movement of money: the wallet owes what the user paid, the merchant is
/// owed the settlement amount less the fee.
pub(crate) fn payment_movement(p: &PaymentRow) -> Result<Movement, StoreError> {
    Ok(Movement {
        wallet: p.wallet.clone(),
        merchant: merchant_key(p),
        wallet_amount: money(p.pay_to_minor, &p.pay_to_currency)?,
        settlement_amount: money(p.settle_minor, &p.settle_currency)?,
        fee: money(p.fee_minor, &p.settle_currency)?,
    })
}

pub(crate) fn refund_movement(p: &PaymentRow, r: &RefundRow) -> Result<Movement, StoreError> {
    Ok(Movement {
        wallet: p.wallet.clone(),
        merchant: merchant_key(p),
        wallet_amount: money(r.wallet_amount_minor, &r.wallet_currency)?,
        settlement_amount: money(r.settle_minor, &r.settle_currency)?,
        fee: money(r.fee_minor, &r.settle_currency)?,
    })
}

pub(crate) fn payment_entry(p: &PaymentRow) -> Result<JournalEntry, StoreError> {
    paycode_core::settlement::payment_entry(&payment_movement(p)?)
        .map_err(|e| StoreError::Corrupt(format!("payment {} entry: {e}", p.payment_id)))
}

pub(crate) fn reversal_entry(p: &PaymentRow) -> Result<JournalEntry, StoreError> {
    paycode_core::settlement::cancel_entry(&payment_movement(p)?)
        .map_err(|e| StoreError::Corrupt(format!("payment {} reversal: {e}", p.payment_id)))
}

pub(crate) fn refund_entry(p: &PaymentRow, r: &RefundRow) -> Result<JournalEntry, StoreError> {
    paycode_core::settlement::refund_entry(&refund_movement(p, r)?)
        .map_err(|e| StoreError::Corrupt(format!("refund {} entry: {e}", r.refund_id)))
}

/// The wire form of a core quote, with its start and expiry for storage.
pub(crate) fn wire_quote(q: &paycode_core::fx::Quote) -> (Quote, i64, i64) {
    (
        Quote {
            quote_id: q.id().to_string(),
            quote_currency_pair: q.pair(),
            quote_price: q.price().to_string(),
            quote_start_time: Some(wire::iso(q.start_ms())),
            quote_expiry_time: Some(wire::iso(q.expiry_ms())),
            guaranteed: true,
        },
        q.start_ms(),
        q.expiry_ms(),
    )
}

enum Inserted<T> {
    Created(T),
    Existing(T),
    /// Refused by a risk rule: stored as failed, never routed.
    Rejected(T),
}

impl Acquirer {
    pub async fn open(config: AcquirerConfig) -> anyhow::Result<Acquirer> {
        use anyhow::Context;
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("invalid acquirer configuration: {e}"))?;
        let migrations = store::migrations();
        let db = Db::open_at(
            &config.store_location(),
            &migrations,
            paycode_db::DbConfig::from_env().map_err(|e| anyhow::anyhow!(e))?,
        )
        .with_context(|| format!("opening the acquirer store {}", config.store_name()))?;
        let registry = Registry::default();
        registry
            .reload(&db)
            .await
            .context("loading reference data")?;
        // One clock for everything we do, including the `Request-Time` our wallet calls and
        // notifications carry.
        let clock = Clock::default();
        let wallets = WalletClient::new(
            &config.client_id_at_wallets,
            config.signer.clone(),
            Duration::from_millis(config.limits.wallet_pay_timeout_ms),
            Duration::from_millis(config.limits.wallet_call_timeout_ms),
            clock.now_fn(),
        );
        let rates_loaded_ms = db
            .read(|c| store::rate_file_updated_ms(c).map_err(ApiError::from))
            .await
            .map_err(|e| anyhow::anyhow!("reading the rate table: {}", e.message))?
            .unwrap_or(0);
        let rate_text = db
            .read(|c| store::rate_file(c).map_err(ApiError::from))
            .await
            .map_err(|e| anyhow::anyhow!("reading the rate table: {}", e.message))?;
        let rates = match rate_text {
            Some(text) => paycode_core::fx::parse_rate_file(&text)
                .map_err(|e| anyhow::anyhow!("the stored rate table is invalid: {e}"))?,
            None => RateTable::new(),
        };
        let rules_text = db
            .read(store::risk::stored_rules)
            .await
            .map_err(|e| anyhow::anyhow!("reading the risk rules: {e}"))?;
        let risk_rules = match rules_text {
            Some((text, version)) => RuleSet {
                version,
                rules: crate::risk::parse_rules(&text).map_err(|e| {
                    anyhow::anyhow!("the stored risk rules are invalid: {}", e.message)
                })?,
            },
            None => RuleSet::default(),
        };
        let notifier = SignedClient::new(
            &config.client_id_at_wallets,
            config.signer.clone(),
            None,
            Duration::from_millis(config.limits.notify_timeout_ms),
        )
        .with_clock(clock.now_fn());
        Ok(Acquirer {
            inner: Arc::new(Inner {
                config,
                db,
                registry,
                wallets,
                notifier,
                clock,
                rates: RwLock::new(Arc::new(rates)),
                rates_loaded_ms: AtomicI64::new(rates_loaded_ms),
                risk_rules: RwLock::new(Arc::new(risk_rules)),
                ids: IdGen::new(),
            }),
        })
    }

    pub fn config(&self) -> &AcquirerConfig {
        &self.inner.config
    }

    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.registry.snapshot()
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    fn wallet_of(&self, p: &PaymentRow) -> Result<Wallet, ApiError> {
        self.snapshot()
            .wallets
            .get(&p.wallet)
            .cloned()
            .ok_or_else(|| {
                ApiError::new(
                    ResultCode::UNKNOWN_EXCEPTION,
                    format!(
                        "wallet {} of this payment is no longer registered",
                        p.wallet
                    ),
                )
            })
    }

    /// The current rate table.
    pub fn rates(&self) -> Arc<RateTable> {
        self.inner.rates.read().expect("rate lock poisoned").clone()
    }

    /// Replaces the rate table with a rate file (validated first), durably.
    pub async fn set_rate_file(&self, text: String) -> Result<(), ApiError> {
        let table = paycode_core::fx::parse_rate_file(&text)
            .map_err(|e| ApiError::new(ResultCode::PARAM_ILLEGAL, e.to_string()))?;
        let now = self.now_ms();
        self.inner
            .db
            .write(move |c| store::set_rate_file(c, &text, now).map_err(ApiError::from))
            .await?;
        *self.inner.rates.write().expect("rate lock poisoned") = Arc::new(table);
        self.inner.rates_loaded_ms.store(now, Ordering::SeqCst);
        Ok(())
    }

    /// Picks up a rate file another process stored (one indexed read when nothing changed).
    pub async fn reload_rates(&self) -> Result<(), ApiError> {
        let stored = self
            .inner
            .db
            .read(|c| store::rate_file_updated_ms(c).map_err(ApiError::from))
            .await?;
        let Some(updated_ms) = stored else {
            return Ok(());
        };
        if updated_ms == self.inner.rates_loaded_ms.load(Ordering::SeqCst) {
            return Ok(());
        }
        let text = self
            .inner
            .db
            .read(|c| store::rate_file(c).map_err(ApiError::from))
            .await?
            .unwrap_or_default();
        let table = paycode_core::fx::parse_rate_file(&text).map_err(|e| {
            ApiError::new(
                ResultCode::UNKNOWN_EXCEPTION,
                format!("the stored rate table is invalid: {e}"),
            )
        })?;
        tracing::info!("exchange rates changed by another process; reloaded");
        *self.inner.rates.write().expect("rate lock poisoned") = Arc::new(table);
        self.inner
            .rates_loaded_ms
            .store(updated_ms, Ordering::SeqCst);
        Ok(())
    }

    /// Replaces the risk rules (validated first), durably; returns the rule set's version
    /// (unchanged when the list is the same text).
    pub async fn set_risk_rules(&self, json: String) -> Result<i64, ApiError> {
        let rules = crate::risk::parse_rules(&json)?;
        let now = self.now_ms();
        let version = self
            .inner
            .db
            .write(move |c| store::risk::store_rules(c, &json, now).map_err(ApiError::from))
            .await?;
        *self.inner.risk_rules.write().expect("risk lock poisoned") =
            Arc::new(RuleSet { version, rules });
        Ok(version)
    }

    /// The rule set in force in this process.
    pub fn risk_rules(&self) -> Arc<RuleSet> {
        self.inner
            .risk_rules
            .read()
            .expect("risk lock poisoned")
            .clone()
    }

    /// Picks up rules another process stored (one indexed read when nothing changed).
    pub async fn reload_risk_rules(&self) -> Result<(), ApiError> {
        let current = self.risk_rules().version;
        let stored = self
            .inner
            .db
            .read(|c| store::risk::rules_version(c).map_err(ApiError::from))
            .await?;
        if stored == current {
            return Ok(());
        }
        let Some((text, version)) = self
            .inner
            .db
            .read(|c| store::risk::stored_rules(c).map_err(ApiError::from))
            .await?
        else {
            return Ok(());
        };
        let rules = crate::risk::parse_rules(&text)?;
        tracing::info!(version, "risk rules changed by another process; reloaded");
        *self.inner.risk_rules.write().expect("risk lock poisoned") =
            Arc::new(RuleSet { version, rules });
        Ok(())
    }

    /// The stored rule list and its version.
    pub async fn risk_rules_json(&self) -> Result<(String, i64), ApiError> {
        Ok(self
            .inner
            .db
            .read(|c| store::risk::stored_rules(c).map_err(ApiError::from))
            .await?
            .unwrap_or_else(|| ("[]".to_string(), 0)))
    }

    /// A fresh quote id.
    pub fn next_quote_id(&self) -> String {
        format!("Q{}", self.inner.ids.next(self.now_ms()))
    }

    fn price(
        &self,
        flow: Flow,
        amount: Money,
        wallet_currency: Currency,
        settlement: Currency,
        fee_bps: u32,
    ) -> Result<Pricing, ApiError> {
        let now = self.now_ms();
        let validity_ms = self.inner.config.limits.quote_validity_s * 1000;
        let flow_amounts = self
            .rates()
            .price_flow(
                &FlowRequest {
                    flow,
                    amount,
                    wallet: wallet_currency,
                    settlement,
                    now_ms: now,
                    validity_ms,
                },
                || self.next_quote_id(),
            )
            .map_err(|e| {
                ApiError::new(
                    ResultCode::CURRENCY_NOT_SUPPORT,
                    format!(
                        "cannot price {amount} for a {wallet_currency} wallet and {settlement} settlement: {e}"
                    ),
                )
            })?;
        let fee = paycode_core::fee::fee_on(flow_amounts.settlement_amount, fee_bps)
            .map_err(|e| ApiError::new(ResultCode::INVALID_CONTRACT, format!("fee: {e}")))?;
        Ok(Pricing {
            pay_to: flow_amounts.wallet_amount,
            payment_quote: flow_amounts.payment_quote.as_ref().map(wire_quote),
            settle: flow_amounts.settlement_amount,
            settlement_quote: flow_amounts.settlement_quote.as_ref().map(wire_quote),
            fee,
        })
    }

    // ---------------------------------------------------------------- pay

    /// Pays with a scanned code: records the intent, asks the wallet, records the outcome.
    /// Validates a pay request against the registry and prices it: the row to insert, the
    /// pricing and the wallet. Pure in-memory work.
    fn prepare_payment(
        &self,
        input: &PayInput,
        hash: &str,
        now: i64,
    ) -> Result<Prepared, ApiError> {
        let snap = self.snapshot();
        let m = &input.order.merchant;
        let merchant = snap
            .merchant(&input.client_id, &m.reference_merchant_id)
            .ok_or_else(|| {
                ApiError::new(
                    ResultCode::MERCHANT_NOT_REGISTERED,
                    format!(
                        "merchant {:?} is not registered for client {}",
                        m.reference_merchant_id, input.client_id
                    ),
                )
            })?;
        if !merchant.active {
            return Err(ApiError::new(
                ResultCode::INVALID_MERCHANT_STATUS,
                format!("merchant {} is suspended", merchant.reference_merchant_id),
            ));
        }
        let currency = input.amount.currency();
        if !merchant.currencies.iter().any(|c| c == currency.code()) {
            return Err(ApiError::new(
                ResultCode::CURRENCY_NOT_SUPPORT,
                format!(
                    "merchant {} is not contracted for {currency} (contracted: {})",
                    merchant.reference_merchant_id,
                    merchant.currencies.join(", ")
                ),
            ));
        }
        if let Some(max) = merchant.max_amount_minor
            && input.amount.amount_minor() > max
        {
            return Err(ApiError::new(
                ResultCode::PAYMENT_AMOUNT_EXCEED_LIMIT,
                format!(
                    "amount {} is above this merchant's limit of {}",
                    input.amount,
                    Money::new(max, currency)
                ),
            ));
        }
        let store_id = m.store.as_ref().map(|s| s.reference_store_id.clone());
        let store_name = m.store.as_ref().and_then(|s| {
            s.store_name.clone().or_else(|| {
                merchant
                    .stores
                    .get(&s.reference_store_id)
                    .map(|st| st.name.clone())
            })
        });

        let wallet = accepting_wallet(&snap, &input.code)?;
        let settlement = match input.settlement_currency {
            Some(c) => c,
            None => Currency::parse(&merchant.settlement_currency).map_err(|e| {
                ApiError::new(
                    ResultCode::INVALID_CONTRACT,
                    format!("settlement currency: {e}"),
                )
            })?,
        };
        let wallet_currency = wallet
            .currencies
            .first()
            .and_then(|c| Currency::parse(c).ok())
            .ok_or_else(|| {
                ApiError::new(
                    ResultCode::CURRENCY_NOT_SUPPORT,
                    format!(
                        "wallet {} has no valid currency configured",
                        wallet.psp_name
                    ),
                )
            })?;
        let pricing = self.price(
            Flow::Payment,
            input.amount,
            wallet_currency,
            settlement,
            merchant.fee_bps,
        )?;
        let limits = &self.inner.config.limits;
        let expires_ms = input
            .expiry_ms
            .unwrap_or(now + limits.payment_expiry_default_s * 1000);
        if expires_ms <= now || expires_ms > now + limits.payment_expiry_max_s * 1000 {
            return Err(ApiError::param(
                "paymentExpiryTime",
                format!(
                    "must be in the future and at most {} s from now",
                    limits.payment_expiry_max_s
                ),
            ));
        }
        let row = PaymentRow {
            payment_id: self.inner.ids.next(now),
            client_id: input.client_id.clone(),
            payment_request_id: input.payment_request_id.clone(),
            request_hash: hash.to_string(),
            reference_merchant_id: m.reference_merchant_id.clone(),
            reference_store_id: store_id,
            merchant_name: m
                .merchant_name
                .clone()
                .unwrap_or_else(|| merchant.name.clone()),
            store_name,
            terminal_id: input
                .order
                .env
                .as_ref()
                .and_then(|e| e.store_terminal_id.clone()),
            amount_minor: input.amount.amount_minor(),
            currency: currency.code().to_string(),
            wallet: wallet.name.clone(),
            psp_name: wallet.psp_name.clone(),
            code_masked: input.code.masked(),
            pay_to_minor: pricing.pay_to.amount_minor(),
            pay_to_currency: pricing.pay_to.currency().code().to_string(),
            payment_quote: pricing
                .payment_quote
                .as_ref()
                .map(|q| serde_json::to_string(&q.0).expect("quotes serialize")),
            settle_minor: pricing.settle.amount_minor(),
            settle_currency: pricing.settle.currency().code().to_string(),
            settlement_quote: pricing
                .settlement_quote
                .as_ref()
                .map(|q| serde_json::to_string(&q.0).expect("quotes serialize")),
            fee_minor: pricing.fee.amount_minor(),
            state: PaymentState::Processing,
            result_code: ResultCode::PAYMENT_IN_PROCESS,
            result_message: String::new(),
            wallet_payment_id: None,
            psp_customer_id: None,
            notify_url: input
                .notify_url
                .clone()
                .or_else(|| merchant.notify_url.clone())
                .or_else(|| {
                    snap.clients
                        .get(&input.client_id)
                        .and_then(|c| c.notify_url.clone())
                }),
            created_ms: now,
            expires_ms,
            paid_ms: None,
            cancelled_ms: None,
            cancel_requested_ms: None,
            updated_ms: now,
            // If we crash during the wallet call, the reconciler takes over after this.
            next_check_ms: Some(now + limits.wallet_pay_timeout_ms as i64 + 2_000),
            n_checks: 0,
            buyer: crate::risk::buyer_key(&input.code),
        };
        let store_mcc = m.store.as_ref().and_then(|s| {
            s.store_mcc.clone().or_else(|| {
                merchant
                    .stores
                    .get(&s.reference_store_id)
                    .map(|st| st.mcc.clone())
            })
        });
        Ok(Prepared {
            row,
            pricing,
            wallet: wallet.clone(),
            merchant_mcc: merchant.mcc.clone(),
            store_mcc,
            merchant_country: merchant.country.clone(),
            merchant_time_zone: merchant.time_zone.clone(),
        })
    }

    pub async fn pay(&self, input: PayInput) -> Result<PaymentRow, ApiError> {
        let now = self.now_ms();
        let m = &input.order.merchant;
        let store_id = m.store.as_ref().map(|s| s.reference_store_id.clone());
        let hash = sha256_hex(&[
            "IN_STORE_PAYMENT",
            &input.amount.amount_minor().to_string(),
            input.amount.currency().code(),
            input.code.expose_digits(),
            &m.reference_merchant_id,
            store_id.as_deref().unwrap_or(""),
        ]);
        let prepared = match self.prepare_payment(&input, &hash, now) {
            Ok(x) => x,
            Err(e) => {
                // A repeat answers with the first attempt's state even if the request would be
                // refused now (merchant suspended, rates changed, route removed).
                let (cid, rid) = (input.client_id.clone(), input.payment_request_id.clone());
                let existing = self
                    .inner
                    .db
                    .read(move |c| {
                        store::payment_by_request_id(c, &cid, &rid).map_err(ApiError::from)
                    })
                    .await?;
                return match existing {
                    Some(p) => replay(p, &hash),
                    None => Err(e),
                };
            }
        };
        let Prepared {
            row,
            pricing,
            wallet,
            merchant_mcc,
            store_mcc,
            merchant_country,
            merchant_time_zone,
        } = prepared;
        let wallet = &wallet;
        let rules = self.risk_rules();
        let wallet_facts = (
            wallet.countries.clone(),
            wallet.transaction_currencies.clone(),
        );
        let code_key = crate::risk::code_key(input.code.expose_digits());
        let amount = input.amount;
        let guess_limits = GuessLimits::of(&self.inner.config.limits);
        let inserted = {
            let new_row = row.clone();
            let quotes = [
                (pricing.payment_quote.clone(), "PAYMENT"),
                (pricing.settlement_quote.clone(), "SETTLEMENT"),
            ];
            self.inner
                .db
                .write(move |c| {
                    let mut row = new_row.clone();
                    if let Some(p) =
                        store::payment_by_request_id(c, &row.client_id, &row.payment_request_id)?
                    {
                        return Ok(Inserted::Existing((p, None)));
                    }
                    // Over a guessing limit: refused before anything is stored or routed.
                    if let Some(why) = guess_refusal(c, &guess_limits, &row)? {
                        tracing::warn!(client_id = %row.client_id, code = %row.code_masked, "{why}");
                        return Err(ApiError::new(ResultCode::REQUEST_TRAFFIC_EXCEED_LIMIT, why));
                    }
                    // Risk: decided in this unit, so counters, decision and row are atomic.
                    let merchant = merchant_key(&row);
                    let now = row.created_ms;
                    let decision = crate::risk::decide(
                        c,
                        &rules,
                        &crate::risk::PaymentContext {
                            merchant: &merchant,
                            merchant_mcc: &merchant_mcc,
                            store_mcc: store_mcc.as_deref(),
                            merchant_country: merchant_country.as_deref(),
                            merchant_time_zone: &merchant_time_zone,
                            wallet: &row.wallet,
                            wallet_countries: &wallet_facts.0,
                            wallet_transaction_currencies: &wallet_facts.1,
                            amount,
                            code_key: &code_key,
                            buyer: row.buyer.as_deref(),
                            now_ms: now,
                        },
                    )?;
                    if decision.anything_fired() {
                        store::risk::insert_decision(
                            c,
                            &store::risk::DecisionRow {
                                payment_id: row.payment_id.clone(),
                                created_ms: now,
                                rules_version: decision.version,
                                verdict: decision.verdict.as_str().to_string(),
                                hits: crate::risk::hits_json(&decision.hits),
                                shadow: crate::risk::hits_json(&decision.shadow),
                            },
                        )?;
                    }
                    if let Verdict::Reject(code) = decision.verdict {
                        let reason = decision
                            .deciding_hit()
                            .map(|h| h.reason.clone())
                            .unwrap_or_default();
                        // Through the transition table like every other state change: the
                        // row is written once, already failed, with the table's effects.
                        let event = PaymentEvent::RiskRejected(code);
                        let Outcome::Applied { next, effects } =
                            payment::transition(row.state, event)
                        else {
                            return Err(ApiError::from(StoreError::Corrupt(format!(
                                "payment {} in {} cannot take {event}",
                                row.payment_id, row.state
                            ))));
                        };
                        row.state = next;
                        row.result_code = next.result_code();
                        row.result_message = reason;
                        row.next_check_ms = None;
                        store::insert_payment(c, &row)?;
                        store::add_event(c, &row.payment_id, "RISK", &decision.describe(), now)?;
                        write_effects(c, &row, effects, now)?;
                        return Ok(Inserted::Rejected((row, Some(decision))));
                    }
                    if rules.needs().code_seen {
                        store::risk::remember_code(c, &code_key, &row.payment_id, now)?;
                    }
                    store::insert_payment(c, &row)?;
                    for (q, purpose) in &quotes {
                        if let Some((q, start, expiry)) = q {
                            store::insert_quote(c, q, *start, *expiry, purpose)?;
                        }
                    }
                    store::add_event(
                        c,
                        &row.payment_id,
                        "CREATED",
                        &format!(
                            "pay {} {} with code {} routed to {}; risk: {}",
                            row.amount_minor,
                            row.currency,
                            row.code_masked,
                            row.wallet,
                            decision.describe()
                        ),
                        now,
                    )?;
                    Ok::<_, ApiError>(Inserted::Created((row, Some(decision))))
                })
                .await?
        };
        let (row, decision) = match inserted {
            Inserted::Existing((p, _)) => return replay(p, &hash),
            Inserted::Rejected((p, decision)) => {
                count_risk_hits(decision.as_ref());
                tracing::info!(payment_id = %p.payment_id, code = %p.result_code, "payment refused by risk rules");
                return Ok(p);
            }
            Inserted::Created((r, decision)) => (r, decision),
        };
        count_risk_hits(decision.as_ref());
        let challenge = decision.is_some_and(|d| d.verdict == Verdict::Challenge);
        tracing::info!(payment_id = %row.payment_id, wallet = %row.wallet, code = %row.code_masked, "payment created");

        let req = mpp::PayRequest {
            payment_request_id: row.payment_id.clone(),
            payment_amount: Amount::new(&row.currency, row.amount_minor),
            pay_to_amount: Amount::new(&row.pay_to_currency, row.pay_to_minor),
            payment_quote: pricing.payment_quote.as_ref().map(|q| q.0.clone()),
            payment_method: merchant::PaymentMethod {
                payment_method_type: "CONNECT_WALLET".into(),
                payment_method_id: input.code.expose_digits().to_string(),
            },
            // Wallets know a merchant by the acquirer's own id for it, unique across merchant
            // clients (two clients may both call a shop "M1"); the wallet's guessing limits
            // count per that id.
            order: {
                let mut order = input.order.clone();
                order.merchant.reference_merchant_id = merchant_key(&row);
                order
            },
            payment_expiry_time: wire::iso(row.expires_ms),
            payment_notify_url: Some(format!(
                "{}{}",
                self.inner.config.public_url.trim_end_matches('/'),
                mpp::NOTIFY_PATH
            )),
            payment_factor: Some(mpp::PaymentFactor {
                is_in_store_payment: Some(true),
                in_store_payment_scenario: Some("PaymentCode".into()),
                user_verification_required: challenge.then_some(true),
            }),
        };
        let started = std::time::Instant::now();
        let answer = self.inner.wallets.pay(wallet, &req).await;
        self.absorb_pay_answer(&row, answer, started.elapsed().as_millis())
            .await
    }

    /// Applies the wallet's answer to `pay`, which took `latency_ms` (on the timeline).
    async fn absorb_pay_answer(
        &self,
        row: &PaymentRow,
        answer: Result<mpp::PayResponse, CallError>,
        latency_ms: u128,
    ) -> Result<PaymentRow, ApiError> {
        let id = row.payment_id.clone();
        match answer {
            Ok(resp) => {
                let source = format!(
                    "wallet pay answer {} {} in {latency_ms} ms",
                    resp.result.result_status, resp.result.result_code
                );
                let facts = WalletFacts {
                    wallet_payment_id: resp.payment_id.clone(),
                    customer_id: resp.customer_id.clone(),
                    message: Some(resp.result.result_message.clone()),
                };
                match resp.result.result_status.as_str() {
                    "S" => {
                        self.apply(&id, PaymentEvent::WalletSucceeded, facts, &source)
                            .await
                    }
                    "F" => {
                        let code = wallet_failure_code(&resp.result.result_code);
                        self.apply(&id, PaymentEvent::WalletFailed(code), facts, &source)
                            .await
                    }
                    _ => {
                        let detail = format!(
                            "wallet answered {} {} in {latency_ms} ms: waiting",
                            resp.result.result_code, resp.result.result_message
                        );
                        self.schedule_check(&id, ResultCode::PAYMENT_IN_PROCESS, &detail)
                            .await
                    }
                }
            }
            Err(CallError::NotDelivered(why)) => {
                tracing::warn!(payment_id = %id, error = %why, "wallet unreachable");
                let facts = WalletFacts {
                    message: Some(format!(
                        "the wallet is unreachable ({why}); nothing was charged"
                    )),
                    ..WalletFacts::default()
                };
                self.apply(
                    &id,
                    PaymentEvent::WalletFailed(ResultCode::PROCESS_FAIL),
                    facts,
                    &format!("wallet unreachable after {latency_ms} ms"),
                )
                .await
            }
            Err(CallError::Unknown(why)) => {
                tracing::warn!(payment_id = %id, error = %why, "wallet outcome unknown");
                self.schedule_check(
                    &id,
                    ResultCode::UNKNOWN_EXCEPTION,
                    &format!(
                        "the wallet's answer was lost after {latency_ms} ms; inquire for the outcome"
                    ),
                )
                .await
            }
        }
    }

    /// Leaves the payment PROCESSING and hands it to the reconciler.
    /// `code` says what the merchant is told meanwhile: `PAYMENT_IN_PROCESS` when the wallet said
    /// so, `UNKNOWN_EXCEPTION` when its answer was lost.
    async fn schedule_check(
        &self,
        payment_id: &str,
        code: ResultCode,
        detail: &str,
    ) -> Result<PaymentRow, ApiError> {
        let now = self.now_ms();
        let next = now + self.inner.config.limits.reconcile_interval_ms;
        let (id, detail) = (payment_id.to_string(), detail.to_string());
        self.inner
            .db
            .write(move |c| {
                let mut p = store::payment_by_id(c, &id)?
                    .ok_or_else(|| StoreError::NotFound(format!("payment {id}")))?;
                if p.state == PaymentState::Processing {
                    p.next_check_ms = Some(next);
                    p.result_code = code;
                    p.result_message = detail.clone();
                    p.updated_ms = now;
                    store::update_payment(c, &p)?;
                    store::add_event(c, &id, "WALLET", &detail, now)?;
                }
                Ok::<_, ApiError>(store::payment_by_id(c, &id)?.unwrap_or(p))
            })
            .await
    }

    /// Applies an event to a payment through the transition table, writing the new state, its
    /// journal entry, its notification and its timeline event atomically.
    pub async fn apply(
        &self,
        payment_id: &str,
        event: PaymentEvent,
        facts: WalletFacts,
        source: &str,
    ) -> Result<PaymentRow, ApiError> {
        let now = self.now_ms();
        let (id, source) = (payment_id.to_string(), source.to_string());
        let guess_limits = GuessLimits::of(&self.inner.config.limits);
        let rules = self.risk_rules();
        let snap = self.snapshot();
        let mcc_of = move |p: &PaymentRow| -> String {
            snap.merchant(&p.client_id, &p.reference_merchant_id)
                .map(|m| {
                    p.reference_store_id
                        .as_ref()
                        .and_then(|s| m.stores.get(s))
                        .map_or_else(|| m.mcc.clone(), |s| s.mcc.clone())
                })
                .unwrap_or_default()
        };
        let result = self
            .inner
            .db
            .write(move |c| {
                let mut p = store::payment_by_id(c, &id)?
                    .ok_or_else(|| StoreError::NotFound(format!("payment {id}")))?;
                let state = p.state;
                match payment::transition(state, event) {
                    Outcome::Applied { next, effects } => {
                        p.state = next;
                        p.result_code = next.result_code();
                        p.result_message = match next {
                            PaymentState::Fail(code) => facts
                                .message
                                .clone()
                                .filter(|m| !m.is_empty())
                                .unwrap_or_else(|| code.default_message().to_string()),
                            _ => String::new(),
                        };
                        if facts.wallet_payment_id.is_some() {
                            p.wallet_payment_id = facts.wallet_payment_id.clone();
                        }
                        if facts.customer_id.is_some() {
                            p.psp_customer_id = facts.customer_id.clone();
                        }
                        match next {
                            PaymentState::Success => p.paid_ms = Some(now),
                            PaymentState::Cancelled => p.cancelled_ms = Some(now),
                            _ => {}
                        }
                        p.next_check_ms = None;
                        p.updated_ms = now;
                        store::update_payment(c, &p)?;
                        crate::risk::learn_from_answer(
                            c,
                            &rules,
                            &p,
                            &mcc_of,
                            next == PaymentState::Success,
                            now,
                        )?;
                        if next == PaymentState::Fail(ResultCode::INVALID_CODE) {
                            count_guess(c, &guess_limits, &p)?;
                        }
                        write_effects(c, &p, effects, now)?;
                        store::add_event(
                            c,
                            &p.payment_id,
                            "STATE",
                            &format!("{state} -> {next} on {event} ({source})"),
                            now,
                        )?;
                        Ok::<_, ApiError>((p, Some(next), None))
                    }
                    Outcome::Ignored => Ok((p, None, None)),
                    Outcome::Conflict(why) => {
                        store::add_event(
                            c,
                            &p.payment_id,
                            "CONFLICT",
                            &format!("{why}: {event} in {state} ({source})"),
                            now,
                        )?;
                        Ok((p, None, Some(why)))
                    }
                }
            })
            .await?;
        let (p, next, conflict) = result;
        if let Some(next) = next {
            tracing::info!(payment_id = %p.payment_id, state = %next, "payment state changed");
            metrics::counter!("paycode_payments_final_total", "status" => next.status_str(), "code" => next.result_code().as_str()).increment(1);
        }
        if let Some(why) = conflict {
            tracing::error!(payment_id = %p.payment_id, %event, "{why}");
        }
        Ok(p)
    }

    // ---------------------------------------------------------------- inquiry

    /// Finds a payment for a client: by `paymentId` (wins) or `paymentRequestId`.
    pub async fn find_payment(
        &self,
        client_id: &str,
        payment_id: Option<&str>,
        payment_request_id: Option<&str>,
    ) -> Result<PaymentRow, ApiError> {
        let (cid, pid, rid) = (
            client_id.to_string(),
            payment_id.map(str::to_string),
            payment_request_id.map(str::to_string),
        );
        if pid.is_none() && rid.is_none() {
            return Err(ApiError::param(
                "paymentId",
                "paymentId or paymentRequestId is required",
            ));
        }
        let found = self
            .inner
            .db
            .read(move |c| match (&pid, &rid) {
                (Some(pid), _) => store::payment_by_id(c, pid).map_err(ApiError::from),
                (None, Some(rid)) => {
                    store::payment_by_request_id(c, &cid, rid).map_err(ApiError::from)
                }
                (None, None) => Ok(None),
            })
            .await?;
        // Another client's payment is answered exactly as one that does not exist, so that
        // payment ids cannot be probed (SPEC §11).
        found.filter(|p| p.client_id == client_id).ok_or_else(|| {
            ApiError::new(
                ResultCode::ORDER_NOT_EXIST,
                "no such payment for this client",
            )
        })
    }

    pub async fn refunds_of(&self, payment_id: &str) -> Result<Vec<RefundRow>, ApiError> {
        let id = payment_id.to_string();
        self.inner
            .db
            .read(move |c| store::refunds_of_payment(c, &id).map_err(ApiError::from))
            .await
    }

    // ---------------------------------------------------------------- cancel

    /// The end of the cancel window for a payment created at `created_ms`: the configured local
    /// time on the next day in the acquirer's time zone.
    pub fn cancel_deadline_ms(&self, created_ms: i64) -> i64 {
        use chrono::{Duration as CDuration, TimeZone};
        let tz = self.inner.config.time_zone;
        let created = tz.timestamp_millis_opt(created_ms).single();
        let Some(created) = created else {
            return created_ms + 24 * 3_600_000;
        };
        let next_day = created.date_naive() + CDuration::days(1);
        let minutes = i64::from(self.inner.config.limits.cancel_window_next_day_minutes);
        let local =
            next_day.and_hms_opt(0, 0, 0).expect("midnight exists") + CDuration::minutes(minutes);
        tz.from_local_datetime(&local)
            .earliest()
            .map(|d| d.timestamp_millis())
            .unwrap_or(created_ms + 24 * 3_600_000)
    }

    /// Merchant cancel: voids an unfinished payment or reverses a paid one (SPEC §2.5).
    /// Returns the payment and the cancel time.
    pub async fn cancel(&self, p: PaymentRow) -> Result<(PaymentRow, i64), ApiError> {
        let now = self.now_ms();
        let refunds = self.refunds_of(&p.payment_id).await?;
        let has_refunds = refunds
            .iter()
            .any(|r| !matches!(r.state, RefundState::Fail(_)));
        let within = now <= self.cancel_deadline_ms(p.created_ms);
        match payment::decide_cancel(p.state, within, has_refunds) {
            CancelDecision::Reject(code) => {
                let message = match code {
                    ResultCode::CANCEL_WINDOW_EXCEED => {
                        "the cancel window has passed; refund instead".to_string()
                    }
                    ResultCode::PROCESS_FAIL => {
                        "the payment has refunds; it can no longer be cancelled".to_string()
                    }
                    c => c.default_message().to_string(),
                };
                Err(ApiError::new(code, message))
            }
            CancelDecision::AlreadyClosed => {
                Ok((p.clone(), p.cancelled_ms.unwrap_or(p.updated_ms)))
            }
            CancelDecision::AskWallet => {
                // Block new refunds while the wallet reverses, re-checking atomically.
                let id = p.payment_id.clone();
                let blocked = self
                    .inner
                    .db
                    .write(move |c| {
                        let mut p = store::payment_by_id(c, &id)?
                            .ok_or_else(|| StoreError::NotFound(format!("payment {id}")))?;
                        let busy = store::refunds_of_payment(c, &id)?
                            .iter()
                            .any(|r| !matches!(r.state, RefundState::Fail(_)));
                        if busy {
                            return Err(ApiError::new(
                                ResultCode::PROCESS_FAIL,
                                "the payment has refunds; it can no longer be cancelled",
                            ));
                        }
                        if p.cancel_requested_ms.is_none() {
                            p.cancel_requested_ms = Some(now);
                            store::update_payment(c, &p)?;
                            store::add_event(c, &id, "CANCEL", "merchant asked to cancel", now)?;
                        }
                        Ok(p)
                    })
                    .await?;
                let wallet = self.wallet_of(&blocked)?;
                match self.inner.wallets.cancel(&wallet, &p.payment_id).await {
                    Ok(resp) if resp.result.is_success() => {
                        let p = self
                            .apply(
                                &p.payment_id,
                                PaymentEvent::MerchantCancelConfirmed,
                                WalletFacts::default(),
                                "merchant cancel",
                            )
                            .await?;
                        let at = p.cancelled_ms.unwrap_or(p.updated_ms);
                        Ok((p, at))
                    }
                    Ok(resp) => {
                        self.clear_cancel_request(&p.payment_id).await?;
                        Err(ApiError::new(
                            ResultCode::PROCESS_FAIL,
                            format!(
                                "the wallet refused the cancel: {} {}",
                                resp.result.result_code, resp.result.result_message
                            ),
                        ))
                    }
                    Err(e) => Err(ApiError::new(
                        ResultCode::UNKNOWN_EXCEPTION,
                        format!(
                            "the wallet did not confirm the cancel ({e}); retry with the same parameters"
                        ),
                    )),
                }
            }
        }
    }

    async fn clear_cancel_request(&self, payment_id: &str) -> Result<(), ApiError> {
        let id = payment_id.to_string();
        self.inner
            .db
            .write(move |c| {
                if let Some(mut p) = store::payment_by_id(c, &id)? {
                    p.cancel_requested_ms = None;
                    store::update_payment(c, &p)?;
                }
                Ok::<_, ApiError>(())
            })
            .await
    }

    // ---------------------------------------------------------------- refund

    pub async fn refund(&self, input: RefundInput) -> Result<RefundRow, ApiError> {
        let payment = self
            .find_payment(&input.client_id, Some(&input.payment_id), None)
            .await?;
        let now = self.now_ms();
        let hash = sha256_hex(&[
            &input.payment_id,
            &input.amount.amount_minor().to_string(),
            input.amount.currency().code(),
        ]);
        let refund_id = self.inner.ids.next(now);
        let limits = self.inner.config.limits.clone();
        let pricing = match (
            Currency::parse(&payment.pay_to_currency),
            Currency::parse(&payment.settle_currency),
        ) {
            (Ok(w), Ok(s)) if input.amount.currency().code() == payment.currency => {
                self.price(Flow::Refund, input.amount, w, s, 0)?
            }
            _ => {
                return Err(ApiError::new(
                    ResultCode::CURRENCY_NOT_SUPPORT,
                    format!(
                        "refundAmount.currency must be the payment currency {}",
                        payment.currency
                    ),
                ));
            }
        };
        let next_check = now + limits.wallet_call_timeout_ms as i64 + 2_000;
        let inserted = {
            let input = input.clone();
            self.inner
                .db
                .write(move |c| {
                    // The payment first: reading it locks it (PostgreSQL), so a copy of this
                    // request running beside the first one waits here and then finds its
                    // refund, instead of counting it against the amount left.
                    let p = store::payment_by_id(c, &input.payment_id)?
                        .ok_or_else(|| ApiError::new(ResultCode::ORDER_NOT_EXIST, "no such payment"))?;
                    if let Some(r) = store::refund_by_request_id(c, &input.client_id, &input.refund_request_id)? {
                        if r.request_hash != hash {
                            return Err(ApiError::new(
                                ResultCode::REPEAT_REQ_INCONSISTENT,
                                "refundRequestId was used before with a different payment or amount",
                            ));
                        }
                        return Ok(Inserted::Existing(r));
                    }
                    if p.state != PaymentState::Success {
                        return Err(ApiError::new(
                            ResultCode::ORDER_STATUS_INVALID,
                            format!("only paid payments can be refunded; this one is {}", p.state.status_str()),
                        ));
                    }
                    if p.cancel_requested_ms.is_some() {
                        return Err(ApiError::new(
                            ResultCode::ORDER_STATUS_INVALID,
                            "a cancel of this payment is under way",
                        ));
                    }
                    if input.amount.currency().code() != p.currency {
                        return Err(ApiError::new(
                            ResultCode::CURRENCY_NOT_SUPPORT,
                            format!("refundAmount.currency must be the payment currency {}", p.currency),
                        ));
                    }
                    let paid_ms = p.paid_ms.unwrap_or(p.created_ms);
                    if now > paid_ms + limits.refund_window_days * 86_400_000 {
                        return Err(ApiError::new(
                            ResultCode::REFUND_WINDOW_EXCEED,
                            format!("refunds are accepted for {} days after payment", limits.refund_window_days),
                        ));
                    }
                    let live: Vec<RefundRow> = store::refunds_of_payment(c, &p.payment_id)?
                        .into_iter()
                        .filter(|r| !matches!(r.state, RefundState::Fail(_)))
                        .collect();
                    let refunded: i64 = live.iter().map(|r| r.amount_minor).sum();
                    let amount = input.amount.amount_minor();
                    if refunded + amount > p.amount_minor {
                        return Err(ApiError::new(
                            ResultCode::REFUND_AMOUNT_EXCEED,
                            format!(
                                "refunds would total {} but only {} was paid",
                                refunded + amount,
                                p.amount_minor
                            ),
                        ));
                    }
                    // The user gets the refund converted at today's rate, never more than what
                    // is left of what they paid (the last refund takes exactly the rest); the
                    // merchant gives back today's settlement amount. The fee it gets back is
                    // fixed when the refund succeeds (`apply_refund`).
                    let prior_wallet: i64 = live.iter().map(|r| r.wallet_amount_minor).sum();
                    let wallet_left = p.pay_to_minor - prior_wallet;
                    let completes = refunded + amount == p.amount_minor;
                    let wallet_amount = if completes {
                        wallet_left
                    } else {
                        pricing.pay_to.amount_minor().min(wallet_left)
                    };
                    if wallet_amount <= 0 {
                        return Err(ApiError::new(
                            ResultCode::REFUND_AMOUNT_EXCEED,
                            "nothing is left to refund to the user",
                        ));
                    }
                    let row = RefundRow {
                        refund_id: refund_id.clone(),
                        client_id: input.client_id.clone(),
                        refund_request_id: input.refund_request_id.clone(),
                        request_hash: hash.clone(),
                        payment_id: p.payment_id.clone(),
                        amount_minor: amount,
                        currency: p.currency.clone(),
                        wallet_amount_minor: wallet_amount,
                        wallet_currency: p.pay_to_currency.clone(),
                        settle_minor: pricing.settle.amount_minor(),
                        settle_currency: p.settle_currency.clone(),
                        settlement_quote: pricing
                            .settlement_quote
                            .as_ref()
                            .map(|q| serde_json::to_string(&q.0).expect("quotes serialize")),
                        fee_minor: 0,
                        state: RefundState::Processing,
                        result_code: ResultCode::UNKNOWN_EXCEPTION,
                        result_message: String::new(),
                        reason: input.reason.clone(),
                        notify_url: input.notify_url.clone(),
                        created_ms: now,
                        refunded_ms: None,
                        next_check_ms: Some(next_check),
                    };
                    store::insert_refund(c, &row)?;
                    for (q, purpose) in [(&pricing.payment_quote, "REFUND"), (&pricing.settlement_quote, "REFUND_SETTLEMENT")] {
                        if let Some((q, start, expiry)) = q {
                            store::insert_quote(c, q, *start, *expiry, purpose)?;
                        }
                    }
                    store::add_event(c, &p.payment_id, "REFUND", &format!("refund {} of {} {} requested", row.refund_id, amount, row.currency), now)?;
                    Ok(Inserted::Created(row))
                })
                .await?
        };
        let row = match inserted {
            Inserted::Existing(r) if r.state != RefundState::Processing => return Ok(r),
            Inserted::Existing(r) | Inserted::Created(r) | Inserted::Rejected(r) => r,
        };
        self.drive_refund(&payment, row).await
    }

    /// Asks the wallet to refund (idempotent at the wallet) and records a final answer.
    pub(crate) async fn drive_refund(
        &self,
        payment: &PaymentRow,
        row: RefundRow,
    ) -> Result<RefundRow, ApiError> {
        let wallet = self.wallet_of(payment)?;
        let req = mpp::RefundRequest {
            refund_request_id: row.refund_id.clone(),
            payment_request_id: row.payment_id.clone(),
            refund_amount: Amount::new(&row.wallet_currency, row.wallet_amount_minor),
        };
        let event = match self.inner.wallets.refund(&wallet, &req).await {
            Ok(resp) if resp.result.result_status == "S" => RefundEvent::WalletRefunded,
            Ok(resp) if resp.result.result_status == "F" => {
                RefundEvent::WalletRefundFailed(wallet_failure_code(&resp.result.result_code))
            }
            Ok(resp) => {
                tracing::warn!(refund_id = %row.refund_id, code = %resp.result.result_code, "wallet refund pending");
                return Ok(row);
            }
            Err(e) => {
                tracing::warn!(refund_id = %row.refund_id, error = %e, "wallet refund outcome unknown");
                return Ok(row);
            }
        };
        self.apply_refund(&row.refund_id, event).await
    }

    pub(crate) async fn apply_refund(
        &self,
        refund_id: &str,
        event: RefundEvent,
    ) -> Result<RefundRow, ApiError> {
        let now = self.now_ms();
        let id = refund_id.to_string();
        self.inner
            .db
            .write(move |c| {
                let mut r = store::refund_by_id(c, &id)?
                    .ok_or_else(|| StoreError::NotFound(format!("refund {id}")))?;
                let state = r.state;
                let Some(next) = payment::refund_transition(state, event) else {
                    return Ok(r);
                };
                r.state = next;
                r.result_code = next.result_code();
                r.next_check_ms = None;
                let p = store::payment_by_id(c, &r.payment_id)?
                    .ok_or_else(|| StoreError::NotFound(format!("payment of refund {id}")))?;
                match next {
                    RefundState::Success => {
                        r.refunded_ms = Some(now);
                        r.result_message = String::new();
                        // The fee returned is fixed now, against the refunds that actually
                        // succeeded before this one, so a failed sibling cannot skew it.
                        let before: i64 = store::refunds_of_payment(c, &r.payment_id)?
                            .iter()
                            .filter(|x| {
                                x.state == RefundState::Success && x.refund_id != r.refund_id
                            })
                            .map(|x| x.amount_minor)
                            .sum();
                        r.fee_minor = paycode_core::fee::refund_fee(
                            money(p.fee_minor, &p.settle_currency)?,
                            money(p.amount_minor, &p.currency)?,
                            money(before, &p.currency)?,
                            money(r.amount_minor, &r.currency)?,
                        )
                        .map_err(|e| StoreError::Corrupt(format!("refund {id} fee: {e}")))?
                        .amount_minor();
                        store::update_refund(c, &r)?;
                        store::post_entry(
                            c,
                            &refund_entry(&p, &r)?,
                            Some(&p.payment_id),
                            Some(&r.refund_id),
                            now,
                        )?;
                    }
                    RefundState::Fail(code) => {
                        r.result_message = code.default_message().to_string();
                        store::update_refund(c, &r)?;
                    }
                    RefundState::Processing => store::update_refund(c, &r)?,
                }
                enqueue_result(
                    c,
                    ResultNotice {
                        kind: store::NotificationKind::RefundResult,
                        payment_id: &r.payment_id,
                        refund_id: Some(&r.refund_id),
                        client_id: &r.client_id,
                        notify_url: r.notify_url.as_deref(),
                    },
                    || wire::refund_notification(&r),
                    now,
                )?;
                store::add_event(
                    c,
                    &r.payment_id,
                    "REFUND",
                    &format!("refund {} -> {}", r.refund_id, next.status_str()),
                    now,
                )?;
                Ok::<_, ApiError>(r)
            })
            .await
    }

    pub async fn find_refund(
        &self,
        client_id: &str,
        refund_id: Option<&str>,
        refund_request_id: Option<&str>,
    ) -> Result<RefundRow, ApiError> {
        if refund_id.is_none() && refund_request_id.is_none() {
            return Err(ApiError::param(
                "refundId",
                "refundId or refundRequestId is required",
            ));
        }
        let (cid, fid, rid) = (
            client_id.to_string(),
            refund_id.map(str::to_string),
            refund_request_id.map(str::to_string),
        );
        let found = self
            .inner
            .db
            .read(move |c| match (&fid, &rid) {
                (Some(f), _) => store::refund_by_id(c, f).map_err(ApiError::from),
                (None, Some(r)) => store::refund_by_request_id(c, &cid, r).map_err(ApiError::from),
                (None, None) => Ok(None),
            })
            .await?;
        // Another client's refund is answered exactly as one that does not exist (SPEC §11).
        found.filter(|r| r.client_id == client_id).ok_or_else(|| {
            ApiError::new(
                ResultCode::ORDER_NOT_EXIST,
                "no such refund for this client",
            )
        })
    }

    // ---------------------------------------------------------------- wallet notifications

    /// `notifyPayment` from a wallet: a final result for one of our payments.
    pub async fn wallet_notified(
        &self,
        wallet: &str,
        n: mpp::NotifyPayment,
    ) -> Result<(), ApiError> {
        let id = n.payment_request_id.clone();
        let p = self
            .inner
            .db
            .read(move |c| store::payment_by_id(c, &id).map_err(ApiError::from))
            .await?
            .ok_or_else(|| ApiError::new(ResultCode::ORDER_NOT_EXIST, "no such payment"))?;
        if p.wallet != wallet {
            return Err(ApiError::new(
                ResultCode::ACCESS_DENIED,
                "this payment was routed to another wallet",
            ));
        }
        if n.pay_to_amount.currency != p.pay_to_currency
            || n.pay_to_amount.value != p.pay_to_minor.to_string()
        {
            return Err(ApiError::param(
                "payToAmount",
                format!(
                    "does not match the {} {} that was requested",
                    p.pay_to_minor, p.pay_to_currency
                ),
            ));
        }
        let facts = WalletFacts {
            wallet_payment_id: n.payment_id.clone(),
            customer_id: n.customer_id.clone(),
            message: Some(n.payment_result.result_message.clone()),
        };
        let event = match n.payment_result.result_status.as_str() {
            "S" => PaymentEvent::WalletSucceeded,
            "F" => PaymentEvent::WalletFailed(wallet_failure_code(&n.payment_result.result_code)),
            other => {
                return Err(ApiError::param(
                    "paymentResult.resultStatus",
                    format!("notifications carry only final results (S or F), got {other:?}"),
                ));
            }
        };
        self.apply(&p.payment_id, event, facts, "wallet notification")
            .await?;
        Ok(())
    }
}

/// The wallet that takes payments with this code: `INVALID_CODE` for an unknown or disabled
/// issuer. `pay` and `inquiryCodeIssuer` both ask here, so a POS that looks a code up first is
/// told exactly what `pay` would answer.
pub fn accepting_wallet<'a>(
    snap: &'a Snapshot,
    code: &PaymentCode,
) -> Result<&'a Wallet, ApiError> {
    let wallet = snap.route(code).ok_or_else(|| {
        ApiError::new(
            ResultCode::INVALID_CODE,
            format!(
                "no wallet issues codes like {} (unknown issuer)",
                code.masked()
            ),
        )
    })?;
    if !wallet.enabled {
        return Err(ApiError::new(
            ResultCode::INVALID_CODE,
            format!("wallet {} is not accepting payments", wallet.psp_name),
        ));
    }
    Ok(wallet)
}

/// A repeat of a known `paymentRequestId`.
/// The acquirer's guessing limits, per source kind.
#[derive(Clone, Copy)]
struct GuessLimits {
    client: SourceLimit,
    merchant: SourceLimit,
    terminal: SourceLimit,
}

impl GuessLimits {
    fn of(l: &crate::config::Limits) -> GuessLimits {
        GuessLimits {
            client: l.guess_per_client,
            merchant: l.guess_per_merchant,
            terminal: l.guess_per_terminal,
        }
    }

    /// The sources a payment's code look-up counts against: its client, its merchant and, when
    /// the request names one, its terminal.
    fn sources<'a>(&self, p: &'a PaymentRow) -> Vec<(Source<'a>, SourceLimit)> {
        let client = p.client_id.as_str();
        std::iter::once(Source::Client { client })
            .chain(Source::of_merchant(
                client,
                &p.reference_merchant_id,
                p.terminal_id.as_deref(),
            ))
            .map(|src| {
                let limit = match src {
                    Source::Client { .. } => self.client,
                    Source::Merchant { .. } => self.merchant,
                    Source::Terminal { .. } => self.terminal,
                };
                (src, limit)
            })
            .collect()
    }
}

/// Writes the effects of a payment transition whose new state is already in `p`, in the
/// caller's job: the one place a payment's journal entries and notification are written.
fn write_effects(
    c: &paycode_db::sql::Connection,
    p: &PaymentRow,
    effects: &[Effect],
    now_ms: i64,
) -> Result<(), StoreError> {
    for effect in effects {
        match effect {
            Effect::PostPayment => {
                store::post_entry(c, &payment_entry(p)?, Some(&p.payment_id), None, now_ms)?;
            }
            Effect::PostReversal => {
                store::post_entry(c, &reversal_entry(p)?, Some(&p.payment_id), None, now_ms)?;
            }
            Effect::NotifyMerchant => enqueue_result(
                c,
                ResultNotice {
                    kind: store::NotificationKind::PaymentResult,
                    payment_id: &p.payment_id,
                    refund_id: None,
                    client_id: &p.client_id,
                    notify_url: p.notify_url.as_deref(),
                },
                || wire::payment_notification(p),
                now_ms,
            )?,
        }
    }
    Ok(())
}

/// Whom a result notification is for and where it goes.
struct ResultNotice<'a> {
    kind: store::NotificationKind,
    payment_id: &'a str,
    refund_id: Option<&'a str>,
    client_id: &'a str,
    notify_url: Option<&'a str>,
}

/// Queues a result notification when the merchant gave a URL (an empty one is none); the body
/// is rendered only then.
fn enqueue_result(
    c: &paycode_db::sql::Connection,
    notice: ResultNotice<'_>,
    body: impl FnOnce() -> String,
    now_ms: i64,
) -> Result<(), StoreError> {
    let Some(url) = notice.notify_url.filter(|u| !u.is_empty()) else {
        return Ok(());
    };
    store::enqueue_notification(
        c,
        &NewNotification {
            kind: notice.kind,
            payment_id: notice.payment_id,
            refund_id: notice.refund_id,
            client_id: notice.client_id,
            url,
            body: &body(),
        },
        now_ms,
    )
}

/// Why the payment's source may not look up a code now, if it is over a guessing limit.
fn guess_refusal(
    c: &paycode_db::sql::Connection,
    limits: &GuessLimits,
    p: &PaymentRow,
) -> Result<Option<String>, StoreError> {
    for (src, limit) in limits.sources(p) {
        let counter = store::guesses::load(c, &src.key())?;
        if let Some(wait_ms) = limit.refusal(counter, p.created_ms) {
            let why = limit.refusal_message(&src, wait_ms);
            return Ok(Some(format!("{why}; nothing was charged")));
        }
    }
    Ok(None)
}

/// Counts a wallet's `INVALID_CODE` against the payment's sources.
fn count_guess(
    c: &paycode_db::sql::Connection,
    limits: &GuessLimits,
    p: &PaymentRow,
) -> Result<(), StoreError> {
    for (src, limit) in limits.sources(p) {
        store::guesses::count_failure(c, &src.key(), limit, p.updated_ms)?;
    }
    Ok(())
}

/// Per-rule hit counts in `/metrics` (after the unit committed, so a re-run counts once).
fn count_risk_hits(decision: Option<&paycode_core::risk::Decision>) {
    let Some(d) = decision else { return };
    for (hits, mode) in [(&d.hits, "enforce"), (&d.shadow, "shadow")] {
        for h in hits.iter() {
            let action = match h.action {
                paycode_core::risk::Action::Challenge => "challenge",
                paycode_core::risk::Action::Reject(_) => "reject",
            };
            metrics::counter!("paycode_risk_rule_hits_total", "rule" => h.rule_id.clone(), "action" => action, "mode" => mode)
                .increment(1);
        }
    }
}

fn replay(p: PaymentRow, hash: &str) -> Result<PaymentRow, ApiError> {
    if p.request_hash == hash {
        Ok(p)
    } else {
        Err(ApiError::new(
            ResultCode::REPEAT_REQ_INCONSISTENT,
            "paymentRequestId was used before with a different amount, currency, code or merchant",
        ))
    }
}

/// Maps a wallet's failure code to ours; an unknown code becomes `PROCESS_FAIL`.
pub(crate) fn wallet_failure_code(code: &str) -> ResultCode {
    match ResultCode::parse(code) {
        Some(c) if c.status() == paycode_core::ResultStatus::F => c,
        _ => ResultCode::PROCESS_FAIL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{conn, payment};

    /// A risk reject goes through the table and the one effects writer: a failed row and,
    /// when the merchant gave a URL, its `PAYMENT_RESULT` notification; no journal entry.
    #[test]
    fn a_risk_reject_is_written_with_the_tables_effects() {
        let c = conn();
        for (id, url) in [
            ("P1", Some("http://m.example/notify")),
            ("P2", Some("")),
            ("P3", None),
        ] {
            let mut p = payment(id);
            p.notify_url = url.map(str::to_string);
            let event = PaymentEvent::RiskRejected(ResultCode::PAYMENT_AMOUNT_EXCEED_LIMIT);
            let Outcome::Applied { next, effects } = payment::transition(p.state, event) else {
                panic!("a new payment takes a risk reject");
            };
            p.state = next;
            p.result_code = next.result_code();
            store::insert_payment(&c, &p).unwrap();
            write_effects(&c, &p, effects, p.created_ms).unwrap();
            let notes = store::notifications_of_payment(&c, id).unwrap();
            assert!(store::postings_of_payment(&c, id).unwrap().is_empty());
            match url.filter(|u| !u.is_empty()) {
                Some(url) => {
                    assert_eq!(notes.len(), 1, "{id}");
                    assert_eq!(
                        (notes[0].kind.as_str(), notes[0].url.as_str()),
                        ("PAYMENT_RESULT", url)
                    );
                    assert!(
                        notes[0].body.contains("PAYMENT_AMOUNT_EXCEED_LIMIT"),
                        "{}",
                        notes[0].body
                    );
                }
                None => assert!(notes.is_empty(), "{id}: {notes:?}"),
            }
        }
    }
}
