//! The acquirer's reference data — API clients and their keys, merchants and stores, wallets and
//! the code routing table — held in memory as an immutable snapshot.
//!
//! The hot path (every signed request, every code look-up) reads the snapshot without touching
//! the database. Admin changes write the tables and then [`Registry::reload`]; other processes
//! sharing the database pick changes up on their periodic reload.

use crate::store::StoreResult;
use paycode_core::code::PaymentCode;
use paycode_db::Db;
use paycode_db::rusqlite::{Connection, params};
use paycode_sign::PublicKey;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

#[derive(Debug, Clone)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    pub active: bool,
    pub notify_url: Option<String>,
    /// Public keys by key version (only active ones).
    pub keys: HashMap<u32, PublicKey>,
}

#[derive(Debug, Clone)]
pub struct Merchant {
    pub client_id: String,
    pub reference_merchant_id: String,
    pub name: String,
    pub mcc: String,
    pub active: bool,
    pub currencies: Vec<String>,
    pub settlement_currency: String,
    pub max_amount_minor: Option<i64>,
    pub notify_url: Option<String>,
    pub fee_bps: u32,
    /// IANA time zone of the settlement cut-off.
    pub time_zone: String,
    /// Local cut-off time, minutes after midnight.
    pub cutoff_minutes: u32,
    pub stores: HashMap<String, Store>,
}

#[derive(Debug, Clone)]
pub struct Store {
    pub reference_store_id: String,
    pub name: String,
    pub mcc: String,
}

#[derive(Debug, Clone)]
pub struct Wallet {
    pub name: String,
    pub psp_name: String,
    pub base_url: String,
    pub public_key: PublicKey,
    pub currencies: Vec<String>,
    pub enabled: bool,
}

#[derive(Debug, Clone)]
pub enum RoutePattern {
    /// The 6-digit Code Issuer Identifier of a standard 24-digit code.
    Cii(String),
    /// A regular expression over the whole code, for legacy forms.
    Regex(regex::Regex),
}

#[derive(Debug, Clone)]
pub struct Route {
    pub route_id: i64,
    pub pattern: RoutePattern,
    pub wallet: String,
    pub priority: i64,
}

/// One consistent view of the reference data.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub clients: HashMap<String, Client>,
    /// Keyed by (client id, reference merchant id).
    pub merchants: HashMap<(String, String), Merchant>,
    pub wallets: HashMap<String, Wallet>,
    /// Sorted by priority, then id.
    pub routes: Vec<Route>,
}

impl Snapshot {
    /// Which wallet issued this code: the first matching route whose wallet exists. The caller
    /// decides what a disabled wallet means.
    pub fn route(&self, code: &PaymentCode) -> Option<&Wallet> {
        self.routes
            .iter()
            .find(|r| match &r.pattern {
                RoutePattern::Cii(cii) => code.cii() == Some(cii.as_str()),
                RoutePattern::Regex(re) => re.is_match(code.expose_digits()),
            })
            .and_then(|r| self.wallets.get(&r.wallet))
    }

    pub fn merchant(&self, client_id: &str, reference_merchant_id: &str) -> Option<&Merchant> {
        self.merchants
            .get(&(client_id.to_string(), reference_merchant_id.to_string()))
    }
}

#[derive(Clone, Default)]
pub struct Registry {
    current: Arc<RwLock<Arc<Snapshot>>>,
}

impl Registry {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.read().expect("registry lock poisoned").clone()
    }

    pub async fn reload(&self, db: &Db) -> StoreResult<()> {
        let snap = db.read(load).await?;
        *self.current.write().expect("registry lock poisoned") = Arc::new(snap);
        Ok(())
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|x| x.trim().to_string())
        .filter(|x| !x.is_empty())
        .collect()
}

fn load(c: &Connection) -> StoreResult<Snapshot> {
    let mut snap = Snapshot::default();
    let mut stmt = c.prepare("SELECT client_id, name, status, notify_url FROM clients")?;
    let rows = stmt.query_map([], |r| {
        Ok(Client {
            client_id: r.get(0)?,
            name: r.get(1)?,
            active: r.get::<_, String>(2)? == "ACTIVE",
            notify_url: r.get(3)?,
            keys: HashMap::new(),
        })
    })?;
    for row in rows {
        let client = row?;
        snap.clients.insert(client.client_id.clone(), client);
    }
    let mut stmt =
        c.prepare("SELECT client_id, key_version, public_key FROM client_keys WHERE active = 1")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    for row in rows {
        let (client_id, version, key) = row?;
        let Ok(key) = PublicKey::parse(&key) else {
            tracing::error!(
                client_id,
                version,
                "stored client key does not parse; ignored"
            );
            continue;
        };
        if let (Some(client), Ok(version)) =
            (snap.clients.get_mut(&client_id), u32::try_from(version))
        {
            client.keys.insert(version, key);
        }
    }
    let mut stmt = c.prepare(
        "SELECT client_id, reference_merchant_id, name, mcc, status, currencies, \
         settlement_currency, max_amount_minor, notify_url, fee_bps, time_zone, cutoff_minutes \
         FROM merchants",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(Merchant {
            client_id: r.get(0)?,
            reference_merchant_id: r.get(1)?,
            name: r.get(2)?,
            mcc: r.get(3)?,
            active: r.get::<_, String>(4)? == "ACTIVE",
            currencies: split_list(&r.get::<_, String>(5)?),
            settlement_currency: r.get(6)?,
            max_amount_minor: r.get(7)?,
            notify_url: r.get(8)?,
            fee_bps: r.get(9)?,
            time_zone: r.get(10)?,
            cutoff_minutes: r.get(11)?,
            stores: HashMap::new(),
        })
    })?;
    for row in rows {
        let m = row?;
        snap.merchants
            .insert((m.client_id.clone(), m.reference_merchant_id.clone()), m);
    }
    let mut stmt = c.prepare(
        "SELECT client_id, reference_merchant_id, reference_store_id, name, mcc FROM stores",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            Store {
                reference_store_id: r.get(2)?,
                name: r.get(3)?,
                mcc: r.get(4)?,
            },
        ))
    })?;
    for row in rows {
        let (client_id, merchant_id, store) = row?;
        if let Some(m) = snap.merchants.get_mut(&(client_id, merchant_id)) {
            m.stores.insert(store.reference_store_id.clone(), store);
        }
    }
    let mut stmt =
        c.prepare("SELECT name, psp_name, base_url, public_key, currencies, enabled FROM wallets")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, i64>(5)?,
        ))
    })?;
    for row in rows {
        let (name, psp_name, base_url, key, currencies, enabled) = row?;
        let Ok(public_key) = PublicKey::parse(&key) else {
            tracing::error!(
                wallet = name,
                "stored wallet key does not parse; wallet ignored"
            );
            continue;
        };
        snap.wallets.insert(
            name.clone(),
            Wallet {
                name,
                psp_name,
                base_url: base_url.trim_end_matches('/').to_string(),
                public_key,
                currencies: split_list(&currencies),
                enabled: enabled != 0,
            },
        );
    }
    let mut stmt = c.prepare(
        "SELECT route_id, kind, pattern, wallet, priority FROM routes ORDER BY priority, route_id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, i64>(4)?,
        ))
    })?;
    for row in rows {
        let (route_id, kind, pattern, wallet, priority) = row?;
        let pattern = match kind.as_str() {
            "CII" => RoutePattern::Cii(pattern),
            "REGEX" => match regex::Regex::new(&format!("^(?:{pattern})$")) {
                Ok(re) => RoutePattern::Regex(re),
                Err(e) => {
                    tracing::error!(route_id, error = %e, "route pattern does not compile; ignored");
                    continue;
                }
            },
            other => {
                tracing::error!(route_id, kind = other, "unknown route kind; ignored");
                continue;
            }
        };
        snap.routes.push(Route {
            route_id,
            pattern,
            wallet,
            priority,
        });
    }
    Ok(snap)
}

// ---- writes (admin) ----

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
    store: &Store,
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
