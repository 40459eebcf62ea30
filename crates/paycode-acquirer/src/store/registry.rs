//! The reference tables: `clients`, `client_keys`, `merchants`, `stores`, `wallets` and
//! `routes`. Read whole into the registry's snapshot; written one row at a time by the admin API.

use super::{StoreError, StoreResult};
use paycode_db::sql::{Connection, params};
use paycode_sign::PublicKey;

pub struct ClientRow {
    pub client_id: String,
    pub name: String,
    pub active: bool,
    pub notify_url: Option<String>,
}

pub fn clients(c: &Connection) -> StoreResult<Vec<ClientRow>> {
    Ok(c.query_all_cached(
        "SELECT client_id, name, status, notify_url FROM clients",
        [],
        |r| {
            Ok(ClientRow {
                client_id: r.get(0)?,
                name: r.get(1)?,
                active: r.get::<_, String>(2)? == "ACTIVE",
                notify_url: r.get(3)?,
            })
        },
    )?)
}

pub struct ClientKeyRow {
    pub client_id: String,
    pub key_version: i64,
    /// Base64 SPKI, parsed by the registry (a key that does not parse is logged and skipped).
    pub public_key: String,
}

pub fn active_client_keys(c: &Connection) -> StoreResult<Vec<ClientKeyRow>> {
    Ok(c.query_all_cached(
        "SELECT client_id, key_version, public_key FROM client_keys WHERE active = 1",
        [],
        |r| {
            Ok(ClientKeyRow {
                client_id: r.get(0)?,
                key_version: r.get(1)?,
                public_key: r.get(2)?,
            })
        },
    )?)
}

pub struct MerchantRow {
    pub client_id: String,
    pub reference_merchant_id: String,
    pub name: String,
    pub mcc: String,
    pub active: bool,
    /// Comma-separated transaction currencies.
    pub currencies: String,
    pub settlement_currency: String,
    pub max_amount_minor: Option<i64>,
    pub notify_url: Option<String>,
    pub fee_bps: u32,
    pub time_zone: String,
    pub cutoff_minutes: u32,
    /// ISO 3166 alpha-2, for the country rule; `None` when not given.
    pub country: Option<String>,
}

pub fn merchants(c: &Connection) -> StoreResult<Vec<MerchantRow>> {
    Ok(c.query_all_cached(
        "SELECT client_id, reference_merchant_id, name, mcc, status, currencies, \
         settlement_currency, max_amount_minor, notify_url, fee_bps, time_zone, cutoff_minutes, \
         country FROM merchants",
        [],
        |r| {
            Ok(MerchantRow {
                client_id: r.get(0)?,
                reference_merchant_id: r.get(1)?,
                name: r.get(2)?,
                mcc: r.get(3)?,
                active: r.get::<_, String>(4)? == "ACTIVE",
                currencies: r.get(5)?,
                settlement_currency: r.get(6)?,
                max_amount_minor: r.get(7)?,
                notify_url: r.get(8)?,
                fee_bps: r.get(9)?,
                time_zone: r.get(10)?,
                cutoff_minutes: r.get(11)?,
                country: r.get(12)?,
            })
        },
    )?)
}

/// Every store as (client id, reference merchant id, store).
pub fn stores(c: &Connection) -> StoreResult<Vec<(String, String, crate::registry::Store)>> {
    Ok(c.query_all_cached(
        "SELECT client_id, reference_merchant_id, reference_store_id, name, mcc FROM stores",
        [],
        |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                crate::registry::Store {
                    reference_store_id: r.get(2)?,
                    name: r.get(3)?,
                    mcc: r.get(4)?,
                },
            ))
        },
    )?)
}

pub struct WalletRow {
    pub name: String,
    pub psp_name: String,
    pub base_url: String,
    /// Base64 SPKI, parsed by the registry.
    pub public_key: String,
    pub currencies: String,
    pub enabled: bool,
    /// Comma-separated ISO 3166 alpha-2 home countries (empty: not given).
    pub countries: String,
    /// Comma-separated transaction currencies the wallet is contracted for (empty: any).
    pub transaction_currencies: String,
}

pub fn wallets(c: &Connection) -> StoreResult<Vec<WalletRow>> {
    Ok(c.query_all_cached(
        "SELECT name, psp_name, base_url, public_key, currencies, enabled, countries, \
         transaction_currencies FROM wallets",
        [],
        |r| {
            Ok(WalletRow {
                name: r.get(0)?,
                psp_name: r.get(1)?,
                base_url: r.get(2)?,
                public_key: r.get(3)?,
                currencies: r.get(4)?,
                enabled: r.get::<_, i64>(5)? != 0,
                countries: r.get(6)?,
                transaction_currencies: r.get(7)?,
            })
        },
    )?)
}

pub struct RouteRow {
    pub route_id: i64,
    /// `CII` or `REGEX`; the registry skips (and logs) any other.
    pub kind: String,
    pub pattern: String,
    pub wallet: String,
    pub priority: i64,
}

/// Every route, by priority, then id.
pub fn routes(c: &Connection) -> StoreResult<Vec<RouteRow>> {
    Ok(c.query_all_cached(
        "SELECT route_id, kind, pattern, wallet, priority FROM routes ORDER BY priority, route_id",
        [],
        |r| {
            Ok(RouteRow {
                route_id: r.get(0)?,
                kind: r.get(1)?,
                pattern: r.get(2)?,
                wallet: r.get(3)?,
                priority: r.get(4)?,
            })
        },
    )?)
}

pub struct NewClient<'a> {
    pub client_id: &'a str,
    pub name: &'a str,
    pub notify_url: Option<&'a str>,
}

pub fn upsert_client(c: &Connection, n: &NewClient<'_>, now_ms: i64) -> StoreResult<()> {
    c.execute(
        "INSERT INTO clients (client_id, name, status, notify_url, created_ms) \
         VALUES (?1, ?2, 'ACTIVE', ?3, ?4) ON CONFLICT (client_id) DO UPDATE SET \
         name = excluded.name, notify_url = excluded.notify_url",
        params![n.client_id, n.name, n.notify_url, now_ms],
    )?;
    Ok(())
}

pub fn set_client_status(c: &Connection, client_id: &str, active: bool) -> StoreResult<bool> {
    let status = if active { "ACTIVE" } else { "SUSPENDED" };
    Ok(c.execute(
        "UPDATE clients SET status = ?2 WHERE client_id = ?1",
        params![client_id, status],
    )? == 1)
}

pub fn upsert_client_key(
    c: &Connection,
    client_id: &str,
    key_version: u32,
    public_key: &PublicKey,
    active: bool,
) -> StoreResult<()> {
    c.execute(
        "INSERT INTO client_keys (client_id, key_version, public_key, active) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (client_id, key_version) DO UPDATE SET public_key = excluded.public_key, \
         active = excluded.active",
        params![client_id, key_version, public_key.to_base64(), active as i64],
    )?;
    Ok(())
}

pub struct NewMerchant<'a> {
    pub client_id: &'a str,
    pub reference_merchant_id: &'a str,
    pub name: &'a str,
    pub mcc: &'a str,
    pub currencies: &'a [String],
    pub settlement_currency: &'a str,
    pub max_amount_minor: Option<i64>,
    pub notify_url: Option<&'a str>,
    pub active: bool,
    pub fee_bps: u32,
    pub time_zone: &'a str,
    pub cutoff_minutes: u32,
}

pub fn upsert_merchant(c: &Connection, m: &NewMerchant<'_>) -> StoreResult<()> {
    c.execute(
        "INSERT INTO merchants (client_id, reference_merchant_id, name, mcc, status, currencies, \
         settlement_currency, max_amount_minor, notify_url, fee_bps, time_zone, cutoff_minutes) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
         ON CONFLICT (client_id, reference_merchant_id) DO UPDATE SET name = excluded.name, \
         mcc = excluded.mcc, status = excluded.status, currencies = excluded.currencies, \
         settlement_currency = excluded.settlement_currency, \
         max_amount_minor = excluded.max_amount_minor, notify_url = excluded.notify_url, \
         fee_bps = excluded.fee_bps, time_zone = excluded.time_zone, \
         cutoff_minutes = excluded.cutoff_minutes",
        params![
            m.client_id,
            m.reference_merchant_id,
            m.name,
            m.mcc,
            if m.active { "ACTIVE" } else { "SUSPENDED" },
            m.currencies.join(","),
            m.settlement_currency,
            m.max_amount_minor,
            m.notify_url,
            m.fee_bps,
            m.time_zone,
            m.cutoff_minutes,
        ],
    )?;
    Ok(())
}

pub fn upsert_store(
    c: &Connection,
    client_id: &str,
    reference_merchant_id: &str,
    store: &crate::registry::Store,
) -> StoreResult<()> {
    c.execute(
        "INSERT INTO stores (client_id, reference_merchant_id, reference_store_id, name, mcc) \
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (client_id, reference_merchant_id, reference_store_id) \
         DO UPDATE SET name = excluded.name, mcc = excluded.mcc",
        params![client_id, reference_merchant_id, store.reference_store_id, store.name, store.mcc],
    )?;
    Ok(())
}

pub struct NewWallet<'a> {
    pub name: &'a str,
    pub psp_name: &'a str,
    pub base_url: &'a str,
    pub public_key: &'a PublicKey,
    pub currencies: &'a [String],
    pub enabled: bool,
}

pub fn upsert_wallet(c: &Connection, w: &NewWallet<'_>) -> StoreResult<()> {
    c.execute(
        "INSERT INTO wallets (name, psp_name, base_url, public_key, currencies, enabled) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (name) DO UPDATE SET psp_name = excluded.psp_name, \
         base_url = excluded.base_url, public_key = excluded.public_key, \
         currencies = excluded.currencies, enabled = excluded.enabled",
        params![
            w.name,
            w.psp_name,
            w.base_url,
            w.public_key.to_base64(),
            w.currencies.join(","),
            w.enabled as i64
        ],
    )?;
    Ok(())
}

/// Sets the merchant's country (the country rule's fact); `NotFound` for an unknown merchant.
pub fn set_merchant_country(
    c: &Connection,
    client_id: &str,
    reference_merchant_id: &str,
    country: Option<&str>,
) -> StoreResult<()> {
    let n = c.execute(
        "UPDATE merchants SET country = ?3 WHERE client_id = ?1 AND reference_merchant_id = ?2",
        params![client_id, reference_merchant_id, country],
    )?;
    if n != 1 {
        return Err(StoreError::NotFound(format!(
            "merchant {client_id}/{reference_merchant_id}"
        )));
    }
    Ok(())
}

/// Sets the wallet's home countries and contracted transaction currencies (the transaction
/// rules' facts); `NotFound` for an unknown wallet.
pub fn set_wallet_contract(
    c: &Connection,
    wallet: &str,
    countries: &[String],
    transaction_currencies: &[String],
) -> StoreResult<()> {
    let n = c.execute(
        "UPDATE wallets SET countries = ?2, transaction_currencies = ?3 WHERE name = ?1",
        params![
            wallet,
            countries.join(","),
            transaction_currencies.join(",")
        ],
    )?;
    if n != 1 {
        return Err(StoreError::NotFound(format!("wallet {wallet}")));
    }
    Ok(())
}

/// Replaces the wallet's routes of this kind and pattern (idempotent).
pub fn upsert_route(
    c: &Connection,
    kind: &str,
    pattern: &str,
    wallet: &str,
    priority: i64,
) -> StoreResult<()> {
    c.execute(
        "DELETE FROM routes WHERE kind = ?1 AND pattern = ?2",
        params![kind, pattern],
    )?;
    c.execute(
        "INSERT INTO routes (kind, pattern, wallet, priority) VALUES (?1, ?2, ?3, ?4)",
        params![kind, pattern, wallet, priority],
    )?;
    Ok(())
}
