//! `<data-dir>/demo.json`: the quick-start file that `serve` writes in demo mode and that a
//! merchant developer copies credentials from. `paycode pos …`, `paycode wallet …`, `paycode
//! demo` and `paycode bench` read their defaults from it.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "demo.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DemoFile {
    /// Base URL of the acquirer's merchant API, e.g. `http://127.0.0.1:8080`.
    pub acquirer_url: String,
    pub client_id: String,
    /// Bare base64 PKCS#8.
    pub merchant_private_key: String,
    /// Bare base64 SPKI.
    pub acquirer_public_key: String,
    pub reference_merchant_id: String,
    pub merchant_name: String,
    pub reference_store_id: String,
    pub store_name: String,
    #[serde(rename = "merchantMCC", alias = "merchantMcc")]
    pub merchant_mcc: String,
    /// The demo merchant's transaction currency.
    pub currency: String,
    pub wallets: Vec<DemoWallet>,
    pub users: Vec<DemoUser>,
    /// Where the demo merchant's notifications are received, if a receiver runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_url: Option<String>,
    /// How to sign in to the web dashboard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dashboard: Option<DemoDashboard>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DemoDashboard {
    pub url: String,
    /// A merchant user who sees every merchant of the demo client.
    pub merchant_user: String,
    pub merchant_password: String,
    /// The file in the data directory whose token signs in as `operator`.
    pub operator_token_file: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DemoWallet {
    pub name: String,
    /// Base URL of the wallet (MPP API and customer API).
    pub url: String,
    pub cii: String,
    pub currency: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DemoUser {
    pub name: String,
    pub wallet: String,
    pub currency: String,
    pub password: String,
    /// `everyday`, `password`, `low-balance` or `frozen`.
    pub role: String,
}

impl DemoFile {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(FILE_NAME)
    }

    pub fn load(data_dir: &Path) -> anyhow::Result<DemoFile> {
        use anyhow::Context;
        let path = DemoFile::path(data_dir);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {} (start `paycode serve` first, or pass --data-dir)",
                path.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("{} is not valid", path.display()))
    }

    pub fn user(&self, name: &str) -> Option<&DemoUser> {
        self.users.iter().find(|u| u.name == name)
    }

    pub fn wallet(&self, name: &str) -> Option<&DemoWallet> {
        self.wallets.iter().find(|w| w.name == name)
    }
}
