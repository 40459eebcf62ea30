//! The dashboard's pages and form actions. Every page starts from [`viewer`]; every form
//! checks the session's CSRF token; money moves only through the service's own `refund` and
//! `cancel`, which are idempotent and write the payment's timeline; every action is also in
//! the operator log under the viewer's name.

use super::view::{self, money, time};
use super::{
    ASSETS, Refusal, SESSION_COOKIE, SESSION_LIFE_MS, SIGN_IN_COOKIE, Viewer, ZONE_COOKIE,
    check_csrf, cookie, random_token, redirect, render, same_secret, session_hash, set_cookie,
    viewer,
};
use crate::service::{Acquirer, ApiError, RefundInput};
use crate::store::agents::OperatorLogRow;
use crate::store::dashboard::{self as dstore, Page, PaymentFilter, Role, SessionRow, SortKey};
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use minijinja::context;
use paycode_core::{Currency, Money};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

type Params = Query<HashMap<String, String>>;
const PAGE_ROWS: usize = 50;
const CSV_ROWS_MAX: usize = 100_000;

/// The context every page shares: who is signed in, the CSRF token, the zone, the menu.
fn base(v: &Viewer, title: &str, active: &str) -> Value {
    let mut nav = vec![
        ("overview", "Overview"),
        ("payments", "Payments"),
        ("refunds", "Refunds"),
        ("settlement", "Settlement"),
    ];
    if v.is_operator() {
        nav.extend([
            ("notifications", "Notifications"),
            ("wallets", "Wallets and routes"),
            ("rates", "Rates"),
            ("risk", "Risk"),
            ("audit", "Audit"),
        ]);
    }
    let scope = match &v.session.role {
        Role::Operator => "operator".to_string(),
        Role::Merchant {
            client_id,
            reference_merchant_id: Some(m),
        } => format!("merchant {m} of {client_id}"),
        Role::Merchant {
            client_id,
            reference_merchant_id: None,
        } => format!("every merchant of {client_id}"),
    };
    json!({
        "title": title, "active": active, "user": v.name(), "scope": scope,
        "operator": v.is_operator(), "csrf": v.session.csrf, "zone": v.zone.name(),
        "nav": nav.iter().map(|(k, t)| json!({"key": k, "title": t})).collect::<Vec<_>>(),
        "zones": ["UTC", "Asia/Singapore", "Asia/Tokyo", "Asia/Shanghai", "Asia/Hong_Kong",
                  "Asia/Manila", "Asia/Seoul", "Europe/London", "Europe/Berlin", "America/New_York",
                  "America/Los_Angeles"],
    })
}

/// Merges page data into the shared context.
fn page(v: &Viewer, title: &str, active: &str, data: Value) -> minijinja::Value {
    let mut ctx = base(v, title, active);
    if let (Some(o), Value::Object(d)) = (ctx.as_object_mut(), data) {
        o.extend(d);
    }
    minijinja::Value::from_serialize(&ctx)
}

/// The viewer who sent a form, its CSRF token checked.
async fn signed_form(
    acq: &Acquirer,
    headers: &HeaderMap,
    csrf: Option<&str>,
) -> Result<Viewer, Refusal> {
    let v = viewer(acq, headers).await?;
    check_csrf(&v, csrf)?;
    Ok(v)
}

/// The viewer of an operator's form, its CSRF token checked.
async fn operator_form(
    acq: &Acquirer,
    headers: &HeaderMap,
    csrf: Option<&str>,
) -> Result<Viewer, Refusal> {
    let v = signed_form(acq, headers, csrf).await?;
    operator_only(&v)?;
    Ok(v)
}

fn operator_only(v: &Viewer) -> Result<(), Refusal> {
    if v.is_operator() {
        Ok(())
    } else {
        Err(Refusal::forbidden("This page is for operators."))
    }
}

/// Writes an operator-log line for a dashboard action, and the payment's timeline when the
/// action is about one.
async fn record(
    acq: &Acquirer,
    actor: &str,
    action: &str,
    target: &str,
    detail: String,
    payment_id: Option<&str>,
) -> Result<(), ApiError> {
    let now = acq.clock().now_ms();
    let row = OperatorLogRow {
        at_ms: now,
        actor: actor.to_string(),
        action: action.to_string(),
        target: target.to_string(),
        detail,
    };
    let pid = payment_id.map(str::to_string);
    acq.db()
        .write(move |c| {
            crate::store::agents::log_operator(c, &row)?;
            if let Some(pid) = &pid {
                crate::store::add_event(
                    c,
                    pid,
                    "DASHBOARD",
                    &format!("{} by {}: {}", row.action, row.actor, row.detail),
                    now,
                )?;
            }
            Ok::<_, ApiError>(())
        })
        .await
}

// ------------------------------------------------------------------ sign-in

pub async fn home(State(acq): State<Acquirer>, headers: HeaderMap) -> Response {
    match viewer(&acq, &headers).await {
        Ok(_) => redirect("/dashboard/overview"),
        Err(r) => r.into_response(),
    }
}

fn sign_in_page(acq: &Acquirer, why: Option<&str>, status: StatusCode) -> Response {
    let token = random_token();
    let message = match why {
        Some("expired") => "Your session has expired or was ended. Please sign in again.",
        Some("signed-out") => "Please sign in.",
        Some("bye") => "You are signed out.",
        Some("wrong") => "Wrong name or password.",
        Some("stale") => "The sign-in form was stale. Please try again.",
        _ => "",
    };
    let mut r = render(
        "sign_in.html",
        context! { title => "Sign in", message => message, csrf => token, failed => status != StatusCode::OK },
    );
    *r.status_mut() = status;
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(acq, SIGN_IN_COOKIE, &token, 3_600),
    );
    r
}

pub async fn sign_in_form(State(acq): State<Acquirer>, Query(q): Params) -> Response {
    sign_in_page(&acq, q.get("why").map(String::as_str), StatusCode::OK)
}

#[derive(Deserialize)]
pub struct SignInForm {
    csrf: String,
    name: String,
    password: String,
}

pub async fn sign_in(
    State(acq): State<Acquirer>,
    headers: HeaderMap,
    Form(f): Form<SignInForm>,
) -> Response {
    // Double submit: the form's token must be the one its page set as a cookie.
    if !cookie(&headers, SIGN_IN_COOKIE).is_some_and(|c| same_secret(c, &f.csrf)) {
        return sign_in_page(&acq, Some("stale"), StatusCode::FORBIDDEN);
    }
    let name: String = f.name.trim().chars().take(64).collect();
    let name = name.as_str();
    let role = if name == "operator" {
        acq.config()
            .admin_token
            .as_deref()
            .filter(|t| same_secret(t, &f.password))
            .map(|_| Role::Operator)
    } else {
        match acq.check_dashboard_password(name, &f.password).await {
            Ok(u) => u.map(|u| u.role),
            Err(e) => return Refusal::from(e).into_response(),
        }
    };
    let outcome = if role.is_some() {
        "signed in"
    } else {
        "refused"
    };
    if let Err(e) = record(&acq, name, "dashboard.sign-in", name, outcome.into(), None).await {
        return Refusal::from(e).into_response();
    }
    let Some(role) = role else {
        return sign_in_page(&acq, Some("wrong"), StatusCode::UNAUTHORIZED);
    };
    let secret = random_token();
    let now = acq.clock().now_ms();
    let session = SessionRow {
        session_hash: session_hash(&secret),
        user_name: name.to_string(),
        role,
        csrf: random_token(),
        created_ms: now,
        expires_ms: now + SESSION_LIFE_MS,
    };
    let stored = session.clone();
    if let Err(e) = acq
        .db()
        .write(move |c| {
            dstore::prune_sessions(c, now)?;
            dstore::insert_session(c, &stored).map_err(ApiError::from)
        })
        .await
    {
        return Refusal::from(e).into_response();
    }
    let mut r = redirect("/dashboard/overview");
    let h = r.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(&acq, SESSION_COOKIE, &secret, SESSION_LIFE_MS / 1000),
    );
    h.append(header::SET_COOKIE, set_cookie(&acq, SIGN_IN_COOKIE, "", 0));
    r
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: Option<String>,
}

pub async fn sign_out(
    State(acq): State<Acquirer>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Result<Response, Refusal> {
    let v = signed_form(&acq, &headers, f.csrf.as_deref()).await?;
    let (hash, now) = (v.session.session_hash.clone(), acq.clock().now_ms());
    acq.db()
        .write(move |c| dstore::end_session(c, &hash, now).map_err(ApiError::from))
        .await?;
    record(
        &acq,
        v.name(),
        "dashboard.sign-out",
        v.name(),
        String::new(),
        None,
    )
    .await?;
    let mut r = redirect("/dashboard/sign-in?why=bye");
    r.headers_mut()
        .append(header::SET_COOKIE, set_cookie(&acq, SESSION_COOKIE, "", 0));
    Ok(r)
}

#[derive(Deserialize)]
pub struct ZoneForm {
    csrf: Option<String>,
    zone: String,
    back: Option<String>,
}

pub async fn set_zone(
    State(acq): State<Acquirer>,
    headers: HeaderMap,
    Form(f): Form<ZoneForm>,
) -> Result<Response, Refusal> {
    signed_form(&acq, &headers, f.csrf.as_deref()).await?;
    let zone: chrono_tz::Tz = f
        .zone
        .parse()
        .map_err(|_| Refusal::bad(format!("zone: {:?} is not an IANA time zone", f.zone)))?;
    let back = f
        .back
        .filter(|b| b.starts_with("/dashboard/") && !b.contains("//"))
        .unwrap_or_else(|| "/dashboard/overview".into());
    let mut r = redirect(&back);
    let value = zone.name().replace('/', "%2F");
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&acq, ZONE_COOKIE, &value, 400 * 86_400),
    );
    Ok(r)
}

pub async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, kind, bytes)) => {
            let mut r = bytes.to_vec().into_response();
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            );
            r
        }
        None => Refusal::not_found("No such file.").into_response(),
    }
}

// ------------------------------------------------------------------ overview

const HOUR_MS: i64 = 3_600_000;

/// Today's and the last 7 days' figures and hourly series, in the viewer's scope.
async fn overview_data(acq: &Acquirer, v: &Viewer) -> Result<Value, Refusal> {
    use chrono::TimeZone;
    let now = acq.clock().now_ms();
    let until = (now / HOUR_MS + 1) * HOUR_MS;
    let from = until - 7 * 24 * HOUR_MS;
    let (client, merchant) = v.scope();
    let rows = acq
        .db()
        .read(move |c| {
            dstore::volume(
                c,
                from,
                until,
                HOUR_MS,
                client.as_deref(),
                merchant.as_deref(),
            )
            .map_err(ApiError::from)
        })
        .await?;
    let local_midnight = v
        .zone
        .timestamp_millis_opt(now)
        .single()
        .and_then(|t| t.date_naive().and_hms_opt(0, 0, 0))
        .and_then(|m| v.zone.from_local_datetime(&m).earliest())
        .map(|t| t.timestamp_millis())
        .unwrap_or(now - now % (24 * HOUR_MS));

    #[derive(Default, Clone)]
    struct Tally {
        count: i64,
        paid: i64,
        finished: i64,
        volume: BTreeMap<String, i64>,
    }
    impl Tally {
        fn add(&mut self, status: &str, currency: &str, count: i64, amount: i64) {
            self.count += count;
            if status != "PROCESSING" {
                self.finished += count;
            }
            if status == "SUCCESS" {
                self.paid += count;
                *self.volume.entry(currency.to_string()).or_default() += amount;
            }
        }
        fn json(&self) -> Value {
            json!({
                "count": self.count, "paid": self.paid,
                "rate": rate(self.paid, self.finished),
                "volume": self.volume.iter().map(|(c, a)| money(*a, c)).collect::<Vec<_>>(),
            })
        }
    }
    fn rate(paid: i64, finished: i64) -> Value {
        if finished == 0 {
            Value::Null
        } else {
            json!((paid as f64 * 1000.0 / finished as f64).round() / 10.0)
        }
    }
    let n = 7 * 24;
    let first_bucket = from / HOUR_MS;
    let mut hours = vec![Tally::default(); n];
    let (mut today, mut week) = (Tally::default(), Tally::default());
    let mut by_pair: BTreeMap<(String, String), (Tally, Tally)> = BTreeMap::new();
    let mut currencies: BTreeMap<String, i64> = BTreeMap::new();
    for r in &rows {
        let i = (r.bucket - first_bucket) as usize;
        if let Some(h) = hours.get_mut(i) {
            h.add(&r.status, &r.currency, r.count, r.amount_minor);
        }
        week.add(&r.status, &r.currency, r.count, r.amount_minor);
        let pair = by_pair
            .entry((r.wallet.clone(), r.currency.clone()))
            .or_default();
        pair.1.add(&r.status, &r.currency, r.count, r.amount_minor);
        *currencies.entry(r.currency.clone()).or_default() += r.count;
        if r.bucket * HOUR_MS >= local_midnight - local_midnight.rem_euclid(HOUR_MS) {
            today.add(&r.status, &r.currency, r.count, r.amount_minor);
            pair.0.add(&r.status, &r.currency, r.count, r.amount_minor);
        }
    }
    // Volume is charted in major units of each currency, so the axis reads as money.
    let volume: BTreeMap<&String, Vec<f64>> = currencies
        .keys()
        .map(|c| {
            let per = Currency::parse(c).map(|c| c.minor_per_major()).unwrap_or(1) as f64;
            (
                c,
                hours
                    .iter()
                    .map(|h| *h.volume.get(c).unwrap_or(&0) as f64 / per)
                    .collect(),
            )
        })
        .collect();
    Ok(json!({
        "generated": time(now, v.zone), "zone": v.zone.name(),
        "today": today.json(), "week": week.json(),
        "byWalletCurrency": by_pair.iter().map(|((w, c), (t, wk))| json!({
            "wallet": w, "currency": c, "today": t.json(), "week": wk.json(),
        })).collect::<Vec<_>>(),
        "series": {
            "t": (0..n).map(|i| (first_bucket + i as i64) * 3_600).collect::<Vec<_>>(),
            "count": hours.iter().map(|h| h.count).collect::<Vec<_>>(),
            "paid": hours.iter().map(|h| h.paid).collect::<Vec<_>>(),
            "rate": hours.iter().map(|h| rate(h.paid, h.finished)).collect::<Vec<_>>(),
            "volume": volume,
        },
    }))
}

pub async fn overview(
    State(acq): State<Acquirer>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let v = viewer(&acq, &headers).await?;
    let data = overview_data(&acq, &v).await?;
    Ok::<_, Refusal>(render(
        "overview.html",
        page(&v, "Overview", "overview", json!({"o": data})),
    ))
}

pub async fn overview_json(State(acq): State<Acquirer>, headers: HeaderMap) -> Response {
    let result = async {
        let v = viewer(&acq, &headers).await?;
        Ok::<_, Refusal>(axum::Json(overview_data(&acq, &v).await?).into_response())
    }
    .await;
    result.unwrap_or_else(|r| match r {
        Refusal::SignIn(_) => (StatusCode::UNAUTHORIZED, "signed out").into_response(),
        other => other.into_response(),
    })
}

// ------------------------------------------------------------------ payments

/// The search form as given, and the filter and page it means (or the field that is wrong).
struct Search {
    filter: PaymentFilter,
    page: Page,
    /// The form's values, to redraw it and to build links.
    form: BTreeMap<String, String>,
}

const SEARCH_FIELDS: [&str; 15] = [
    "paymentId",
    "requestId",
    "last4",
    "client",
    "merchant",
    "store",
    "terminal",
    "wallet",
    "currency",
    "status",
    "min",
    "max",
    "from",
    "until",
    "sort",
];

fn parse_search(v: &Viewer, q: &HashMap<String, String>) -> Result<Search, Refusal> {
    let mut form = BTreeMap::new();
    for k in SEARCH_FIELDS.iter().chain(&["dir"]) {
        if let Some(val) = q.get(*k).map(|s| s.trim()).filter(|s| !s.is_empty()) {
            form.insert(k.to_string(), val.to_string());
        }
    }
    let get = |k: &str| form.get(k).cloned();
    let mut f = PaymentFilter {
        payment_id: get("paymentId"),
        payment_request_id: get("requestId"),
        client_id: get("client"),
        reference_merchant_id: get("merchant"),
        reference_store_id: get("store"),
        terminal_id: get("terminal"),
        wallet: get("wallet"),
        ..PaymentFilter::default()
    };
    if let Some(d) = get("last4") {
        if d.len() != 4 || !d.chars().all(|c| c.is_ascii_digit()) {
            return Err(Refusal::bad(format!(
                "last4: {d:?} is not the last 4 digits of a code"
            )));
        }
        f.code_last4 = Some(d);
    }
    let currency = match get("currency") {
        Some(c) => Some(
            Currency::parse(&c.to_ascii_uppercase())
                .map_err(|e| Refusal::bad(format!("currency: {e}")))?,
        ),
        None => None,
    };
    f.currency = currency.map(|c| c.code().to_string());
    if let Some(s) = get("status") {
        let s = s.to_ascii_uppercase();
        if !["PROCESSING", "SUCCESS", "FAIL", "CANCELLED"].contains(&s.as_str()) {
            return Err(Refusal::bad(format!(
                "status: {s:?} is not PROCESSING, SUCCESS, FAIL or CANCELLED"
            )));
        }
        f.status = Some(s);
    }
    for (field, slot) in [
        ("min", &mut f.min_amount_minor),
        ("max", &mut f.max_amount_minor),
    ] {
        if let Some(a) = get(field) {
            let Some(c) = currency else {
                return Err(Refusal::bad(format!(
                    "{field}: choose a currency to filter by amount"
                )));
            };
            let m = Money::from_decimal_str(&a, c)
                .map_err(|e| Refusal::bad(format!("{field}: {e}")))?;
            *slot = Some(m.amount_minor());
        }
    }
    for (field, slot) in [("from", &mut f.from_ms), ("until", &mut f.until_ms)] {
        if let Some(t) = get(field) {
            *slot = Some(parse_local_time(&t, v.zone).ok_or_else(|| {
                Refusal::bad(format!(
                    "{field}: {t:?} is not a date (2026-12-01) or a time (2026-12-01T14:30)"
                ))
            })?);
        }
    }
    // A merchant user's scope overrides whatever the form says.
    let (client, merchant) = v.scope();
    if client.is_some() {
        f.client_id = client;
        if merchant.is_some() {
            f.reference_merchant_id = merchant;
        }
    }
    let sort = match get("sort").as_deref() {
        None | Some("created") => SortKey::Created,
        Some("amount") => SortKey::Amount,
        Some(other) => {
            return Err(Refusal::bad(format!(
                "sort: {other:?} is not created or amount"
            )));
        }
    };
    let ascending = match get("dir").as_deref() {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(other) => return Err(Refusal::bad(format!("dir: {other:?} is not asc or desc"))),
    };
    let after = match q.get("after").filter(|s| !s.is_empty()) {
        None => None,
        Some(a) => Some(
            a.split_once('.')
                .and_then(|(k, id)| Some((k.parse::<i64>().ok()?, id.to_string())))
                .ok_or_else(|| Refusal::bad("after: not a page position"))?,
        ),
    };
    Ok(Search {
        filter: f,
        page: Page {
            sort,
            ascending,
            after,
            limit: PAGE_ROWS + 1,
        },
        form,
    })
}

/// `2026-12-01` (midnight) or `2026-12-01T14:30` in `zone`.
fn parse_local_time(text: &str, zone: chrono_tz::Tz) -> Option<i64> {
    use chrono::{NaiveDate, NaiveDateTime, TimeZone};
    let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M")
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()?
                .and_hms_opt(0, 0, 0)
        })?;
    Some(
        zone.from_local_datetime(&naive)
            .earliest()?
            .timestamp_millis(),
    )
}

fn query_string(form: &BTreeMap<String, String>, extra: &[(&str, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form {
        if !extra.iter().any(|(e, _)| e == k) {
            s.append_pair(k, v);
        }
    }
    for (k, v) in extra {
        s.append_pair(k, v);
    }
    s.finish()
}

fn sort_key(p: &crate::store::PaymentRow, sort: SortKey) -> i64 {
    match sort {
        SortKey::Created => p.created_ms,
        SortKey::Amount => p.amount_minor,
    }
}

pub async fn payments(
    State(acq): State<Acquirer>,
    headers: HeaderMap,
    Query(q): Params,
) -> Result<Response, Refusal> {
    let v = viewer(&acq, &headers).await?;
    let s = parse_search(&v, &q)?;
    let (f, pg) = (s.filter.clone(), s.page.clone());
    let mut rows = acq
        .db()
        .read(move |c| dstore::search_payments(c, &f, &pg).map_err(ApiError::from))
        .await?;
    let more = rows.len() > PAGE_ROWS;
    rows.truncate(PAGE_ROWS);
    let next = if more {
        rows.last().map(|p| {
            let after = format!("{}.{}", sort_key(p, s.page.sort), p.payment_id);
            format!(
                "/dashboard/payments?{}",
                query_string(&s.form, &[("after", after)])
            )
        })
    } else {
        None
    };
    let sort_link = |key: &str| {
        let same = s.form.get("sort").map(String::as_str).unwrap_or("created") == key;
        let dir = if same && !s.page.ascending {
            "asc"
        } else {
            "desc"
        };
        format!(
            "/dashboard/payments?{}",
            query_string(&s.form, &[("sort", key.into()), ("dir", dir.into())])
        )
    };
    let wallets: Vec<String> = {
        let mut w: Vec<String> = acq.snapshot().wallets.keys().cloned().collect();
        w.sort();
        w
    };
    Ok::<_, Refusal>(render(
        "payments.html",
        page(
            &v,
            "Payments",
            "payments",
            json!({
                "rows": rows.iter().map(|p| view::payment(p, v.zone)).collect::<Vec<_>>(),
                "form": s.form, "next": next, "paged": s.page.after.is_some(),
                "first": format!("/dashboard/payments?{}", query_string(&s.form, &[])),
                "csv": format!("/dashboard/payments.csv?{}", query_string(&s.form, &[])),
                "sortCreated": sort_link("created"), "sortAmount": sort_link("amount"),
                "wallets": wallets,
            }),
        ),
    ))
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub async fn payments_csv(
    State(acq): State<Acquirer>,
    headers: HeaderMap,
    Query(q): Params,
) -> Result<Response, Refusal> {
    let v = viewer(&acq, &headers).await?;
    let s = parse_search(&v, &q)?;
    let mut out = String::from(
        "paymentId,paymentRequestId,created,clientId,referenceMerchantId,referenceStoreId,terminalId,\
             wallet,code,amount,currency,payToAmount,payToCurrency,settleAmount,settleCurrency,status,resultCode\n",
    );
    let mut page = Page {
        limit: 1_000,
        ..s.page.clone()
    };
    let mut written = 0;
    loop {
        let (f, pg) = (s.filter.clone(), page.clone());
        let rows = acq
            .db()
            .read(move |c| dstore::search_payments(c, &f, &pg).map_err(ApiError::from))
            .await?;
        for p in &rows {
            let dec = |m: i64, c: &str| {
                Currency::parse(c)
                    .map(|c| Money::new(m, c).to_decimal_string())
                    .unwrap_or_else(|_| m.to_string())
            };
            let cells = [
                p.payment_id.clone(),
                p.payment_request_id.clone(),
                crate::wire::iso(p.created_ms),
                p.client_id.clone(),
                p.reference_merchant_id.clone(),
                p.reference_store_id.clone().unwrap_or_default(),
                p.terminal_id.clone().unwrap_or_default(),
                p.wallet.clone(),
                p.code_masked.clone(),
                dec(p.amount_minor, &p.currency),
                p.currency.clone(),
                dec(p.pay_to_minor, &p.pay_to_currency),
                p.pay_to_currency.clone(),
                dec(p.settle_minor, &p.settle_currency),
                p.settle_currency.clone(),
                p.state.status_str().to_string(),
                p.result_code.as_str().to_string(),
            ];
            out.push_str(
                &cells
                    .iter()
                    .map(|c| csv_field(c))
                    .collect::<Vec<_>>()
                    .join(","),
            );
            out.push('\n');
        }
        written += rows.len();
        match rows.last() {
            Some(p) if rows.len() == page.limit && written < CSV_ROWS_MAX => {
                page.after = Some((sort_key(p, page.sort), p.payment_id.clone()));
            }
            _ => break,
        }
    }
    let mut r = out.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    r.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"payments.csv\""),
    );
    Ok::<_, Refusal>(r)
}

// ------------------------------------------------------------------ one payment

/// The payment `id` if the viewer may see it; "no such payment" otherwise, either way.
async fn visible_payment(
    acq: &Acquirer,
    v: &Viewer,
    id: &str,
) -> Result<crate::store::PaymentRow, Refusal> {
    let pid = id.to_string();
    let p = acq
        .db()
        .read(move |c| crate::store::payment_by_id(c, &pid).map_err(ApiError::from))
        .await?;
    match p {
        Some(p) if v.may_see(&p.client_id, &p.reference_merchant_id) => Ok(p),
        _ => Err(Refusal::not_found("No such payment.")),
    }
}

pub async fn payment(
    State(acq): State<Acquirer>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Response, Refusal> {
    let v = viewer(&acq, &headers).await?;
    let p = visible_payment(&acq, &v, &id).await?;
    let pid = p.payment_id.clone();
    let (events, postings, refunds, notes, risk) = acq
        .db()
        .read(move |c| {
            use crate::store::*;
            Ok::<_, ApiError>((
                events_of_payment(c, &pid)?,
                postings_of_payment(c, &pid)?,
                refunds_of_payment(c, &pid)?,
                notifications_of_payment(c, &pid)?,
                risk::decision(c, &pid)?,
            ))
        })
        .await?;
    let z = v.zone;
    // Every state change, wallet call, risk decision, notification attempt (with its HTTP
    // status), refund, cancel and dashboard action is an event of the payment, in order.
    let timeline: Vec<Value> = events
        .iter()
        .map(|e| json!({"time": time(e.at_ms, z), "kind": e.kind, "detail": e.detail}))
        .collect();
    let refundable = matches!(p.state, paycode_core::payment::PaymentState::Success);
    let cancellable = matches!(
        p.state,
        paycode_core::payment::PaymentState::Success
            | paycode_core::payment::PaymentState::Processing
    );
    Ok::<_, Refusal>(render(
        "payment.html",
        page(
            &v,
            &format!("Payment {}", p.payment_id),
            "payments",
            json!({
                "p": view::payment(&p, z),
                "paymentQuote": view::quote(p.payment_quote.as_deref()),
                "settlementQuote": view::quote(p.settlement_quote.as_deref()),
                "timeline": timeline,
                "postings": postings.iter().map(|x| json!({"entry": x.entry_id, "kind": x.kind,
                    "account": x.account, "side": x.side, "amount": money(x.amount_minor, &x.currency)})).collect::<Vec<_>>(),
                "refunds": refunds.iter().map(|r| view::refund(r, z)).collect::<Vec<_>>(),
                "notifications": notes.iter().map(|n| notification(n, z)).collect::<Vec<_>>(),
                "risk": risk.map(|d| json!({"version": d.rules_version, "verdict": d.verdict,
                    "hits": serde_json::from_str::<Value>(&d.hits).unwrap_or_default(),
                    "shadow": serde_json::from_str::<Value>(&d.shadow).unwrap_or_default()})),
                "refundable": refundable, "cancellable": cancellable,
                "refundRequestId": format!("dash-{}", &random_token()[..20]),
                "message": q.get("message"), "problem": q.get("problem"),
            }),
        ),
    ))
}

fn notification(n: &crate::store::OutboxRow, z: chrono_tz::Tz) -> Value {
    json!({
        "id": n.outbox_id, "kind": n.kind.as_str(), "paymentId": n.payment_id,
        "refundId": n.refund_id, "url": n.url, "status": n.status.as_str(),
        "attempts": n.n_attempts, "next": time(n.next_attempt_ms, z), "lastError": n.last_error,
        "delivered": n.delivered_ms.map(|t| time(t, z)),
    })
}

fn back_to_payment(id: &str, key: &str, text: &str) -> Response {
    let q = form_urlencoded::Serializer::new(String::new())
        .append_pair(key, text)
        .finish();
    redirect(&format!("/dashboard/payments/{id}?{q}"))
}

#[derive(Deserialize)]
pub struct RefundForm {
    csrf: Option<String>,
    amount: String,
    #[serde(default)]
    reason: String,
    request_id: String,
}

pub async fn refund(
    State(acq): State<Acquirer>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<RefundForm>,
) -> Result<Response, Refusal> {
    let v = signed_form(&acq, &headers, f.csrf.as_deref()).await?;
    let p = visible_payment(&acq, &v, &id).await?;
    let currency = Currency::parse(&p.currency).map_err(|e| Refusal::bad(e.to_string()))?;
    let amount = match Money::from_decimal_str(f.amount.trim(), currency) {
        Ok(m) if m.is_positive() => m,
        Ok(_) => {
            return Ok(back_to_payment(
                &id,
                "problem",
                "amount: must be more than zero",
            ));
        }
        Err(e) => return Ok(back_to_payment(&id, "problem", &format!("amount: {e}"))),
    };
    let input = RefundInput {
        client_id: p.client_id.clone(),
        refund_request_id: f.request_id.clone(),
        payment_id: p.payment_id.clone(),
        amount,
        reason: Some(f.reason.trim().to_string()).filter(|r| !r.is_empty()),
        notify_url: None,
    };
    let outcome = acq.refund(input).await;
    let detail = match &outcome {
        Ok(r) => format!(
            "refund {} of {}: {}",
            r.refund_id,
            money(r.amount_minor, &r.currency),
            r.state.status_str()
        ),
        Err(e) => format!(
            "refund of {} refused: {} {}",
            money(amount.amount_minor(), currency.code()),
            e.code.as_str(),
            e.message
        ),
    };
    record(
        &acq,
        v.name(),
        "dashboard.refund",
        &p.payment_id,
        detail.clone(),
        Some(&p.payment_id),
    )
    .await?;
    Ok::<_, Refusal>(match outcome {
        Ok(_) => back_to_payment(&id, "message", &detail),
        Err(_) => back_to_payment(&id, "problem", &detail),
    })
}

pub async fn cancel(
    State(acq): State<Acquirer>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, Refusal> {
    let v = signed_form(&acq, &headers, f.csrf.as_deref()).await?;
    let p = visible_payment(&acq, &v, &id).await?;
    let outcome = acq.cancel(p.clone()).await;
    let detail = match &outcome {
        Ok(_) => "cancelled".to_string(),
        Err(e) => format!("cancel refused: {} {}", e.code.as_str(), e.message),
    };
    record(
        &acq,
        v.name(),
        "dashboard.cancel",
        &p.payment_id,
        detail.clone(),
        Some(&p.payment_id),
    )
    .await?;
    Ok::<_, Refusal>(match outcome {
        Ok(_) => back_to_payment(&id, "message", "The payment is cancelled."),
        Err(_) => back_to_payment(&id, "problem", &detail),
    })
}

// ------------------------------------------------------------------ lists

pub async fn refunds(State(acq): State<Acquirer>, headers: HeaderMap) -> Result<Response, Refusal> {
    let v = viewer(&acq, &headers).await?;
    let (client, merchant) = v.scope();
    let rows = acq
        .db()
        .read(move |c| {
            dstore::recent_refunds(c, 100, client.as_deref(), merchant.as_deref())
                .map_err(ApiError::from)
        })
        .await?;
    Ok::<_, Refusal>(render(
        "refunds.html",
        page(
            &v,
            "Refunds",
            "refunds",
            json!({
                "rows": rows.iter().map(|(r, m)| {
                    let mut j = view::refund(r, v.zone);
                    j["merchant"] = json!(m);
                    j
                }).collect::<Vec<_>>(),
            }),
        ),
    ))
}

pub async fn notifications(
    State(acq): State<Acquirer>,
    headers: HeaderMap,
    Query(q): Params,
) -> Result<Response, Refusal> {
    let v = viewer(&acq, &headers).await?;
    operator_only(&v)?;
    let status = match q
        .get("status")
        .map(String::as_str)
        .filter(|s| !s.is_empty())
    {
        None => None,
        Some(s) => Some(crate::store::NotificationStatus::parse(s).ok_or_else(|| {
            Refusal::bad(format!("status: {s:?} is not PENDING, DELIVERED or PARKED"))
        })?),
    };
    let rows = acq
        .db()
        .read(move |c| crate::store::notifications(c, status, 200).map_err(ApiError::from))
        .await?;
    Ok::<_, Refusal>(render(
        "notifications.html",
        page(
            &v,
            "Notifications",
            "notifications",
            json!({
                "rows": rows.iter().map(|n| notification(n, v.zone)).collect::<Vec<_>>(),
                "status": status.map(|s| s.as_str()), "message": q.get("message"),
            }),
        ),
    ))
}

pub async fn resend(
    State(acq): State<Acquirer>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, Refusal> {
    let v = operator_form(&acq, &headers, f.csrf.as_deref()).await?;
    let now = acq.clock().now_ms();
    let row = acq
        .db()
        .write(move |c| {
            let done = crate::store::resend_notification(c, id, now)?;
            Ok::<_, ApiError>(if done {
                crate::store::outbox_by_id(c, id)?
            } else {
                None
            })
        })
        .await?
        .ok_or_else(|| Refusal::not_found("No such notification."))?;
    record(
        &acq,
        v.name(),
        "dashboard.resend",
        &id.to_string(),
        format!("notification {id} queued again"),
        Some(&row.payment_id),
    )
    .await?;
    // Deliver now rather than at the next tick, so the attempt shows at once.
    if let Err(e) = acq.notify_pass().await {
        tracing::warn!(error = %e.message, "resend: delivery pass failed");
    }
    Ok::<_, Refusal>(redirect(&format!(
        "/dashboard/notifications?message=Notification+{id}+was+sent+again"
    )))
}

pub async fn settlement(
    State(acq): State<Acquirer>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let v = viewer(&acq, &headers).await?;
    let (client, merchant) = v.scope();
    let filter = match (&client, &merchant) {
        (Some(c), Some(m)) => Some(format!("{c}/{m}")),
        _ => None,
    };
    let mut batches = acq.settlement_batches(filter, 1_000).await?;
    if let Some(c) = &client {
        let prefix = format!("{c}/");
        batches.retain(|b| b.merchant.starts_with(&prefix));
    }
    batches.truncate(200);
    let clearings = if v.is_operator() {
        acq.clearings(None, 200).await?
    } else {
        Vec::new()
    };
    Ok::<_, Refusal>(render(
        "settlement.html",
        page(
            &v,
            "Settlement",
            "settlement",
            json!({
                "batches": batches.iter().map(|b| json!({
                    "id": b.batch_id, "merchant": b.merchant, "currency": b.currency,
                    "date": b.settlement_date, "seq": b.seq, "items": b.item_count,
                    "gross": money(b.gross_minor, &b.currency), "fee": money(b.fee_minor, &b.currency),
                    "net": money(b.net_minor, &b.currency), "closed": time(b.closed_ms, v.zone),
                })).collect::<Vec<_>>(),
                "clearings": clearings.iter().map(|c| json!({
                    "id": c.clearing_id, "wallet": c.wallet, "currency": c.currency,
                    "date": c.clearing_date, "seq": c.seq, "items": c.item_count,
                    "net": money(c.net_minor, &c.currency), "closed": time(c.closed_ms, v.zone),
                })).collect::<Vec<_>>(),
            }),
        ),
    ))
}

/// The batch `id` if the viewer may see its merchant; "no such batch" otherwise, either way.
async fn visible_batch(
    acq: &Acquirer,
    v: &Viewer,
    id: &str,
) -> Result<crate::settlement::BatchInfo, Refusal> {
    acq.settlement_batch(id)
        .await?
        .filter(|b| {
            b.merchant
                .split_once('/')
                .is_some_and(|(c, m)| v.may_see(c, m))
        })
        .ok_or_else(|| Refusal::not_found("No such settlement batch."))
}

pub async fn batch(
    State(acq): State<Acquirer>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Refusal> {
    let v = viewer(&acq, &headers).await?;
    let batch = visible_batch(&acq, &v, &id).await?;
    let bid = batch.batch_id.clone();
    let items = acq
        .db()
        .read(move |c| crate::store::settlement::items_of_batch(c, &bid).map_err(ApiError::from))
        .await?;
    let z = v.zone;
    Ok(render(
        "batch.html",
        page(
            &v,
            &format!("Settlement batch {}", batch.batch_id),
            "settlement",
            json!({
                "b": {"id": batch.batch_id, "merchant": batch.merchant, "date": batch.settlement_date,
                      "items": batch.item_count, "gross": money(batch.gross_minor, &batch.currency),
                      "fee": money(batch.fee_minor, &batch.currency),
                      "net": money(batch.net_minor, &batch.currency), "closed": time(batch.closed_ms, z)},
                "rows": items.iter().map(|i| json!({
                    "kind": i.kind, "transaction": i.transaction_id, "paymentId": i.payment_id,
                    "requestId": i.transaction_request_id, "store": i.reference_store_id,
                    "wallet": i.wallet, "amount": money(i.amount_minor, &i.currency),
                    "walletAmount": money(i.wallet_amount_minor, &i.wallet_currency),
                    "settle": money(i.settle_minor, &i.settle_currency),
                    "fee": money(i.fee_minor, &i.settle_currency), "time": time(i.event_ms, z),
                })).collect::<Vec<_>>(),
            }),
        ),
    ))
}

pub async fn batch_file(
    State(acq): State<Acquirer>,
    headers: HeaderMap,
    Path((id, file)): Path<(String, String)>,
) -> Result<Response, Refusal> {
    let v = viewer(&acq, &headers).await?;
    let detail = match file.as_str() {
        "summary.csv" => false,
        "detail.csv" => true,
        _ => return Err(Refusal::not_found("No such report.")),
    };
    let batch = visible_batch(&acq, &v, &id).await?;
    let (summary, detail_text) = acq
        .batch_reports(&batch.batch_id)
        .await?
        .ok_or_else(|| Refusal::not_found("No such settlement batch."))?;
    let stem = crate::settlement::file_stem(&batch.batch_id);
    Ok::<_, Refusal>(if detail {
        crate::admin_money::csv(&format!("{stem}-detail.csv"), detail_text)
    } else {
        crate::admin_money::csv(&format!("{stem}-summary.csv"), summary)
    })
}

pub async fn clearing_file(
    State(acq): State<Acquirer>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Refusal> {
    let v = viewer(&acq, &headers).await?;
    operator_only(&v)?;
    let text = acq
        .clearing_report(&id)
        .await?
        .ok_or_else(|| Refusal::not_found("No such clearing."))?;
    Ok::<_, Refusal>(crate::admin_money::csv(
        &format!("{}.csv", crate::settlement::file_stem(&id)),
        text,
    ))
}

pub async fn wallets(
    State(acq): State<Acquirer>,
    headers: HeaderMap,
    Query(q): Params,
) -> Result<Response, Refusal> {
    let v = viewer(&acq, &headers).await?;
    operator_only(&v)?;
    let snap = acq.snapshot();
    let mut wallets: Vec<_> = snap.wallets.values().collect();
    wallets.sort_by(|a, b| a.name.cmp(&b.name));
    let lookup = q
        .get("code")
        .map(|c| c.trim())
        .filter(|c| !c.is_empty())
        .map(|c| match paycode_core::code::PaymentCode::parse(c) {
            Ok(code) => match snap.route(&code) {
                Some(w) => json!({"code": code.masked(), "wallet": w.name, "enabled": w.enabled}),
                None => json!({"code": code.masked(), "problem": "no route matches this code"}),
            },
            Err(e) => json!({"problem": format!("code: {e}")}),
        });
    Ok::<_, Refusal>(render(
        "wallets.html",
        page(
            &v,
            "Wallets and routes",
            "wallets",
            json!({
                "wallets": wallets.iter().map(|w| json!({
                    "name": w.name, "psp": w.psp_name, "url": w.base_url, "currencies": w.currencies.join(", "),
                    "enabled": w.enabled, "countries": w.countries.join(", "),
                    "transactionCurrencies": w.transaction_currencies.join(", "),
                })).collect::<Vec<_>>(),
                "routes": snap.routes.iter().map(|r| json!({
                    "id": r.route_id, "pattern": match &r.pattern {
                        crate::registry::RoutePattern::Cii(c) => format!("CII {c}"),
                        crate::registry::RoutePattern::Regex(re) => format!("REGEX {}", re.as_str()),
                    }, "wallet": r.wallet, "priority": r.priority,
                })).collect::<Vec<_>>(),
                "lookup": lookup,
            }),
        ),
    ))
}

pub async fn rates(State(acq): State<Acquirer>, headers: HeaderMap) -> Result<Response, Refusal> {
    let v = viewer(&acq, &headers).await?;
    operator_only(&v)?;
    use paycode_core::fx::QuoteSide;
    let table = acq.rates();
    let rows: Vec<Value> = table
        .mids()
        .map(|(b, q, mid)| {
            let s = table.spread(b, q);
            let price = |side| {
                table
                    .price(b, q, side)
                    .map(|r| r.to_string())
                    .unwrap_or_default()
            };
            json!({"pair": format!("{}/{}", b.code(), q.code()), "mid": mid.to_string(),
                       "askBps": s.ask_bps(), "bidBps": s.bid_bps(),
                       "ask": price(QuoteSide::Ask), "bid": price(QuoteSide::Bid)})
        })
        .collect();
    Ok::<_, Refusal>(render(
        "rates.html",
        page(
            &v,
            "Rates",
            "rates",
            json!({"rows": rows, "file": table.to_rate_file()}),
        ),
    ))
}

pub async fn risk(State(acq): State<Acquirer>, headers: HeaderMap) -> Result<Response, Refusal> {
    let v = viewer(&acq, &headers).await?;
    operator_only(&v)?;
    let (rules, version) = acq.risk_rules_json().await?;
    let rows = acq
        .db()
        .read(|c| crate::store::risk::recent_decisions(c, 200).map_err(ApiError::from))
        .await?;
    let summary = crate::admin_risk::decisions_summary(&rows);
    let pretty = serde_json::from_str::<Value>(&rules)
        .and_then(|r| serde_json::to_string_pretty(&r))
        .unwrap_or(rules);
    Ok::<_, Refusal>(render(
        "risk.html",
        page(
            &v,
            "Risk",
            "risk",
            json!({
                "rules": pretty, "version": version,
                "decisions": rows.iter().map(|d| json!({
                    "paymentId": d.payment_id, "time": time(d.created_ms, v.zone),
                    "version": d.rules_version, "verdict": d.verdict,
                    "hits": serde_json::from_str::<Value>(&d.hits).unwrap_or_default(),
                    "shadow": serde_json::from_str::<Value>(&d.shadow).unwrap_or_default(),
                })).collect::<Vec<_>>(),
                "perRule": summary["hitsPerRule"],
            }),
        ),
    ))
}

pub async fn audit(State(acq): State<Acquirer>, headers: HeaderMap) -> Result<Response, Refusal> {
    let v = viewer(&acq, &headers).await?;
    operator_only(&v)?;
    let last = acq
        .db()
        .read(|c| dstore::last_logged(c, "dashboard.audit").map_err(ApiError::from))
        .await?;
    Ok::<_, Refusal>(render(
        "audit.html",
        page(
            &v,
            "Audit",
            "audit",
            json!({
                "last": last.map(|l| json!({"time": time(l.at_ms, v.zone), "by": l.actor,
                    "report": serde_json::from_str::<Value>(&l.detail).unwrap_or_default()})),
            }),
        ),
    ))
}

pub async fn run_audit(
    State(acq): State<Acquirer>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Result<Response, Refusal> {
    let v = operator_form(&acq, &headers, f.csrf.as_deref()).await?;
    let report = acq.audit_report().await?;
    let detail = serde_json::to_string(&report).unwrap_or_default();
    record(&acq, v.name(), "dashboard.audit", "ledger", detail, None).await?;
    Ok::<_, Refusal>(redirect("/dashboard/audit"))
}
