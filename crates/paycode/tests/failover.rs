//! Failover of a replicated PostgreSQL under load. The test builds a primary and a streaming
//! synchronous standby on this machine (`pg_createcluster`, `pg_basebackup -R`), runs `serve`
//! on a URL naming both hosts with `target_session_attrs=read-write`, stops the primary hard in
//! the middle of a stream of payments and promotes the standby. paycode reconnects without a
//! restart; every payment it acknowledged is on the promoted server with its money, `/readyz`
//! said not-ready while no server took writes, and the store audits clean. The window without
//! acknowledged payments is printed.
//!
//! Runs with the PostgreSQL suite (`PAYCODE_TEST_DATABASE_URL`) on a machine with the Debian
//! PostgreSQL cluster tools and the right to use them; elsewhere it says why and passes.

use paycode_http::{SignedClient, Signer};
use paycode_sign::{PrivateKey, PublicKey};
use serde_json::{Value, json};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::Serve;

const VERSION: &str = "15";

/// A primary and its synchronous standby, dropped (stopped and deleted) with this value.
struct Replicated {
    primary: String,
    standby: String,
    primary_port: u16,
    standby_port: u16,
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?}: {}{}",
            common::text(&out.stdout),
            common::text(&out.stderr)
        ));
    }
    Ok(common::text(&out.stdout))
}

fn ctl(cluster: &str, action: &[&str]) -> Result<String, String> {
    run(Command::new("pg_ctlcluster")
        .arg("--skip-systemctl-redirect")
        .arg(VERSION)
        .arg(cluster)
        .args(action))
}

fn psql(port: u16, database: &str, sql: &str) -> Result<String, String> {
    run(Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-tAX", "-d", database])
        .arg("-p")
        .arg(port.to_string())
        .arg("-c")
        .arg(sql))
}

impl Replicated {
    fn create() -> Result<Replicated, String> {
        let tag = std::process::id();
        let r = Replicated {
            primary: format!("paycode_p{tag}"),
            standby: format!("paycode_s{tag}"),
            primary_port: common::free_port(),
            standby_port: common::free_port(),
        };
        let trust = "local all all trust\nhost all all 127.0.0.1/32 trust\n\
                     local replication all trust\nhost replication all 127.0.0.1/32 trust\n";
        for (name, port) in [(&r.primary, r.primary_port), (&r.standby, r.standby_port)] {
            run(Command::new("pg_createcluster")
                .args([VERSION, name.as_str(), "-p"])
                .arg(port.to_string()))?;
            let etc = format!("/etc/postgresql/{VERSION}/{name}");
            std::fs::write(format!("{etc}/pg_hba.conf"), trust).map_err(|e| e.to_string())?;
            // The primary waits for its standby at every commit; the standby, once promoted,
            // runs alone until a new standby joins (what a manager such as Patroni arranges).
            let sync = if *name == r.primary {
                "synchronous_standby_names = '*'\nsynchronous_commit = on\n"
            } else {
                ""
            };
            std::fs::write(
                format!("{etc}/conf.d/paycode.conf"),
                format!(
                    "listen_addresses = '127.0.0.1'\nmax_connections = 60\n\
                     shared_buffers = 32MB\n{sync}"
                ),
            )
            .map_err(|e| e.to_string())?;
        }
        ctl(&r.primary, &["start"])?;
        // The standby starts from a base backup of the primary and follows it.
        let data = format!("/var/lib/postgresql/{VERSION}/{}", r.standby);
        for entry in std::fs::read_dir(&data).map_err(|e| e.to_string())? {
            let path = entry.map_err(|e| e.to_string())?.path();
            let gone = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            gone.map_err(|e| format!("{}: {e}", path.display()))?;
        }
        run(Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                "pg_basebackup",
                "-h",
                "127.0.0.1",
                "-U",
            ])
            .args(["postgres", "-R", "-X", "stream", "-D", &data, "-p"])
            .arg(r.primary_port.to_string()))?;
        ctl(&r.standby, &["start"])?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while psql(
            r.primary_port,
            "postgres",
            "SELECT sync_state FROM pg_stat_replication",
        )?
        .trim()
            != "sync"
        {
            if Instant::now() > deadline {
                return Err("the standby never became synchronous".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        psql(r.primary_port, "postgres", "CREATE DATABASE paycode")?;
        Ok(r)
    }

    fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/paycode?target_session_attrs=read-write",
            self.primary_port, self.standby_port
        )
    }
}

impl Drop for Replicated {
    fn drop(&mut self) {
        for name in [&self.primary, &self.standby] {
            let _ = Command::new("pg_dropcluster")
                .args([VERSION, name.as_str(), "--stop"])
                .output();
        }
    }
}

/// Why this machine cannot build the replicated pair, if it cannot.
fn unavailable() -> Option<String> {
    std::env::var(paycode_db::TEST_DATABASE_URL)
        .ok()
        .filter(|u| !u.is_empty())?;
    for tool in [
        "pg_createcluster",
        "pg_basebackup",
        "pg_ctlcluster",
        "runuser",
    ] {
        if Command::new("which")
            .arg(tool)
            .output()
            .map_or(true, |o| !o.status.success())
        {
            return Some(format!("{tool} is not installed"));
        }
    }
    if !std::path::Path::new(&format!("/etc/postgresql/{VERSION}")).is_dir() {
        return Some(format!("no PostgreSQL {VERSION} clusters here"));
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failover_to_the_synchronous_standby_loses_no_acknowledged_payment() {
    if std::env::var(paycode_db::TEST_DATABASE_URL).map_or(true, |u| u.is_empty()) {
        eprintln!("skipped: the failover runs with the PostgreSQL suite");
        return;
    }
    if let Some(why) = unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let pair = match Replicated::create() {
        Ok(p) => p,
        Err(e) => panic!("building the replicated pair: {e}"),
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("test-database-url"), pair.url()).unwrap();
    let serve = Serve::start_in(dir.path(), &[("PAYCODE_WALLET_CALL_TIMEOUT_MS", "3000")]);
    let d = serve.demo.clone();
    let base = d["acquirerUrl"].as_str().unwrap().to_string();
    let client = SignedClient::new(
        d["clientId"].as_str().unwrap(),
        Signer::new(
            PrivateKey::parse(d["merchantPrivateKey"].as_str().unwrap()).unwrap(),
            1,
        ),
        Some(PublicKey::parse(d["acquirerPublicKey"].as_str().unwrap()).unwrap()),
        Duration::from_secs(10),
    );
    let (user, password) = serve.user("everyday");
    let wallet_url = d["wallets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["currency"] == d["currency"])
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_string();
    let token = serve.admin_token();
    let balance = || async {
        common::get_json(&format!("{wallet_url}/admin/v1/users/{user}"), &token).await["balance"]
            ["value"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .unwrap()
    };
    let before = balance().await;
    // The customer's codes are made before the outage: the wallet's store is on the same pair.
    let mut codes = Vec::new();
    for _ in 0..40 {
        codes.push(common::fresh_code(&wallet_url, &user, &password).await.0);
    }
    let pay = |i: usize| {
        json!({
            "productCode": "IN_STORE_PAYMENT", "paymentRequestId": format!("fo-{i}"),
            "paymentAmount": {"currency": d["currency"], "value": "40"},
            "paymentMethod": {"paymentMethodType": "CONNECT_WALLET", "paymentMethodId": codes[i]},
            "order": {"orderDescription": "kopi", "merchant": {
                "referenceMerchantId": d["referenceMerchantId"],
                "store": {"referenceStoreId": d["referenceStoreId"]}}}
        })
    };
    let pay_url = format!("{base}/ams/api/v1/payments/pay");

    // A stream of payments, one at a time as a till sends them; the primary is stopped hard
    // after the tenth and the standby promoted a moment later.
    let mut acknowledged = Vec::new();
    let mut last_before: Option<Instant> = None;
    let mut first_after: Option<Instant> = None;
    let mut stopped_at: Option<Instant> = None;
    let mut saw_not_ready = false;
    let mut refused = Vec::new();
    for i in 0..codes.len() {
        if i == 10 {
            ctl(&pair.primary, &["stop", "-m", "immediate"]).unwrap();
            stopped_at = Some(Instant::now());
            let ready = reqwest::get(format!("{base}/readyz")).await.unwrap();
            saw_not_ready = ready.status() == 503;
            tokio::time::sleep(Duration::from_millis(500)).await;
            ctl(&pair.standby, &["promote"]).unwrap();
        }
        // The till resends the same request until it gets a final answer, as the best practice
        // says; an unknown answer is followed up, never taken as a failure.
        let deadline = Instant::now() + Duration::from_secs(60);
        let answer = loop {
            match client.post::<Value, Value>(&pay_url, &pay(i)).await {
                Ok(r) if r["result"]["resultStatus"] != "U" => break r,
                _ => {}
            }
            if Instant::now() > deadline {
                let log = serve.log();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                panic!(
                    "fo-{i} never got a final answer; serve's log ends:\n{}",
                    tail.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        if answer["result"]["resultCode"] == "SUCCESS" {
            match stopped_at {
                None => last_before = Some(Instant::now()),
                Some(_) if first_after.is_none() => first_after = Some(Instant::now()),
                _ => {}
            }
            acknowledged.push(format!("fo-{i}"));
        } else {
            refused.push(format!("fo-{i}: {}", answer["result"]));
        }
    }
    assert!(
        saw_not_ready,
        "/readyz said ready while no server took writes"
    );
    let window = first_after.expect("payments resumed after the failover")
        - last_before.expect("payments before the failover");
    println!(
        "failover: {} of {} payments acknowledged; no payment acknowledged for {:.1} s \
         (primary stopped {:.1} s after the last one before); refused: {refused:?}",
        acknowledged.len(),
        codes.len(),
        window.as_secs_f64(),
        (stopped_at.unwrap() - last_before.unwrap()).as_secs_f64()
    );

    // Every acknowledged payment is on the promoted server, and the money with it.
    let ids = acknowledged
        .iter()
        .map(|r| format!("'{r}'"))
        .collect::<Vec<_>>()
        .join(",");
    let on_standby = psql(
        pair.standby_port,
        "paycode",
        &format!(
            "SELECT COUNT(*) FROM acquirer.payments WHERE status = 'SUCCESS' \
             AND payment_request_id IN ({ids})"
        ),
    )
    .unwrap();
    assert_eq!(on_standby.trim(), acknowledged.len().to_string());
    assert_eq!(
        balance().await,
        before - 40 * acknowledged.len() as i64,
        "the wallet charged exactly the acknowledged payments"
    );
    drop(serve);
    let out = common::paycode(dir.path()).arg("audit").output().unwrap();
    assert!(
        out.status.success(),
        "audit: {}{}",
        common::text(&out.stdout),
        common::text(&out.stderr)
    );
}
