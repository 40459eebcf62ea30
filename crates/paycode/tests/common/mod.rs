//! A live `paycode serve` for the binary's tests: a child process on free ports with its own
//! data directory, ready once `demo.json` is written and the acquirer answers; killed on drop.
#![allow(dead_code)]

use assert_cmd::Command;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_paycode");
pub const STARTUP_DEADLINE: Duration = Duration::from_secs(120);
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Serve {
    child: Option<Child>,
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub demo: Value,
}

impl Serve {
    /// Demo mode in a fresh temporary data directory.
    pub fn start() -> Serve {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = Serve::start_in(tmp.path(), &[]);
        s._tmp = Some(tmp);
        s
    }

    /// Demo mode in `dir` (kept, so a test can restart on the same store), with extra
    /// environment variables.
    pub fn start_in(dir: &Path, env: &[(&str, &str)]) -> Serve {
        let demo_path = dir.join("demo.json");
        let _ = std::fs::remove_file(&demo_path);
        let log = std::fs::File::create(dir.join("serve.log")).unwrap();
        let mut cmd = std::process::Command::new(BIN);
        if let Some(url) = database_url(dir) {
            cmd.env("PAYCODE_DATABASE_URL", url);
        }
        cmd.arg("--data-dir")
            .arg(dir)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--wallet-port-base",
                "0",
            ])
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut serve = Serve {
            child: Some(cmd.spawn().unwrap()),
            dir: dir.to_path_buf(),
            _tmp: None,
            demo: Value::Null,
        };
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            if let Some(demo) = std::fs::read_to_string(&demo_path)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                && reachable(demo["acquirerUrl"].as_str().unwrap())
            {
                if database_url(dir).is_some() {
                    // On PostgreSQL nothing of the stores is written to SQLite files.
                    let files: Vec<_> = std::fs::read_dir(dir)
                        .unwrap()
                        .filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| n.ends_with(".db") || n.ends_with(".db-wal"))
                        .collect();
                    assert!(
                        files.is_empty(),
                        "SQLite files next to PostgreSQL: {files:?}"
                    );
                }
                serve.demo = demo;
                return serve;
            }
            if let Some(status) = serve.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "serve exited with {status} before it was ready:\n{}",
                    serve.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "serve did not write demo.json in time"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("serve.log")).unwrap_or_default()
    }

    /// `paycode --data-dir <this serve's dir>` with a timeout.
    pub fn cmd(&self) -> Command {
        paycode(self.data_dir())
    }

    pub fn currency(&self) -> String {
        self.demo["currency"].as_str().unwrap().to_string()
    }

    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.dir.join("admin-token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// A user with `role` whose wallet pays in the merchant's currency (no exchange rate
    /// needed), else the first with that role: `(name, password)`.
    pub fn user(&self, role: &str) -> (String, String) {
        let users = self.demo["users"].as_array().unwrap();
        let with_role: Vec<&Value> = users.iter().filter(|u| u["role"] == role).collect();
        let u = with_role
            .iter()
            .find(|u| u["currency"] == self.demo["currency"])
            .or(with_role.first())
            .unwrap_or_else(|| panic!("no user with role {role}"));
        (
            u["name"].as_str().unwrap().to_string(),
            u["password"].as_str().unwrap().to_string(),
        )
    }

    /// A fresh payment code of `user`, from the customer's app (`wallet code --digits`).
    pub fn code_digits(&self, user: &str) -> String {
        let out = self
            .cmd()
            .args(["wallet", "code", "--user", user, "--digits"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "wallet code failed: {}",
            text(&out.stderr)
        );
        let digits = text(&out.stdout).trim().to_string();
        assert_eq!(digits.len(), 24, "{digits:?}");
        assert!(digits.bytes().all(|b| b.is_ascii_digit()));
        digits
    }

    /// SIGTERM, as an operator stopping the service; returns how the process ended.
    pub fn terminate(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let until = Instant::now() + deadline;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > until {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, as a crash.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn reachable(url: &str) -> bool {
    let host_port = url
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/');
    std::net::TcpStream::connect(host_port).is_ok()
}

pub fn paycode(data_dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    if let Some(url) = database_url(data_dir) {
        c.env("PAYCODE_DATABASE_URL", url);
    }
    c.arg("--data-dir").arg(data_dir).timeout(COMMAND_TIMEOUT);
    c
}

/// The database of the stores of `dir` when the suite runs on PostgreSQL
/// (`PAYCODE_TEST_DATABASE_URL`): created for `dir` on first use and remembered in it, so that
/// a restart in the same directory finds the same store. `None` on SQLite.
pub fn database_url(dir: &Path) -> Option<String> {
    let file = dir.join("test-database-url");
    if let Ok(url) = std::fs::read_to_string(&file) {
        return Some(url).filter(|u| !u.is_empty());
    }
    let url = paycode_db::create_test_database("serve").unwrap()?;
    std::fs::write(&file, &url).unwrap();
    Some(url)
}

/// Keeps the stores of `dir` in SQLite files whatever the suite runs on (for what only SQLite
/// had, such as stores of earlier releases).
pub fn use_sqlite(dir: &Path) {
    std::fs::write(dir.join("test-database-url"), "").unwrap();
}

/// The acquirer's store of a `serve` in `dir`, opened directly (with the server stopped).
pub fn acquirer_store(dir: &Path) -> paycode_db::Db {
    let location = match database_url(dir) {
        Some(url) => paycode_db::Location::Postgres(paycode_db::PgTarget::new(&url, "acquirer")),
        None => paycode_db::Location::File(dir.join("acquirer.db")),
    };
    paycode_db::Db::open_at(
        &location,
        &paycode_acquirer::store::migrations(),
        paycode_db::DbConfig::default(),
    )
    .unwrap()
}

/// A new device of `user` at the wallet at `wallet_url`, registered through the customer API:
/// its first payment code and its device token.
pub async fn fresh_code(wallet_url: &str, user: &str, password: &str) -> (String, String) {
    let m: paycode_proto::customer::DeviceMaterial = reqwest::Client::new()
        .post(format!("{wallet_url}/customer/v1/devices/register"))
        .json(&serde_json::json!({"userName": user, "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let material = paycode_wallet::CodeMaterial::from_device_material(&m)
        .unwrap_or_else(|e| panic!("registering a device of {user}: {e}"));
    let code = paycode_wallet::CodeDisplay::default()
        .next(&material, chrono::Utc::now().timestamp() as u64)
        .unwrap()
        .0
        .digits;
    (code, m.device_token.unwrap_or_default())
}

/// `GET url` (with an operator or device token) as JSON.
pub async fn get_json(url: &str, token: &str) -> Value {
    reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A port free on 127.0.0.1 at the time of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
