//! The acquirer's reference data — API clients and their keys, merchants and stores, wallets and
//! the code routing table — held in memory as an immutable snapshot.
//!
//! The hot path (every signed request, every code look-up) reads the snapshot without touching
//! the database. Admin changes write the tables and then [`Registry::reload`]; other processes
//! sharing the database pick changes up on their periodic reload.

use crate::store::{self, StoreResult};
use paycode_core::code::PaymentCode;
use paycode_db::Db;
use paycode_db::sql::Connection;
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
    /// ISO 3166 alpha-2, when given (the country rule).
    pub country: Option<String>,
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
    /// Home countries (ISO 3166 alpha-2), when given (the country rule).
    pub countries: Vec<String>,
    /// Transaction currencies the wallet is contracted for; empty: any.
    pub transaction_currencies: Vec<String>,
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
            .filter(|r| match &r.pattern {
                RoutePattern::Cii(cii) => code.cii() == Some(cii.as_str()),
                RoutePattern::Regex(re) => re.is_match(code.expose_digits()),
            })
            .find_map(|r| self.wallets.get(&r.wallet))
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
    for row in store::registry::clients(c)? {
        snap.clients.insert(
            row.client_id.clone(),
            Client {
                client_id: row.client_id,
                name: row.name,
                active: row.active,
                notify_url: row.notify_url,
                keys: HashMap::new(),
            },
        );
    }
    for row in store::registry::active_client_keys(c)? {
        let (client_id, version) = (row.client_id, row.key_version);
        let Ok(key) = PublicKey::parse(&row.public_key) else {
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
    for m in store::registry::merchants(c)? {
        snap.merchants.insert(
            (m.client_id.clone(), m.reference_merchant_id.clone()),
            Merchant {
                client_id: m.client_id,
                reference_merchant_id: m.reference_merchant_id,
                name: m.name,
                mcc: m.mcc,
                active: m.active,
                currencies: split_list(&m.currencies),
                settlement_currency: m.settlement_currency,
                max_amount_minor: m.max_amount_minor,
                notify_url: m.notify_url,
                fee_bps: m.fee_bps,
                time_zone: m.time_zone,
                cutoff_minutes: m.cutoff_minutes,
                country: m.country,
                stores: HashMap::new(),
            },
        );
    }
    for (client_id, merchant_id, store) in store::registry::stores(c)? {
        if let Some(m) = snap.merchants.get_mut(&(client_id, merchant_id)) {
            m.stores.insert(store.reference_store_id.clone(), store);
        }
    }
    for w in store::registry::wallets(c)? {
        let Ok(public_key) = PublicKey::parse(&w.public_key) else {
            tracing::error!(
                wallet = w.name,
                "stored wallet key does not parse; wallet ignored"
            );
            continue;
        };
        snap.wallets.insert(
            w.name.clone(),
            Wallet {
                name: w.name,
                psp_name: w.psp_name,
                base_url: w.base_url.trim_end_matches('/').to_string(),
                public_key,
                currencies: split_list(&w.currencies),
                enabled: w.enabled,
                countries: split_list(&w.countries),
                transaction_currencies: split_list(&w.transaction_currencies),
            },
        );
    }
    for r in store::registry::routes(c)? {
        let route_id = r.route_id;
        let pattern = match r.kind.as_str() {
            "CII" => RoutePattern::Cii(r.pattern),
            "REGEX" => match regex::Regex::new(&format!("^(?:{})$", r.pattern)) {
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
            wallet: r.wallet,
            priority: r.priority,
        });
    }
    Ok(snap)
}

// The admin API writes through the storage layer; these names stay where callers know them.
pub use crate::store::registry::{
    NewClient, NewMerchant, NewWallet, set_client_status, set_merchant_country,
    set_wallet_contract, upsert_client, upsert_client_key, upsert_merchant, upsert_route,
    upsert_store, upsert_wallet,
};

#[cfg(test)]
mod tests {
    use super::*;

    fn wallet(name: &str) -> Wallet {
        Wallet {
            name: name.into(),
            psp_name: name.to_uppercase(),
            base_url: format!("http://{name}.invalid"),
            public_key: paycode_sign::PrivateKey::generate().unwrap().public_key(),
            currencies: vec!["SGD".into()],
            enabled: true,
            countries: vec![],
            transaction_currencies: vec![],
        }
    }

    /// Found by the payment-code fuzz target: a matching route whose wallet is not in the
    /// snapshot used to end the search, so a later matching route was never tried.
    #[test]
    fn a_route_to_a_missing_wallet_gives_way_to_the_next_matching_route() {
        let mut snap = Snapshot::default();
        snap.wallets.insert("sgpay".into(), wallet("sgpay"));
        snap.routes = [("289999", "gone"), ("2899", "sgpay")]
            .into_iter()
            .enumerate()
            .map(|(i, (pattern, wallet))| Route {
                route_id: i as i64,
                pattern: if pattern.len() == 6 {
                    RoutePattern::Cii(pattern.into())
                } else {
                    RoutePattern::Regex(regex::Regex::new(&format!("^{pattern}")).unwrap())
                },
                wallet: wallet.into(),
                priority: 10,
            })
            .collect();
        let code = PaymentCode::parse("289999021111222233334444").unwrap();
        assert_eq!(snap.route(&code).map(|w| w.name.as_str()), Some("sgpay"));
        let other = PaymentCode::parse("281005021111222233334444").unwrap();
        assert!(snap.route(&other).is_none());
    }
}
