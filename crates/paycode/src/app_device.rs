//! The phone's side of the wallet: the device material kept on the phone, and the customer API
//! client.
//!
//! A device registers once online (user name and password) and stores what the wallet answered
//! under `<data-dir>/app/<user>.json`, readable by its owner only. From then on the payment code
//! is generated from that file with no network, a new one at every display
//! ([`paycode_wallet::CodeDisplay`]): the last code shown is remembered in
//! `<data-dir>/app/<user>.display.json`, updated under a file lock before the code is shown, so
//! two displays (even by two processes at once) never show the same code. The other calls use
//! the device token as `Authorization: Bearer …`.

use crate::demo_file::{DemoFile, DemoUser, DemoWallet};
use anyhow::Context;
use paycode_proto::customer::{
    Balance, ChallengeList, ChallengeOutcome, ConfirmRequest, DeviceMaterial, History,
    RegisterDeviceRequest,
};
use paycode_wallet::{CodeDisplay, CodeMaterial, ShownCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Customer calls time out after this; the app then says the wallet is unreachable.
pub const CUSTOMER_CALL_TIMEOUT_MS: u64 = 10_000;

/// The file holding a user's device material.
pub fn device_path(data_dir: &Path, user: &str) -> PathBuf {
    data_dir.join("app").join(format!("{user}.json"))
}

/// The file holding the last code a user's phone showed.
fn display_path(data_dir: &Path, user: &str) -> PathBuf {
    data_dir.join("app").join(format!("{user}.display.json"))
}

/// What `<user>.display.json` holds: the time step and number of the last code shown.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct DisplayFile {
    last_step: Option<u64>,
    last_seq: Option<u8>,
}

/// The next code of the stored device of `user`, a new one at every call. The display state is
/// read, advanced and written back (fsynced) under an exclusive lock before the code is returned.
pub fn show_stored_code(
    data_dir: &Path,
    user: &str,
    device: &mut Device,
    unix_time_s: u64,
) -> anyhow::Result<ShownCode> {
    use std::io::{Read, Seek, Write};
    check_user_name(user)?;
    let path = display_path(data_dir, user);
    let dir = path.parent().context("display path has no folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut f = open_private(&path).with_context(|| format!("cannot open {}", path.display()))?;
    f.lock()
        .with_context(|| format!("cannot lock {}", path.display()))?;
    let mut text = String::new();
    f.read_to_string(&mut text)
        .with_context(|| format!("cannot read {}", path.display()))?;
    // A damaged file only loses the memory of the last code: numbering restarts at the current
    // step, which can repeat a code shown moments ago but never makes an invalid one.
    let stored: DisplayFile = serde_json::from_str(&text).unwrap_or_default();
    device.display = CodeDisplay {
        last: stored.last_step.zip(stored.last_seq),
    };
    let shown = device.next_code(unix_time_s)?;
    let back = DisplayFile {
        last_step: Some(shown.step),
        last_seq: Some(shown.seq),
    };
    let bytes = serde_json::to_vec(&back).context("cannot encode the display state")?;
    f.set_len(0)?;
    f.rewind()?;
    f.write_all(&bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(shown)
}

fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Checks a user name before it becomes part of a file name.
fn check_user_name(user: &str) -> anyhow::Result<()> {
    let ok = !user.is_empty()
        && user.len() <= 64
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !user.starts_with('.');
    anyhow::ensure!(
        ok,
        "{user:?} is not a user name (letters, digits, '-', '_', '.')"
    );
    Ok(())
}

/// Reads the stored device material, if the device was registered.
pub fn load_device(data_dir: &Path, user: &str) -> anyhow::Result<Option<DeviceMaterial>> {
    check_user_name(user)?;
    let path = device_path(data_dir, user);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let m: DeviceMaterial = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is damaged; delete it and run `paycode wallet register --user {user}`",
            path.display()
        )
    })?;
    Ok(Some(m))
}

/// Stores device material, readable and writable by the owner only.
pub fn save_device(data_dir: &Path, user: &str, m: &DeviceMaterial) -> anyhow::Result<()> {
    check_user_name(user)?;
    let path = device_path(data_dir, user);
    let dir = path.parent().context("device path has no folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let text = serde_json::to_vec_pretty(m).context("cannot encode the device material")?;
    let tmp = path.with_extension("json.tmp");
    write_private(&tmp, &text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// The user and wallet of `name` in `demo.json`.
pub fn find_user<'a>(
    demo: &'a DemoFile,
    name: &str,
) -> anyhow::Result<(&'a DemoUser, &'a DemoWallet)> {
    let user = demo.user(name).with_context(|| {
        let names: Vec<&str> = demo.users.iter().map(|u| u.name.as_str()).collect();
        format!(
            "no user {name:?} in demo.json (known: {})",
            names.join(", ")
        )
    })?;
    let wallet = demo.wallet(&user.wallet).with_context(|| {
        format!(
            "demo.json names wallet {:?} for {name}, but lists no such wallet",
            user.wallet
        )
    })?;
    Ok((user, wallet))
}

/// The customer API of one wallet.
#[derive(Debug, Clone)]
pub struct CustomerApi {
    http: reqwest::Client,
    base_url: String,
    wallet_name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CustomerError {
    #[error("cannot reach wallet {wallet} at {url} ({why}); is `paycode serve` running?")]
    Unreachable {
        wallet: String,
        url: String,
        why: String,
    },
    #[error("wallet {wallet} gave no usable answer ({why})")]
    BadAnswer { wallet: String, why: String },
    #[error("wallet {wallet} refused: {code} ({message}){hint}")]
    Refused {
        wallet: String,
        code: String,
        message: String,
        hint: String,
    },
}

impl CustomerError {
    pub fn code(&self) -> Option<&str> {
        match self {
            CustomerError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }
}

fn hint_for(code: &str, user: &str) -> String {
    match code {
        "USER_NOT_EXIST" => "; check the user name".to_string(),
        "USER_PAYMENT_VERIFICATION_FAILED" => "; wrong password".to_string(),
        "DEVICE_NOT_REGISTERED" | "ACCESS_DENIED" | "UNAUTHORIZED" | "INVALID_TOKEN" => {
            format!("; register this phone again with `paycode wallet register --user {user}`")
        }
        _ => String::new(),
    }
}

/// Any customer API answer: they all carry `result`.
trait HasResult {
    fn result(&self) -> &paycode_proto::ResultInfo;
}

macro_rules! has_result {
    ($($t:ty),*) => {$(impl HasResult for $t { fn result(&self) -> &paycode_proto::ResultInfo { &self.result } })*};
}
has_result!(
    DeviceMaterial,
    ChallengeList,
    ChallengeOutcome,
    Balance,
    History
);

impl CustomerApi {
    pub fn new(wallet: &DemoWallet) -> CustomerApi {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(CUSTOMER_CALL_TIMEOUT_MS))
            .build()
            .expect("the HTTP client configuration is static and valid");
        CustomerApi {
            http,
            base_url: wallet.url.trim_end_matches('/').to_string(),
            wallet_name: wallet.name.clone(),
        }
    }

    async fn call<Resp: DeserializeOwned + HasResult>(
        &self,
        req: reqwest::RequestBuilder,
        user: &str,
        refused_is_error: bool,
    ) -> Result<Resp, CustomerError> {
        let resp = req.send().await.map_err(|e| CustomerError::Unreachable {
            wallet: self.wallet_name.clone(),
            url: self.base_url.clone(),
            why: e.without_url().to_string(),
        })?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| CustomerError::BadAnswer {
            wallet: self.wallet_name.clone(),
            why: e.to_string(),
        })?;
        let parsed: Resp = serde_json::from_slice(&body).map_err(|e| CustomerError::BadAnswer {
            wallet: self.wallet_name.clone(),
            why: format!("HTTP {status}: {e}"),
        })?;
        let r = parsed.result();
        if refused_is_error && r.result_status != "S" {
            return Err(CustomerError::Refused {
                wallet: self.wallet_name.clone(),
                code: r.result_code.clone(),
                message: r.result_message.clone(),
                hint: hint_for(&r.result_code, user),
            });
        }
        Ok(parsed)
    }

    fn url(&self, path: &str) -> String {
        format!("{}/customer/v1/{path}", self.base_url)
    }

    pub async fn register(
        &self,
        user: &str,
        password: &str,
    ) -> Result<DeviceMaterial, CustomerError> {
        let req = RegisterDeviceRequest {
            user_name: user.to_string(),
            password: password.to_string(),
            device_name: Some("paycode app".to_string()),
        };
        self.call(
            self.http.post(self.url("devices/register")).json(&req),
            user,
            true,
        )
        .await
    }

    fn get(&self, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path)).bearer_auth(token)
    }

    fn post<B: Serialize>(&self, path: &str, token: &str, body: &B) -> reqwest::RequestBuilder {
        self.http.post(self.url(path)).bearer_auth(token).json(body)
    }

    /// A new pseudonymous slot and secret for this device (the old slot is retired).
    pub async fn rotate(&self, user: &str, token: &str) -> Result<DeviceMaterial, CustomerError> {
        self.call(
            self.post("devices/rotate", token, &serde_json::json!({})),
            user,
            true,
        )
        .await
    }

    pub async fn challenges(
        &self,
        user: &str,
        token: &str,
    ) -> Result<ChallengeList, CustomerError> {
        self.call(self.get("challenges", token), user, true).await
    }

    /// Confirms; a wrong password is an answer (with remaining attempts), not an error.
    pub async fn confirm(
        &self,
        user: &str,
        token: &str,
        challenge_id: &str,
        password: &str,
    ) -> Result<ChallengeOutcome, CustomerError> {
        let body = ConfirmRequest {
            password: password.to_string(),
        };
        self.call(
            self.post(&format!("challenges/{challenge_id}/confirm"), token, &body),
            user,
            false,
        )
        .await
    }

    pub async fn decline(
        &self,
        user: &str,
        token: &str,
        challenge_id: &str,
    ) -> Result<ChallengeOutcome, CustomerError> {
        self.call(
            self.post(
                &format!("challenges/{challenge_id}/decline"),
                token,
                &serde_json::json!({}),
            ),
            user,
            false,
        )
        .await
    }

    pub async fn balance(&self, user: &str, token: &str) -> Result<Balance, CustomerError> {
        self.call(self.get("balance", token), user, true).await
    }

    pub async fn history(&self, user: &str, token: &str) -> Result<History, CustomerError> {
        self.call(self.get("history", token), user, true).await
    }
}

/// A registered device: its material, the last code it showed, and what the app needs for
/// online calls.
#[derive(Debug, Clone)]
pub struct Device {
    pub material: DeviceMaterial,
    pub code: CodeMaterial,
    pub display: CodeDisplay,
}

impl Device {
    pub fn from_material(material: DeviceMaterial) -> anyhow::Result<Device> {
        let code = CodeMaterial::from_device_material(&material)
            .context("the stored device material cannot make codes")?;
        Ok(Device {
            material,
            code,
            display: CodeDisplay::default(),
        })
    }

    pub fn token(&self) -> anyhow::Result<&str> {
        self.material
            .device_token
            .as_deref()
            .context("the stored device material has no device token; register again")
    }

    /// The next payment code to show at `unix_time_s`: a new one at every call, with no network.
    /// Only this device value remembers it; see [`show_stored_code`] for the stored phone.
    pub fn next_code(&mut self, unix_time_s: u64) -> anyhow::Result<ShownCode> {
        let (shown, display) = self.display.next(&self.code, unix_time_s)?;
        self.display = display;
        Ok(shown)
    }
}

/// Registers with the wallet and returns the material (without storing it).
pub async fn register_device(
    api: &CustomerApi,
    user: &str,
    password: &str,
) -> anyhow::Result<Device> {
    let m = api
        .register(user, password)
        .await
        .with_context(|| format!("cannot register this phone for {user}"))?;
    Device::from_material(m)
}

/// The stored device of `user`, registering it first (with the password from `demo.json`)
/// when this phone has none.
pub async fn ensure_device(data_dir: &Path, demo: &DemoFile, user: &str) -> anyhow::Result<Device> {
    if let Some(m) = load_device(data_dir, user)? {
        return Device::from_material(m);
    }
    let (u, wallet) = find_user(demo, user)?;
    let device = register_device(&CustomerApi::new(wallet), &u.name, &u.password).await?;
    save_device(data_dir, user, &device.material)?;
    Ok(device)
}

pub fn now_unix_s() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use paycode_proto::ResultInfo;

    fn material() -> DeviceMaterial {
        use base64::Engine;
        DeviceMaterial {
            result: ResultInfo::success(),
            device_id: Some("WD1".into()),
            device_token: Some("tok".into()),
            code_secret: Some(base64::engine::general_purpose::STANDARD.encode([7u8; 32])),
            slot: Some("12345678".into()),
            cii: Some("281012".into()),
            code_step_s: Some(30),
            code_validity_s: Some(60),
            user_name: Some("alice".into()),
            currency: Some("SGD".into()),
        }
    }

    #[test]
    fn device_material_round_trips_through_a_private_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_device(dir.path(), "alice").unwrap().is_none());
        save_device(dir.path(), "alice", &material()).unwrap();
        let back = load_device(dir.path(), "alice").unwrap().unwrap();
        assert_eq!(back.slot.as_deref(), Some("12345678"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(device_path(dir.path(), "alice"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn every_display_is_a_new_code_and_the_stored_phone_remembers_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = Device::from_material(material()).unwrap();
        let a = show_stored_code(dir.path(), "alice", &mut d, 3_000).unwrap();
        assert_eq!(a.digits.len(), 24);
        assert!(a.digits.starts_with("2810120212345678"));
        assert_eq!(a.valid_until_s, 3_090);
        // A new process (a new Device value) still never repeats the code.
        let mut again = Device::from_material(material()).unwrap();
        let b = show_stored_code(dir.path(), "alice", &mut again, 3_000).unwrap();
        assert_ne!(a.digits, b.digits);
        assert_eq!((b.step, b.seq), (a.step, a.seq + 1));
        let mut seen = std::collections::HashSet::from([a.digits, b.digits]);
        for _ in 0..18 {
            let c = show_stored_code(dir.path(), "alice", &mut again, 3_001).unwrap();
            assert!(seen.insert(c.digits));
        }
        let err = show_stored_code(dir.path(), "alice", &mut again, 3_001).unwrap_err();
        assert!(err.to_string().contains("show a new one in 29 s"), "{err}");
        // A damaged display file only restarts the numbering.
        std::fs::write(display_path(dir.path(), "alice"), "{oops").unwrap();
        let d2 = show_stored_code(dir.path(), "alice", &mut again, 3_100).unwrap();
        assert_eq!(d2.seq, 0);
    }

    #[test]
    fn user_names_cannot_escape_the_app_folder() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_device(dir.path(), "../x").is_err());
        assert!(load_device(dir.path(), "").is_err());
    }
}
