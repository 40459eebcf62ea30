//! Several acquirer processes on one PostgreSQL database behave as one acquirer. Real
//! processes: two `serve --role acquirer` sharing one data directory's keys and one database,
//! the merchant's wallet as `serve --role wallet`, a round-robin balancer in front of the
//! acquirers for the wallet's notifications, and a merchant notification receiver. Requests are
//! spread over the acquirers by hand so that each race crosses processes:
//! - one pay sent to both processes at once charges once;
//! - refunds spread over both never exceed the paid amount;
//! - a cancel on one process racing the customer's password confirmation ends in one outcome;
//! - `paycode bench` spreads its clients over both;
//! - `kill -9` of one acquirer under load loses no acknowledged payment, and its in-flight
//!   payments are finished by the other after their lease;
//! - a rolling restart (each process in turn stopped with SIGTERM and started again) under
//!   load answers no request wrongly and loses nothing;
//! - every final payment is notified exactly once (no item delivered by both processes);
//! - a risk rule put through one process's admin API is enforced by the other within its
//!   reload tick;
//! - `paycode audit` is clean at the end.
//!
//! PostgreSQL only (`PAYCODE_TEST_DATABASE_URL`): SQLite is one process's store.

use paycode_http::{SignedClient, Signer};
use paycode_sign::{PrivateKey, PublicKey};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

/// A child `paycode` process, killed on drop.
struct Proc {
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    fn spawn(dir: &Path, url: &str, name: &str, args: &[&str]) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let child = std::process::Command::new(common::BIN)
            .env("PAYCODE_DATABASE_URL", url)
            // Fast retries, a short lease and reference data reloaded every second, so that the
            // takeovers this test waits for happen within seconds.
            .env("PAYCODE_NOTIFY_SCHEDULE_S", "0,1,1,1,1,1,1,1,1,1")
            .env("PAYCODE_WORK_LEASE_MS", "3000")
            .env("PAYCODE_RECONCILE_INTERVAL_MS", "500")
            .env("PAYCODE_REGISTRY_RELOAD_S", "1")
            .arg("--data-dir")
            .arg(dir)
            .arg("serve")
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Proc {
            child: Some(child),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `addr` accepts connections; panics with the log if the process exits.
    fn wait_listening(&mut self, addr: &str) {
        let deadline = Instant::now() + common::STARTUP_DEADLINE;
        while std::net::TcpStream::connect(addr).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("exited with {status} before listening:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "not listening:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The demo file, once the acquirer has seeded the store and written it.
    fn wait_demo_file(&mut self, dir: &Path) -> Value {
        let deadline = Instant::now() + common::STARTUP_DEADLINE;
        loop {
            if let Some(demo) = std::fs::read_to_string(dir.join("demo.json"))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
            {
                return demo;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "exited with {status} before writing demo.json:\n{}",
                    self.log()
                );
            }
            assert!(Instant::now() < deadline, "no demo.json:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, as an orchestrator's rolling restart does; waits for the graceful exit.
    fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let status = c.wait().unwrap();
            assert!(
                status.success(),
                "a graceful stop exits 0: {status}\n{}",
                self.log()
            );
        }
    }

    /// SIGKILL, as a crash.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A base such that the `n` ports from it are free now (the demo wallets listen at base + index).
fn free_port_run(n: u16) -> u16 {
    for _ in 0..200 {
        let base = 20_000 + (common::free_port() % 40_000);
        if (base..base + n).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return base;
        }
    }
    panic!("no run of {n} free ports");
}

/// A TCP balancer: each connection goes to the next live backend in turn.
async fn balancer(backends: Vec<String>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let next = Arc::new(Mutex::new(0usize));
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            let (backends, next) = (backends.clone(), next.clone());
            tokio::spawn(async move {
                let start = {
                    let mut n = next.lock().unwrap();
                    *n += 1;
                    *n
                };
                for i in 0..backends.len() {
                    let target = &backends[(start + i) % backends.len()];
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

/// When each notified item (`paymentId`, or `paymentId/refundId`) arrived.
type Deliveries = Arc<Mutex<BTreeMap<String, Vec<Instant>>>>;

/// A merchant notification receiver that acknowledges everything and notes each delivery.
async fn receiver() -> (String, Deliveries) {
    let seen = Deliveries::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/notify", listener.local_addr().unwrap());
    let counts = seen.clone();
    let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let counts = counts.clone();
        async move {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let key = match v["refundId"].as_str() {
                Some(r) => format!("{}/{r}", v["paymentId"].as_str().unwrap_or("?")),
                None => v["paymentId"].as_str().unwrap_or("?").to_string(),
            };
            counts
                .lock()
                .unwrap()
                .entry(key)
                .or_default()
                .push(Instant::now());
            (
                axum::http::StatusCode::OK,
                r#"{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"success"}}"#,
            )
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

struct Cluster {
    demo: Value,
    client: SignedClient,
    acquirers: Vec<String>,
    notify_url: String,
    wallet_url: String,
    token: String,
}

impl Cluster {
    fn user(&self, role: &str) -> (String, String) {
        let u = self.demo["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["role"] == role && u["currency"] == self.demo["currency"])
            .unwrap_or_else(|| panic!("no {role} user paying in the merchant's currency"));
        (
            u["name"].as_str().unwrap().into(),
            u["password"].as_str().unwrap().into(),
        )
    }

    async fn fresh_code(&self, user: &str, password: &str) -> (String, String) {
        common::fresh_code(&self.wallet_url, user, password).await
    }

    /// The id of the password challenge of the acquirer's payment `payment_id`, as the
    /// customer's device `token` lists it.
    async fn challenge(&self, token: &str, payment_id: &str) -> String {
        let list = common::get_json(
            &format!("{}/customer/v1/challenges", self.wallet_url),
            token,
        )
        .await;
        list["challenges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|ch| ch["paymentRequestId"] == payment_id)
            .unwrap_or_else(|| panic!("no challenge for {payment_id}: {list}"))["challengeId"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The customer confirms (with the password) or declines a challenge.
    async fn answer(&self, token: &str, challenge: &str, password: Option<&str>) -> Value {
        let http = reqwest::Client::new();
        let base = format!("{}/customer/v1/challenges/{challenge}", self.wallet_url);
        let request = match password {
            Some(pw) => http
                .post(format!("{base}/confirm"))
                .json(&json!({ "password": pw })),
            None => http.post(format!("{base}/decline")),
        };
        request
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn balance(&self, user: &str) -> i64 {
        let v = common::get_json(
            &format!("{}/admin/v1/users/{user}", self.wallet_url),
            &self.token,
        )
        .await;
        v["balance"]["value"].as_str().unwrap().parse().unwrap()
    }

    fn pay_body(&self, request_id: &str, code: &str, minor: i64) -> Value {
        let d = &self.demo;
        json!({
            "productCode": "IN_STORE_PAYMENT", "paymentRequestId": request_id,
            "paymentAmount": {"currency": d["currency"], "value": minor.to_string()},
            "paymentMethod": {"paymentMethodType": "CONNECT_WALLET", "paymentMethodId": code},
            "paymentNotifyUrl": self.notify_url,
            "order": {"orderDescription": "kopi", "merchant": {
                "referenceMerchantId": d["referenceMerchantId"], "merchantName": "Kopi & Co",
                "merchantMCC": "5814", "store": {"referenceStoreId": d["referenceStoreId"],
                "storeName": "Raffles", "storeMCC": "5814"}}}
        })
    }

    async fn call(&self, process: usize, op: &str, body: &Value) -> Result<Value, String> {
        let url = format!(
            "{}/ams/api/v1/payments/{op}",
            self.acquirers[process % self.acquirers.len()]
        );
        self.client
            .post::<Value, Value>(&url, body)
            .await
            .map_err(|e| e.to_string())
    }

    /// The payment's status once final, asked of `process`.
    async fn final_status(&self, process: usize, request_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = self
                .call(
                    process,
                    "inquiryPayment",
                    &json!({"paymentRequestId": request_id}),
                )
                .await
                && matches!(
                    r["paymentStatus"].as_str(),
                    Some("SUCCESS" | "FAIL" | "CANCELLED")
                )
            {
                return r;
            }
            assert!(Instant::now() < deadline, "{request_id} never became final");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn several_acquirer_processes_on_one_database_behave_as_one_acquirer() {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = common::database_url(dir.path()) else {
        eprintln!("skipped: the cluster runs on PostgreSQL only (set PAYCODE_TEST_DATABASE_URL)");
        return;
    };
    let specs = paycode_wallet::demo::demo_wallets();
    let base = free_port_run(specs.len() as u16);
    let ports = [common::free_port(), common::free_port()];
    let acquirers: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let lb = balancer(acquirers.clone()).await;
    let (notify_url, deliveries) = receiver().await;
    let base_s = base.to_string();
    let acquirer_args = |listen: &str| -> Vec<String> {
        [
            "--role",
            "acquirer",
            "--listen",
            listen,
            "--wallet-port-base",
            &base_s,
            "--public-url",
            &lb,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };

    // The first acquirer creates the keys and the demo data; the wallet and the second
    // acquirer then start from the same data directory.
    let args: Vec<String> = acquirer_args(&acquirers[0]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut a0 = Proc::spawn(dir.path(), &url, "acquirer-0", &args);
    a0.wait_listening(&acquirers[0]);
    let demo = a0.wait_demo_file(dir.path());
    let currency = demo["currency"].as_str().unwrap().to_string();
    let wallet = demo["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["currency"] == currency.as_str())
        .unwrap()["wallet"]
        .as_str()
        .unwrap()
        .to_string();
    let index = specs.iter().position(|s| s.name == wallet).unwrap();
    let wallet_addr = format!("127.0.0.1:{}", base as usize + index);
    let mut w = Proc::spawn(
        dir.path(),
        &url,
        "wallet",
        &[
            "--role",
            "wallet",
            "--wallet",
            &wallet,
            "--listen",
            "127.0.0.1:0",
            "--wallet-port-base",
            &base_s,
        ],
    );
    w.wait_listening(&wallet_addr);
    let args: Vec<String> = acquirer_args(&acquirers[1]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut a1 = Proc::spawn(dir.path(), &url, "acquirer-1", &args);
    a1.wait_listening(&acquirers[1]);

    let c = Cluster {
        client: SignedClient::new(
            demo["clientId"].as_str().unwrap(),
            Signer::new(
                PrivateKey::parse(demo["merchantPrivateKey"].as_str().unwrap()).unwrap(),
                1,
            ),
            Some(PublicKey::parse(demo["acquirerPublicKey"].as_str().unwrap()).unwrap()),
            Duration::from_secs(20),
        ),
        demo,
        acquirers: acquirers.iter().map(|a| format!("http://{a}")).collect(),
        notify_url,
        wallet_url: format!("http://{wallet_addr}"),
        token: std::fs::read_to_string(dir.path().join("admin-token"))
            .unwrap()
            .trim()
            .to_string(),
    };
    let (everyday, everyday_pw) = c.user("everyday");
    let mut paid_ids = Vec::new(); // request ids of payments that must end SUCCESS

    // 1. One pay sent to both processes at once charges once.
    let before = c.balance(&everyday).await;
    for i in 0..6 {
        let (code, _) = c.fresh_code(&everyday, &everyday_pw).await;
        let request_id = format!("dup-{i}");
        let body = c.pay_body(&request_id, &code, 120);
        let (r0, r1) = tokio::join!(c.call(0, "pay", &body), c.call(1, "pay", &body));
        let (r0, r1) = (r0.unwrap(), r1.unwrap());
        for r in [&r0, &r1] {
            assert!(
                matches!(
                    r["result"]["resultCode"].as_str(),
                    Some("SUCCESS" | "PAYMENT_IN_PROCESS" | "REPEAT_REQ_INCONSISTENT")
                ) || r["result"]["resultStatus"] == "U",
                "{r}"
            );
        }
        let f0 = c.final_status(0, &request_id).await;
        let f1 = c.final_status(1, &request_id).await;
        assert_eq!(f0["paymentStatus"], "SUCCESS", "{f0}");
        assert_eq!(f0["paymentId"], f1["paymentId"], "one payment, seen alike");
        for r in [&r0, &r1] {
            if let Some(id) = r["paymentId"].as_str() {
                assert_eq!(id, f0["paymentId"].as_str().unwrap());
            }
        }
        paid_ids.push(request_id);
    }
    assert_eq!(
        c.balance(&everyday).await,
        before - 6 * 120,
        "charged once each"
    );

    // 2. Refunds spread over both processes never exceed the paid amount.
    let before = c.balance(&everyday).await;
    let (code, _) = c.fresh_code(&everyday, &everyday_pw).await;
    let r = c
        .call(0, "pay", &c.pay_body("refunded", &code, 1000))
        .await
        .unwrap();
    assert_eq!(r["result"]["resultCode"], "SUCCESS", "{r}");
    let payment_id = r["paymentId"].as_str().unwrap().to_string();
    let refunds = (0..8).map(|i| {
        let body = json!({"refundRequestId": format!("rf-{i}"), "paymentId": payment_id,
            "refundAmount": {"currency": currency, "value": "300"}});
        let c = &c;
        async move { c.call(i, "refund", &body).await }
    });
    futures_util::future::join_all(refunds).await;
    let mut refunded = 0;
    for i in 0..8 {
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            let r = c
                .call(
                    i + 1,
                    "inquiryRefund",
                    &json!({"refundRequestId": format!("rf-{i}")}),
                )
                .await
                .unwrap();
            match r["refundStatus"].as_str() {
                Some(s @ ("SUCCESS" | "FAIL")) => break s.to_string(),
                // Refused before it was recorded (the paid amount was taken by the others).
                None if r["result"]["resultStatus"] == "F" => break "NONE".into(),
                _ => {}
            }
            assert!(Instant::now() < deadline, "refund rf-{i} never final: {r}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        if status == "SUCCESS" {
            refunded += 300;
        }
    }
    assert!(
        (300..=1000).contains(&refunded),
        "refunded {refunded} of 1000"
    );
    assert_eq!(
        refunded, 900,
        "three refunds of 300 fit in 1000, a fourth does not"
    );
    assert_eq!(
        c.balance(&everyday).await,
        before - 1000 + refunded,
        "the wallet returned exactly the refunds that succeeded"
    );
    paid_ids.push("refunded".into());

    // 3. A cancel on one process racing the password confirmation through the other.
    let (careful, careful_pw) = c.user("password");
    for i in 0..3 {
        let before = c.balance(&careful).await;
        let (code, token) = c.fresh_code(&careful, &careful_pw).await;
        let request_id = format!("race-{i}");
        let r = c
            .call(i, "pay", &c.pay_body(&request_id, &code, 200))
            .await
            .unwrap();
        assert_eq!(r["result"]["resultCode"], "PAYMENT_IN_PROCESS", "{r}");
        let challenge = c.challenge(&token, r["paymentId"].as_str().unwrap()).await;
        let confirm = c.answer(&token, &challenge, Some(&careful_pw));
        let cancel_body = json!({"paymentRequestId": request_id});
        let cancel = c.call(i + 1, "cancel", &cancel_body);
        let (_, _) = tokio::join!(confirm, cancel);
        let f0 = c.final_status(0, &request_id).await;
        let f1 = c.final_status(1, &request_id).await;
        assert_eq!(f0["paymentStatus"], f1["paymentStatus"], "one outcome");
        let after = c.balance(&careful).await;
        match f0["paymentStatus"].as_str().unwrap() {
            "SUCCESS" => assert_eq!(after, before - 200, "{f0}"),
            _ => assert_eq!(after, before, "nothing charged: {f0}"),
        }
        // A cancel that lost the race leaves a payment the wallet cancels or refunds in full;
        // either way the customer keeps the money unless the payment stands.
        if f0["paymentStatus"] == "SUCCESS" {
            paid_ids.push(request_id);
        }
    }

    // The bench spreads its clients over both processes and every payment succeeds.
    let mut bench = common::paycode(dir.path());
    bench.args([
        "bench",
        "--clients",
        "4",
        "--duration-s",
        "2",
        "--devices",
        "400",
    ]);
    for a in &c.acquirers {
        bench.args(["--acquirer-url", a]);
    }
    let out = bench.output().unwrap();
    let stdout = common::text(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        common::text(&out.stderr)
    );
    assert!(stdout.contains("2 acquirer process(es)"), "{stdout}");
    assert!(stdout.contains("errors           0"), "{stdout}");

    // 4. kill -9 of one acquirer under load: the other keeps serving, each payment the dead
    // one acknowledged stands, and its in-flight ones are finished by the survivor.
    // Two payments wait for their customer's password when the process that started them
    // dies; the wallet's answer then reaches the survivor (through the balancer, or by its
    // own inquiry once the dead process's lease is over).
    let careful_before = c.balance(&careful).await;
    let mut orphans = Vec::new();
    for i in 0..2 {
        let (code, token) = c.fresh_code(&careful, &careful_pw).await;
        let request_id = format!("orphan-{i}");
        let r = c
            .call(0, "pay", &c.pay_body(&request_id, &code, 150))
            .await
            .unwrap();
        assert_eq!(r["result"]["resultCode"], "PAYMENT_IN_PROCESS", "{r}");
        orphans.push((
            request_id,
            token,
            r["paymentId"].as_str().unwrap().to_string(),
        ));
    }
    let before = c.balance(&everyday).await;
    let mut codes = Vec::new();
    for _ in 0..24 {
        codes.push(c.fresh_code(&everyday, &everyday_pw).await.0);
    }
    let load = codes.iter().enumerate().map(|(i, code)| {
        let c = &c;
        async move {
            tokio::time::sleep(Duration::from_millis(40 * i as u64)).await;
            let request_id = format!("load-{i}");
            let body = c.pay_body(&request_id, code, 50);
            let r = c.call(i, "pay", &body).await;
            // No answer: the POS sends the same request again, here to the other process.
            let retried = match &r {
                Err(_) => Some(c.call(i + 1, "pay", &body).await),
                Ok(_) => None,
            };
            (request_id, r, retried)
        }
    });
    let kill_at = async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        a0.kill();
        Instant::now()
    };
    let (answers, killed_at) = tokio::join!(futures_util::future::join_all(load), kill_at);
    let mut charged = 0;
    for (i, (_, token, payment_id)) in orphans.iter().enumerate() {
        let challenge = c.challenge(token, payment_id).await;
        let confirm = (i == 0).then_some(careful_pw.as_str());
        c.answer(token, &challenge, confirm).await;
    }
    let confirmed = c.final_status(1, &orphans[0].0).await;
    assert_eq!(confirmed["paymentStatus"], "SUCCESS", "{confirmed}");
    let declined = c.final_status(1, &orphans[1].0).await;
    assert_eq!(declined["paymentStatus"], "FAIL", "{declined}");
    assert_eq!(c.balance(&careful).await, careful_before - 150);
    paid_ids.push(orphans[0].0.clone());
    let n_unanswered = answers.iter().filter(|(_, r, _)| r.is_err()).count();
    assert!(n_unanswered > 0, "the kill caught requests in flight");
    for (request_id, answer, retried) in &answers {
        // The merchant follows up on the surviving process, as the best practice says.
        let f = c.final_status(1, request_id).await;
        for a in [answer, retried.as_ref().unwrap_or(answer)] {
            let Ok(a) = a else { continue };
            match a["result"]["resultStatus"].as_str() {
                Some("S") => assert_eq!(f["paymentStatus"], "SUCCESS", "acknowledged: {f}"),
                Some("F") => assert_ne!(f["paymentStatus"], "SUCCESS", "answered F: {f}"),
                _ => {}
            }
        }
        if f["paymentStatus"] == "SUCCESS" {
            charged += 50;
            paid_ids.push(request_id.to_string());
        }
    }
    assert!(charged > 0, "the survivor kept serving");
    assert_eq!(
        c.balance(&everyday).await,
        before - charged,
        "the wallet charged exactly the payments that stand"
    );
    let mut stops = vec![killed_at];

    // 4b. A rolling restart under load: the killed process comes back, then each process in
    // turn is stopped gracefully (SIGTERM) and started again while payments keep coming. A
    // request refused at the door of a stopping process is sent to the other, as a load
    // balancer would; every answer must match the final state, and nothing is lost.
    let args0: Vec<String> = acquirer_args(&acquirers[0]);
    let args0: Vec<&str> = args0.iter().map(String::as_str).collect();
    let args1: Vec<String> = acquirer_args(&acquirers[1]);
    let args1: Vec<&str> = args1.iter().map(String::as_str).collect();
    a0 = Proc::spawn(dir.path(), &url, "acquirer-0b", &args0);
    a0.wait_listening(&acquirers[0]);
    let before = c.balance(&everyday).await;
    let mut codes = Vec::new();
    for _ in 0..40 {
        codes.push(c.fresh_code(&everyday, &everyday_pw).await.0);
    }
    let load = codes.iter().enumerate().map(|(i, code)| {
        let c = &c;
        async move {
            tokio::time::sleep(Duration::from_millis(60 * i as u64)).await;
            let request_id = format!("roll-{i}");
            let body = c.pay_body(&request_id, code, 30);
            let mut answers = Vec::new();
            for attempt in 0..6 {
                let r = c.call(i + attempt, "pay", &body).await;
                let done = r.is_ok();
                answers.push(r);
                if done {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (request_id, answers)
        }
    });
    let roll = async {
        let mut at = Vec::new();
        for (proc, name, args, addr) in [
            (&mut a1, "acquirer-1b", &args1, &acquirers[1]),
            (&mut a0, "acquirer-0c", &args0, &acquirers[0]),
        ] {
            tokio::time::sleep(Duration::from_millis(500)).await;
            at.push(Instant::now());
            tokio::task::block_in_place(|| {
                proc.terminate();
                *proc = Proc::spawn(dir.path(), &url, name, args);
                proc.wait_listening(addr);
            });
        }
        at
    };
    let load_start = Instant::now();
    let (answers, rolled_at) = tokio::join!(futures_util::future::join_all(load), roll);
    let last_sent = load_start + Duration::from_millis(60 * (codes.len() as u64 - 1));
    assert!(
        rolled_at.iter().all(|at| *at < last_sent),
        "both processes were stopped while payments were still being sent"
    );
    stops.extend(rolled_at);
    let mut charged = 0;
    for (request_id, tries) in &answers {
        let f = c.final_status(0, request_id).await;
        assert!(
            tries.last().unwrap().is_ok(),
            "{request_id} was never answered: {tries:?}"
        );
        for a in tries.iter().flatten() {
            match a["result"]["resultStatus"].as_str() {
                Some("S") => assert_eq!(f["paymentStatus"], "SUCCESS", "acknowledged: {f}"),
                Some("F") => assert_ne!(f["paymentStatus"], "SUCCESS", "answered F: {f}"),
                _ => {}
            }
        }
        if f["paymentStatus"] == "SUCCESS" {
            charged += 30;
            paid_ids.push(request_id.to_string());
        }
    }
    assert_eq!(
        charged,
        40 * 30,
        "every payment of the rolling restart stands"
    );
    assert_eq!(
        c.balance(&everyday).await,
        before - charged,
        "charged once each across the restarts"
    );

    // 5. Every payment that stands is notified, once. The one exception is a notification the
    // killed process had sent but not yet recorded as delivered: the survivor sends it again
    // once the dead process's lease (3 s) is over, so after the kill. Anything else delivered
    // twice means two processes worked one item at once.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ids = Vec::new();
    for request_id in &paid_ids {
        let f = c.final_status(1, request_id).await;
        ids.push(f["paymentId"].as_str().unwrap().to_string());
    }
    loop {
        let seen = deliveries.lock().unwrap().clone();
        if ids.iter().all(|id| seen.contains_key(id)) {
            for (item, at) in &seen {
                match at.as_slice() {
                    [_] => {}
                    [first, again] if stops.iter().any(|s| first < s && again > s) => {}
                    _ => panic!("{item} delivered {} times: {at:?}", at.len()),
                }
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not notified: {:?}",
            ids.iter()
                .filter(|id| !seen.contains_key(*id))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // 5b. Reference data changed through one process's admin API reaches the other within the
    // reload bound (PAYCODE_REGISTRY_RELOAD_S=1 here): a rule blocking the merchant, put through
    // process 0, refuses a payment sent to process 1 within a few seconds; lifted, it pays again.
    let put_rules = |rules: String| {
        let (url, token) = (
            format!("{}/admin/v1/risk/rules", c.acquirers[0]),
            c.token.clone(),
        );
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .body(rules)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        }
    };
    let rules_before = reqwest::Client::new()
        .get(format!("{}/admin/v1/risk/rules", c.acquirers[0]))
        .bearer_auth(&c.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let merchant_key = format!(
        "{}/{}",
        c.demo["clientId"].as_str().unwrap(),
        c.demo["referenceMerchantId"].as_str().unwrap()
    );
    put_rules(
        json!([{"id": "stop", "kind": "BLOCKED_MERCHANT", "merchant": merchant_key}]).to_string(),
    )
    .await;
    let changed_at = Instant::now();
    let mut n = 0;
    let reached_after = loop {
        let (code, _) = c.fresh_code(&everyday, &everyday_pw).await;
        let r = c
            .call(1, "pay", &c.pay_body(&format!("ref-{n}"), &code, 10))
            .await
            .unwrap();
        n += 1;
        if r["result"]["resultCode"] == "RISK_REJECT" {
            break changed_at.elapsed();
        }
        assert!(
            changed_at.elapsed() < Duration::from_secs(5),
            "the rule never reached process 1: {r}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("a rule changed on process 0 reached process 1 after {reached_after:?}");
    put_rules(rules_before).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let (code, _) = c.fresh_code(&everyday, &everyday_pw).await;
    let r = c
        .call(1, "pay", &c.pay_body("ref-after", &code, 10))
        .await
        .unwrap();
    assert_eq!(
        r["result"]["resultCode"], "SUCCESS",
        "lifted on process 1 too: {r}"
    );

    // 6. The books balance (asked of the survivor, through the balancer).
    let out = common::paycode(dir.path()).arg("audit").output().unwrap();
    assert!(
        out.status.success(),
        "audit: {}{}",
        common::text(&out.stdout),
        common::text(&out.stderr)
    );
    a1.kill();
    w.kill();
}
