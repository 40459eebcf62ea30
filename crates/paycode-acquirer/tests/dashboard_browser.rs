//! The dashboard in a real headless Chromium, driven over WebDriver (`chromedriver`): what an
//! operator and a merchant user do with it, with the money checked in the ledger and the
//! wallet after each action. A screenshot of every page is saved under the test target's
//! `dashboard-screenshots/`.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian's `chromium` and
//! `chromium-driver`). Without them the test says so and passes, unless
//! `PAYCODE_REQUIRE_BROWSER=1` (set by CI, which installs them), when it fails.

mod common;

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

struct Driver {
    child: Child,
    _profile: tempfile::TempDir,
    client: Client,
    base: String,
    shots: std::path::PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts chromedriver and a headless Chromium session, or `None` when they are not installed.
async fn driver(base: &str) -> Option<Driver> {
    if !std::path::Path::new(CHROMEDRIVER).exists() || !std::path::Path::new(CHROMIUM).exists() {
        assert!(
            std::env::var("PAYCODE_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "PAYCODE_REQUIRE_BROWSER=1 but {CHROMEDRIVER} or {CHROMIUM} is missing"
        );
        eprintln!("dashboard browser test skipped: install chromium and chromium-driver");
        return None;
    }
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"binary": CHROMIUM, "args": [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--window-size=1280,1000",
            format!("--user-data-dir={}", profile.path().display()),
        ]}),
    );
    let url = format!("http://127.0.0.1:{port}");
    let mut last = None;
    for _ in 0..100 {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(client) => {
                let shots =
                    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
                std::fs::create_dir_all(&shots).unwrap();
                return Some(Driver {
                    child,
                    _profile: profile,
                    client,
                    base: base.to_string(),
                    shots,
                });
            }
            Err(e) => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    panic!("no WebDriver session: {last:?}");
}

impl Driver {
    async fn open(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap();
    }

    async fn text(&self, css: &str) -> String {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .text()
            .await
            .unwrap()
    }

    async fn fill(&self, css: &str, value: &str) {
        let el = self.client.find(Locator::Css(css)).await.unwrap();
        el.clear().await.unwrap();
        el.send_keys(value).await.unwrap();
    }

    /// Clicks what loads a new page, and waits until the new page is there.
    async fn click(&self, css: &str) {
        self.client
            .execute("window.__before_click = true;", vec![])
            .await
            .unwrap();
        self.click_only(css).await;
        for _ in 0..200 {
            let v = self
                .client
                .execute(
                    "return window.__before_click === undefined && document.readyState === 'complete';",
                    vec![],
                )
                .await
                .unwrap();
            if v == json!(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("clicking {css} loaded no new page");
    }

    async fn click_only(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .unwrap();
    }

    async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_string()
    }

    async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    async fn sign_in(&self, name: &str, password: &str) {
        self.open("/dashboard/sign-in").await;
        self.fill("#name", name).await;
        self.fill("#password", password).await;
        self.click("#sign-in").await;
    }

    /// The cells of each row of table `css`.
    async fn rows(&self, css: &str) -> Vec<Vec<String>> {
        let v = self
            .client
            .execute(
                "return [...document.querySelectorAll(arguments[0] + ' tbody tr')]\
                 .map(tr => [...tr.querySelectorAll('td')].map(td => td.innerText.trim()));",
                vec![json!(css)],
            )
            .await
            .unwrap();
        serde_json::from_value(v).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operator_and_merchant_use_the_dashboard_in_a_browser() {
    let h = Harness::new().await;
    let Some(d) = driver(&h.url).await else {
        return;
    };

    // Payments through the merchant API: two at the real wallet, three at the double, one of
    // whose notifications the merchant's receiver refuses until it is parked.
    let rx = Receiver::start(3).await;
    let code = h.code_for("alice").await;
    let paid = h.call("pay", h.pay_body("dash-pay-1", 500, &code)).await;
    assert_eq!(status_of(&paid), "S", "{paid}");
    let paid_id = paid["paymentId"].as_str().unwrap().to_string();
    let code = h.code_for("alice").await;
    assert_eq!(
        status_of(&h.call("pay", h.pay_body("dash-pay-2", 300, &code)).await),
        "S"
    );
    for n in 0..3u64 {
        let mut body = h.pay_body(
            &format!("dash-fake-{n}"),
            100 + n as i64,
            &FakeWallet::code(n),
        );
        if n == 0 {
            body["paymentNotifyUrl"] = json!(rx.url);
        }
        assert_eq!(status_of(&h.call("pay", body).await), "S");
    }
    h.drain().await;
    for _ in 0..2 {
        h.acq.clock().advance_ms(61_000);
        h.drain().await;
    }
    let parked = h.admin_get("/admin/v1/notifications?status=PARKED").await;
    let parked_id = parked[0]["id"].as_i64().expect("one parked notification");
    assert_eq!(rx.count(), 3);

    // Sign-in: a wrong password is refused with a message and no session.
    d.sign_in("operator", "not-the-token").await;
    assert_eq!(d.text("#sign-in-message").await, "Wrong name or password.");
    d.sign_in("operator", "admin-secret").await;
    let count = d.text("#week-count").await;
    d.shot("after-sign-in").await;
    assert_eq!(d.path().await, "/dashboard/overview");

    // The overview counts the five payments and its charts draw.
    assert_eq!(count, "5");
    // The payments and paid lines (#0b5fff, #116b2f; the same here, so paid covers the other)
    // rise into the upper part of the plot: the five payments are drawn, not only the axes and
    // a line along zero.
    let drawn = d
        .client
        .execute(
            "const c = document.querySelector('#chart-count canvas');\
             if (!c) return 0;\
             const h = Math.floor(c.height * 0.4);\
             const px = c.getContext('2d').getImageData(0, 0, c.width, h).data;\
             let n = 0;\
             for (let i = 0; i < px.length; i += 4)\
               if (px[i + 3] > 0 && px[i] < 60 && px[i + 1] > 60 && px[i + 1] < 130) n++;\
             return n;",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        drawn.as_i64().unwrap() > 0,
        "the count chart drew no payments"
    );
    d.shot("overview").await;

    // Find the payment by its request id, open it and see its timeline.
    d.open("/dashboard/payments").await;
    d.fill("#f-request", "dash-pay-1").await;
    d.click("#search-button").await;
    let rows = d.rows("#payments").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][2], "dash-pay-1");
    assert!(
        d.client
            .current_url()
            .await
            .unwrap()
            .query()
            .unwrap()
            .contains("requestId=dash-pay-1")
    );
    d.shot("payments-search").await;
    d.click(&format!("a[href='/dashboard/payments/{paid_id}']"))
        .await;
    let timeline = d.text("#timeline").await;
    for want in [
        "CREATED",
        "STATE",
        "PROCESSING -> SUCCESS",
        "wallet pay answer S SUCCESS in",
    ] {
        assert!(
            timeline.contains(want),
            "{want} missing from the timeline:\n{timeline}"
        );
    }
    assert_eq!(d.text("#amount").await, "5.00 SGD");
    d.shot("payment").await;

    // Refund 1.50 from the page: in the refund list, the ledger and the customer's balance.
    let before = h.balance("alice").await;
    d.fill("#refund-amount", "1.50").await;
    d.click("#refund-button").await;
    let message = d.text("#action-message").await;
    assert!(message.contains("1.50 SGD"), "{message}");
    h.drain().await;
    assert_eq!(h.balance("alice").await, before + 150);
    let view = h.admin_get(&format!("/admin/v1/payments/{paid_id}")).await;
    assert_eq!(merchant_net(&view), 350, "{view}");
    assert!(
        view["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "DASHBOARD"
                && e["detail"].as_str().unwrap().contains("by operator")),
        "{view}"
    );
    d.open("/dashboard/refunds").await;
    let refunds = d.rows("#refunds").await;
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    assert_eq!(refunds[0][2], paid_id);
    assert_eq!(refunds[0][4], "1.50 SGD");
    d.shot("refunds").await;

    // Filter the list down to one wallet.
    d.open("/dashboard/payments").await;
    d.client
        .find(Locator::Css("#f-wallet"))
        .await
        .unwrap()
        .select_by_value("fakepay")
        .await
        .unwrap();
    d.click("#search-button").await;
    let rows = d.rows("#payments").await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows.iter().all(|r| r[4] == "fakepay"), "{rows:?}");

    // Resend the parked notification: the receiver gets a fourth attempt, which it accepts.
    d.open("/dashboard/notifications?status=PARKED").await;
    d.shot("notifications").await;
    d.click(&format!("#resend-{parked_id}")).await;
    assert!(d.text("#action-message").await.contains("sent again"));
    h.drain().await;
    assert_eq!(rx.count(), 4);
    d.open("/dashboard/notifications").await;
    let row = d.text(&format!("#n-{parked_id}")).await;
    assert!(row.contains("DELIVERED") && row.contains('4'), "{row}");
    // Every attempt is on the payment's timeline with its HTTP status.
    d.open(&format!(
        "/dashboard/payments/{}",
        parked[0]["paymentId"].as_str().unwrap()
    ))
    .await;
    let timeline = d.text("#timeline").await;
    assert_eq!(timeline.matches("HTTP 500 in").count(), 3, "{timeline}");
    assert_eq!(timeline.matches("HTTP 200 in").count(), 1, "{timeline}");
    assert!(
        timeline.contains("dashboard.resend by operator"),
        "{timeline}"
    );

    // The other pages draw.
    for page in ["settlement", "wallets", "rates", "risk", "audit"] {
        d.open(&format!("/dashboard/{page}")).await;
        assert!(d.text("h1").await.len() > 2);
        d.shot(page).await;
    }
    let code = h.code_for("bob").await;
    d.open(&format!("/dashboard/wallets?code={code}")).await;
    assert!(d.text("#lookup-result").await.contains("sgpay"));
    d.open("/dashboard/audit").await;
    d.click("#run-audit").await;
    assert!(d.text("#audit-result").await.starts_with("Clean"));

    // A POST without the CSRF token is refused and refunds nothing.
    let answer = d
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             fetch(arguments[0], {method: 'POST', headers: {'Content-Type': 'application/x-www-form-urlencoded'},\
                   body: 'amount=1.00&request_id=forged-1'}).then(r => done(r.status));",
            vec![json!(format!("/dashboard/payments/{paid_id}/refund"))],
        )
        .await
        .unwrap();
    assert_eq!(answer, json!(403));
    let view = h.admin_get(&format!("/admin/v1/payments/{paid_id}")).await;
    assert_eq!(merchant_net(&view), 350, "nothing more was refunded");

    // Sign-out ends the session: the page asks to sign in again.
    d.click("#sign-out").await;
    assert_eq!(d.text("#sign-in-message").await, "You are signed out.");
    d.open("/dashboard/payments").await;
    assert_eq!(d.path().await, "/dashboard/sign-in");

    // A merchant user of the other client sees its own payments only: another merchant's
    // payment by URL is "no such payment", with none of its data.
    let user = h
        .admin_post(
            "/admin/v1/dashboard-users",
            json!({"name": "other-shop", "password": "correct horse battery", "role": "MERCHANT",
                   "clientId": OTHER_CLIENT})
            .to_string(),
        )
        .await;
    assert_eq!(user["name"], "other-shop", "{user}");
    d.sign_in("other-shop", "correct horse battery").await;
    assert_eq!(d.text("#week-count").await, "0");
    d.open(&format!("/dashboard/payments/{paid_id}")).await;
    let page = d.client.source().await.unwrap();
    assert!(page.contains("No such payment."), "{page}");
    assert!(
        !page.contains("dash-pay-1") && !page.contains("5.00"),
        "{page}"
    );
    d.shot("merchant-refused").await;
    d.open("/dashboard/payments").await;
    assert_eq!(d.rows("#payments").await[0][0], "No payment matches.");
    d.open("/dashboard/notifications").await;
    assert!(
        d.client
            .source()
            .await
            .unwrap()
            .contains("This page is for operators.")
    );
}
