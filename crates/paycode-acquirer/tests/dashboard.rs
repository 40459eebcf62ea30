//! The dashboard over plain HTTP: sign-in, sessions and their end, roles and scope, CSRF,
//! search input errors, pagination and CSV, and refunds and cancels from the dashboard with
//! the money checked. The browser test (`dashboard_browser.rs`) drives the same pages in
//! Chromium.

mod common;

use common::*;
use serde_json::{Value, json};
use std::collections::HashMap;

/// A browser without JavaScript: keeps cookies, never follows redirects.
struct Web {
    base: String,
    http: reqwest::Client,
    cookies: HashMap<String, String>,
}

struct Page {
    status: u16,
    location: Option<String>,
    body: String,
}

impl Web {
    fn new(base: &str) -> Web {
        Web {
            base: base.to_string(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: HashMap::new(),
        }
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let resp = req.header("cookie", cookie).send().await.unwrap();
        for v in resp.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            assert!(
                v.contains("HttpOnly") && v.contains("SameSite=Strict"),
                "{v}"
            );
            let (kv, _) = v.split_once(';').unwrap();
            let (k, val) = kv.split_once('=').unwrap();
            if val.is_empty() || v.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), val.to_string());
            }
        }
        Page {
            status: resp.status().as_u16(),
            location: resp
                .headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_string()),
            body: resp.text().await.unwrap(),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let req = self.http.get(format!("{}{path}", self.base));
        self.send(req).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let mut body = form_urlencoded::Serializer::new(String::new());
        for (k, v) in form {
            body.append_pair(k, v);
        }
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.finish());
        self.send(req).await
    }

    async fn sign_in(&mut self, name: &str, password: &str) -> Page {
        let form = self.get("/dashboard/sign-in").await;
        let csrf = hidden(&form.body, "csrf");
        self.post(
            "/dashboard/sign-in",
            &[("csrf", &csrf), ("name", name), ("password", password)],
        )
        .await
    }
}

/// The value of the first hidden input `name` on a page.
fn hidden(html: &str, name: &str) -> String {
    let at = html
        .find(&format!("name=\"{name}\" value=\""))
        .unwrap_or_else(|| panic!("no {name} on the page:\n{html}"));
    let rest = &html[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_string()
}

async fn add_user(h: &Harness, body: Value) -> Value {
    h.admin_post("/admin/v1/dashboard-users", body.to_string())
        .await
}

async fn pay_fake(h: &Harness, request_id: &str, value: i64, n: u64) -> String {
    let paid = h
        .call("pay", h.pay_body(request_id, value, &FakeWallet::code(n)))
        .await;
    assert_eq!(status_of(&paid), "S", "{paid}");
    paid["paymentId"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sign_in_sessions_expire_and_end() {
    let h = Harness::new().await;
    let mut web = Web::new(&h.url);

    // Not signed in: every page sends to the sign-in page.
    let p = web.get("/dashboard/payments").await;
    assert_eq!(p.status, 303);
    assert_eq!(
        p.location.as_deref(),
        Some("/dashboard/sign-in?why=signed-out")
    );

    // A sign-in form without its own token (cross-site) is refused before the password.
    let p = web
        .post(
            "/dashboard/sign-in",
            &[
                ("csrf", "x"),
                ("name", "operator"),
                ("password", "admin-secret"),
            ],
        )
        .await;
    assert_eq!(p.status, 403);
    assert!(!web.cookies.contains_key("paycode_session"));

    let p = web.sign_in("operator", "wrong").await;
    assert_eq!(p.status, 401);
    assert!(p.body.contains("Wrong name or password."));
    assert!(!web.cookies.contains_key("paycode_session"));
    let p = web.sign_in("nobody", "whatever-password").await;
    assert_eq!(p.status, 401);

    let p = web.sign_in("operator", "admin-secret").await;
    assert_eq!(p.location.as_deref(), Some("/dashboard/overview"));
    assert_eq!(web.get("/dashboard/overview").await.status, 200);
    let log = h.admin_get("/admin/v1/operator-log").await;
    let actions: Vec<_> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                e["actor"].as_str().unwrap(),
                e["action"].as_str().unwrap(),
                e["detail"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        actions[..3],
        [
            "operator dashboard.sign-in signed in",
            "nobody dashboard.sign-in refused",
            "operator dashboard.sign-in refused"
        ],
        "{actions:?}"
    );

    // Eight hours later the session has expired.
    h.acq.clock().advance_ms(8 * 3_600_000 + 1);
    let p = web.get("/dashboard/overview").await;
    assert_eq!(
        p.location.as_deref(),
        Some("/dashboard/sign-in?why=expired")
    );
    let p = web.get("/dashboard/overview.json").await;
    assert_eq!(p.status, 401);

    // Signing out ends the session for every process: the same cookie is refused.
    web.sign_in("operator", "admin-secret").await;
    let session = web.cookies["paycode_session"].clone();
    let page = web.get("/dashboard/overview").await;
    let csrf = hidden(&page.body, "csrf");
    assert_eq!(web.post("/dashboard/sign-out", &[]).await.status, 403);
    let p = web.post("/dashboard/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!(p.location.as_deref(), Some("/dashboard/sign-in?why=bye"));
    let second = h.second_acquirer().await;
    let mut replay = Web::new(&second);
    replay.cookies.insert("paycode_session".into(), session);
    let p = replay.get("/dashboard/overview").await;
    assert_eq!(
        p.location.as_deref(),
        Some("/dashboard/sign-in?why=expired")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn users_are_checked_and_see_only_their_merchants() {
    let h = Harness::new().await;
    let mine = pay_fake(&h, "scope-1", 700, 1).await;
    let theirs = {
        let mut body = h.pay_body("scope-2", 900, &FakeWallet::code(2));
        body["order"]["merchant"]["referenceMerchantId"] = json!("O1");
        let paid = h.call_as(&h.other, "pay", body).await;
        assert_eq!(status_of(&paid), "S", "{paid}");
        paid["paymentId"].as_str().unwrap().to_string()
    };

    // The admin API names the field that is wrong, and stores nothing.
    for (body, field) in [
        (
            json!({"name": "a", "password": "short", "role": "MERCHANT", "clientId": CLIENT}),
            "password",
        ),
        (
            json!({"name": "a", "password": "long enough pw", "role": "MERCHANT", "clientId": "NOPE"}),
            "clientId",
        ),
        (
            json!({"name": "a", "password": "long enough pw", "role": "MERCHANT", "clientId": CLIENT, "referenceMerchantId": "M9"}),
            "referenceMerchantId",
        ),
        (
            json!({"name": "a", "password": "long enough pw", "role": "MERCHANT"}),
            "clientId",
        ),
        (
            json!({"name": "a b", "password": "long enough pw", "role": "OPERATOR"}),
            "name",
        ),
        (
            json!({"name": "a", "password": "long enough pw", "role": "BOSS"}),
            "role",
        ),
    ] {
        let v = add_user(&h, body.clone()).await;
        assert_eq!(v["error"], "PARAM_ILLEGAL", "{body} → {v}");
        assert!(v["message"].as_str().unwrap().starts_with(field), "{v}");
    }
    assert_eq!(
        h.admin_get("/admin/v1/dashboard-users").await["users"],
        json!([])
    );

    add_user(&h, json!({"name": "m1-user", "password": "m1 password!", "role": "MERCHANT", "clientId": CLIENT, "referenceMerchantId": MERCHANT})).await;
    add_user(&h, json!({"name": "closed-user", "password": "closed password", "role": "MERCHANT", "clientId": CLIENT, "referenceMerchantId": "SUSPENDED"})).await;
    add_user(&h, json!({"name": "isv-user", "password": "isv password!", "role": "MERCHANT", "clientId": OTHER_CLIENT})).await;
    add_user(&h, json!({"name": "gone", "password": "gone password", "role": "MERCHANT", "clientId": CLIENT, "disabled": true})).await;
    let users = h.admin_get("/admin/v1/dashboard-users").await;
    assert_eq!(users["users"].as_array().unwrap().len(), 4, "{users}");
    assert!(
        !users.to_string().contains("argon2"),
        "hashes are never shown"
    );

    let mut web = Web::new(&h.url);
    assert_eq!(web.sign_in("gone", "gone password").await.status, 401);

    assert_eq!(web.sign_in("m1-user", "m1 password!").await.status, 303);
    let list = web.get("/dashboard/payments").await.body;
    assert!(list.contains(&mine) && !list.contains(&theirs));
    // Asking for another client in the form changes nothing: the scope wins.
    let list = web
        .get(&format!("/dashboard/payments?client={OTHER_CLIENT}"))
        .await
        .body;
    assert!(list.contains(&mine) && !list.contains(&theirs));
    let p = web.get(&format!("/dashboard/payments/{theirs}")).await;
    assert_eq!(p.status, 404);
    assert!(
        p.body.contains("No such payment.")
            && !p.body.contains("9.00")
            && !p.body.contains("scope-2")
    );
    assert_eq!(
        web.get(&format!("/dashboard/payments/{mine}")).await.status,
        200
    );
    assert_eq!(web.get("/dashboard/notifications").await.status, 403);
    assert_eq!(web.get("/dashboard/risk").await.status, 403);
    let csv = web.get("/dashboard/payments.csv").await.body;
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(csv.contains("scope-1") && !csv.contains("scope-2"));
    let overview: Value =
        serde_json::from_str(&web.get("/dashboard/overview.json").await.body).unwrap();
    assert_eq!(overview["week"]["count"], 1, "{overview}");
    assert_eq!(overview["week"]["volume"], json!(["7.00 SGD"]));

    let mut web = Web::new(&h.url);
    web.sign_in("closed-user", "closed password").await;
    assert!(!web.get("/dashboard/payments").await.body.contains(&mine));
    assert_eq!(
        web.get(&format!("/dashboard/payments/{mine}")).await.status,
        404
    );

    // An ISV user sees every merchant of its client, and only those.
    let mut web = Web::new(&h.url);
    web.sign_in("isv-user", "isv password!").await;
    let list = web.get("/dashboard/payments").await.body;
    assert!(list.contains(&theirs) && !list.contains(&mine));
    // ... and cannot act on another client's payment either.
    let page = web.get(&format!("/dashboard/payments/{theirs}")).await.body;
    let csrf = hidden(&page, "csrf");
    let p = web
        .post(
            &format!("/dashboard/payments/{mine}/refund"),
            &[
                ("csrf", &csrf),
                ("amount", "1.00"),
                ("request_id", "isv-r1"),
            ],
        )
        .await;
    assert_eq!(p.status, 404);
    assert_eq!(
        h.sql_i64(
            "SELECT COUNT(*) FROM refunds WHERE payment_id = ?1",
            mine.clone()
        )
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refunds_and_cancels_from_the_dashboard_move_money_once() {
    let h = Harness::new().await;
    let code = h.code_for("alice").await;
    let paid = h.call("pay", h.pay_body("act-1", 800, &code)).await;
    assert_eq!(status_of(&paid), "S", "{paid}");
    let id = paid["paymentId"].as_str().unwrap().to_string();
    let mut web = Web::new(&h.url);
    web.sign_in("operator", "admin-secret").await;
    let page = web.get(&format!("/dashboard/payments/{id}")).await.body;
    let (csrf, request_id) = (hidden(&page, "csrf"), hidden(&page, "request_id"));
    let before = h.balance("alice").await;

    // Without the CSRF token: refused, nothing written.
    let p = web
        .post(
            &format!("/dashboard/payments/{id}/refund"),
            &[("amount", "1.00"), ("request_id", "x")],
        )
        .await;
    assert_eq!(p.status, 403);
    let p = web
        .post(
            &format!("/dashboard/payments/{id}/cancel"),
            &[("csrf", "stale")],
        )
        .await;
    assert_eq!(p.status, 403);

    // A bad amount names the field.
    let p = web
        .post(
            &format!("/dashboard/payments/{id}/refund"),
            &[
                ("csrf", &csrf),
                ("amount", "1.234"),
                ("request_id", &request_id),
            ],
        )
        .await;
    let shown = web.get(p.location.as_deref().unwrap()).await.body;
    assert!(shown.contains("amount:"), "{shown}");
    assert_eq!(
        h.sql_i64(
            "SELECT COUNT(*) FROM refunds WHERE payment_id = ?1",
            id.clone()
        )
        .await,
        0
    );

    // The same form sent twice (a double click, a reload) refunds once.
    for _ in 0..2 {
        let p = web
            .post(
                &format!("/dashboard/payments/{id}/refund"),
                &[
                    ("csrf", &csrf),
                    ("amount", "2.00"),
                    ("request_id", &request_id),
                ],
            )
            .await;
        assert_eq!(p.status, 303);
    }
    h.drain().await;
    assert_eq!(
        h.sql_i64(
            "SELECT COUNT(*) FROM refunds WHERE payment_id = ?1",
            id.clone()
        )
        .await,
        1
    );
    assert_eq!(h.balance("alice").await, before + 200);
    let view = h.admin_get(&format!("/admin/v1/payments/{id}")).await;
    assert_eq!(merchant_net(&view), 600, "{view}");

    // More than what is left is refused by the service, with its code shown.
    let page = web.get(&format!("/dashboard/payments/{id}")).await.body;
    let p = web
        .post(
            &format!("/dashboard/payments/{id}/refund"),
            &[
                ("csrf", &csrf),
                ("amount", "7.00"),
                ("request_id", &hidden(&page, "request_id")),
            ],
        )
        .await;
    let shown = web.get(p.location.as_deref().unwrap()).await.body;
    assert!(shown.contains("REFUND_AMOUNT_EXCEED"), "{shown}");
    h.drain().await;
    assert_eq!(h.balance("alice").await, before + 200);

    // A paid payment without refunds is cancelled from the dashboard: all money goes back.
    let code = h.code_for("alice").await;
    let paid = h.call("pay", h.pay_body("act-2", 450, &code)).await;
    let id2 = paid["paymentId"].as_str().unwrap().to_string();
    let before = h.balance("alice").await;
    let p = web
        .post(
            &format!("/dashboard/payments/{id2}/cancel"),
            &[("csrf", &csrf)],
        )
        .await;
    let shown = web.get(p.location.as_deref().unwrap()).await.body;
    assert!(shown.contains("The payment is cancelled."), "{shown}");
    h.drain().await;
    assert_eq!(h.balance("alice").await, before + 450);
    let view = h.admin_get(&format!("/admin/v1/payments/{id2}")).await;
    assert_eq!(view["payment"]["paymentStatus"], "CANCELLED", "{view}");
    assert_eq!(
        merchant_net(&view),
        0,
        "the cancel reversed the merchant's credit: {view}"
    );
    let log = h.admin_get("/admin/v1/operator-log").await.to_string();
    assert!(
        log.contains("dashboard.cancel") && log.contains("dashboard.refund"),
        "{log}"
    );
    assert!(
        h.admin_get("/admin/v1/audit").await["violations"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn search_pages_sorts_exports_and_names_bad_fields() {
    let h = Harness::new().await;
    for n in 0..57u64 {
        pay_fake(&h, &format!("page-{n:02}"), 100 + n as i64, n).await;
        h.acq.clock().advance_ms(1_000);
    }
    let mut web = Web::new(&h.url);
    web.sign_in("operator", "admin-secret").await;

    for (query, field) in [
        ("status=PAID", "status:"),
        ("min=1.00", "min: choose a currency"),
        ("currency=SGD&max=1.234", "max:"),
        ("last4=12", "last4:"),
        ("from=yesterday", "from:"),
        ("sort=colour", "sort:"),
        ("after=zzz", "after:"),
        ("currency=XYZ", "currency:"),
    ] {
        let p = web.get(&format!("/dashboard/payments?{query}")).await;
        assert_eq!(p.status, 400, "{query}");
        assert!(p.body.contains(field), "{query}: {}", p.body);
    }

    // Newest first, 50 a page, the next page from the last row, nothing twice.
    let ids = |body: &str| -> Vec<String> {
        body.match_indices("<td>page-")
            .map(|(i, _)| body[i + 4..i + 11].to_string())
            .collect()
    };
    let first = web.get("/dashboard/payments").await.body;
    let page1 = ids(&first);
    assert_eq!(page1.len(), 50);
    assert_eq!(page1[0], "page-56");
    let at = first.find("id=\"next-page\"").expect("a next page");
    let href = &first[first[..at].rfind("href=\"").unwrap() + 6..];
    let next = href[..href.find('"').unwrap()]
        .replace("&amp;", "&")
        .replace("&#x2f;", "/");
    assert!(next.starts_with("/dashboard/payments?"), "{next}");
    let page2 = ids(&web.get(&next).await.body);
    assert_eq!(page2.len(), 7);
    assert_eq!(page2.last().unwrap(), "page-00");

    // Filters combine; amounts are in the currency's major units; by amount ascending.
    let body = web
        .get("/dashboard/payments?currency=SGD&min=1.10&max=1.20&sort=amount&dir=asc")
        .await
        .body;
    assert_eq!(
        ids(&body),
        (10..=20)
            .map(|n| format!("page-{n:02}"))
            .collect::<Vec<_>>()
    );
    let body = web.get("/dashboard/payments?requestId=page-07").await.body;
    assert_eq!(ids(&body), ["page-07"]);
    let body = web.get("/dashboard/payments?last4=0031").await.body;
    assert_eq!(ids(&body), ["page-31"]);

    // The CSV has every row of the filter, not one page.
    let csv = web.get("/dashboard/payments.csv?wallet=fakepay").await;
    assert_eq!(csv.status, 200);
    let lines: Vec<_> = csv.body.lines().collect();
    assert_eq!(lines.len(), 58);
    assert!(lines[0].starts_with("paymentId,paymentRequestId,created"));
    assert!(
        lines[1].contains(",page-56,") && lines[1].contains(",1.56,SGD,"),
        "{}",
        lines[1]
    );
    let none = web.get("/dashboard/payments.csv?wallet=sgpay").await.body;
    assert_eq!(none.lines().count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn settlement_batches_show_their_items_to_their_merchant_only() {
    let h = Harness::new().await;
    pay_fake(&h, "settle-1", 1_250, 1).await;
    pay_fake(&h, "settle-2", 750, 2).await;
    let closed = h
        .admin_post("/admin/v1/settlement/close?now=true", String::new())
        .await;
    let batch = h.admin_get("/admin/v1/settlement/batches").await;
    let id = batch[0]["batchId"]
        .as_str()
        .unwrap_or_else(|| panic!("{closed} {batch}"))
        .to_string();
    // The id holds a '/': links carry it percent-encoded as one path segment.
    let id = id.replace('/', "%2F");
    let mut web = Web::new(&h.url);
    web.sign_in("operator", "admin-secret").await;
    let list = web.get("/dashboard/settlement").await.body;
    assert!(
        list.contains(&format!("/dashboard/settlement/batches/{id}")),
        "{list}"
    );
    let page = web
        .get(&format!("/dashboard/settlement/batches/{id}"))
        .await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("settle-1") && page.body.contains("settle-2"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("20.00 SGD"),
        "the net payout: {}",
        page.body
    );
    let csv = web
        .get(&format!("/dashboard/settlement/batches/{id}/detail.csv"))
        .await;
    assert_eq!(csv.status, 200);
    assert!(csv.body.contains("settle-1"), "{}", csv.body);

    add_user(&h, json!({"name": "other", "password": "other password", "role": "MERCHANT", "clientId": OTHER_CLIENT})).await;
    let mut other = Web::new(&h.url);
    other.sign_in("other", "other password").await;
    assert!(!other.get("/dashboard/settlement").await.body.contains(&id));
    assert_eq!(
        other
            .get(&format!("/dashboard/settlement/batches/{id}"))
            .await
            .status,
        404
    );
    assert_eq!(
        other
            .get(&format!("/dashboard/settlement/batches/{id}/summary.csv"))
            .await
            .status,
        404
    );
}
