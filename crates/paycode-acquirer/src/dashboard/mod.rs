//! The web dashboard (SPEC §13) at `/dashboard`: server-rendered pages for operators and
//! merchant users, on the same service code as the APIs.
//!
//! - Sign-in: an operator with the admin token or an operator user; a merchant user with the
//!   name and password the operator created ([`users`]). A session is a random 32-byte secret
//!   in an `HttpOnly`, `SameSite=Strict` cookie; only its SHA-256 is stored, with the role, an
//!   expiry and the CSRF token every form must send back. Sessions live in the store, so every
//!   acquirer process accepts them and signing out ends them everywhere.
//! - Scope: a merchant user's role names its client and, unless it is an ISV or SI user, its
//!   merchant; every query is filtered by it, and a payment outside it is "no such payment".
//! - Assets (styles, the script, uPlot) are embedded in the binary: the pages work offline.
//!
//! Handlers are in [`pages`]; the templates in `templates/`, rendered with minijinja.

pub mod pages;
pub mod users;
mod view;

use crate::service::{Acquirer, ApiError};
use crate::store::dashboard::{Role, SessionRow};
use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::sync::OnceLock;

/// How long a sign-in lasts.
pub const SESSION_LIFE_MS: i64 = 8 * 3_600_000;
const SESSION_COOKIE: &str = "paycode_session";
/// Before sign-in: the double-submit token of the sign-in form.
const SIGN_IN_COOKIE: &str = "paycode_signin";
/// The viewer's time zone (IANA name).
const ZONE_COOKIE: &str = "paycode_zone";

/// The dashboard's routes, to be merged into the acquirer's router.
pub fn routes() -> Router<Acquirer> {
    Router::new()
        .route("/dashboard", get(pages::home))
        .route("/dashboard/", get(pages::home))
        .route(
            "/dashboard/sign-in",
            get(pages::sign_in_form).post(pages::sign_in),
        )
        .route("/dashboard/sign-out", post(pages::sign_out))
        .route("/dashboard/zone", post(pages::set_zone))
        .route("/dashboard/assets/{name}", get(pages::asset))
        .route("/dashboard/overview", get(pages::overview))
        .route("/dashboard/overview.json", get(pages::overview_json))
        .route("/dashboard/payments", get(pages::payments))
        .route("/dashboard/payments.csv", get(pages::payments_csv))
        .route("/dashboard/payments/{id}", get(pages::payment))
        .route("/dashboard/payments/{id}/refund", post(pages::refund))
        .route("/dashboard/payments/{id}/cancel", post(pages::cancel))
        .route("/dashboard/refunds", get(pages::refunds))
        .route("/dashboard/notifications", get(pages::notifications))
        .route("/dashboard/notifications/{id}/resend", post(pages::resend))
        .route("/dashboard/settlement", get(pages::settlement))
        .route("/dashboard/settlement/batches/{id}", get(pages::batch))
        .route(
            "/dashboard/settlement/batches/{id}/{file}",
            get(pages::batch_file),
        )
        .route(
            "/dashboard/settlement/clearing/{id}",
            get(pages::clearing_file),
        )
        .route("/dashboard/wallets", get(pages::wallets))
        .route("/dashboard/rates", get(pages::rates))
        .route("/dashboard/risk", get(pages::risk))
        .route("/dashboard/audit", get(pages::audit).post(pages::run_audit))
}

/// A signed-in viewer.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub session: SessionRow,
    pub zone: chrono_tz::Tz,
}

impl Viewer {
    pub fn is_operator(&self) -> bool {
        self.session.role == Role::Operator
    }

    /// Whether this viewer may see a payment of that client's merchant.
    pub fn may_see(&self, client_id: &str, reference_merchant_id: &str) -> bool {
        match &self.session.role {
            Role::Operator => true,
            Role::Merchant {
                client_id: c,
                reference_merchant_id: m,
            } => c == client_id && m.as_deref().is_none_or(|m| m == reference_merchant_id),
        }
    }

    /// The (client, merchant) a merchant viewer is limited to; `(None, None)` for operators.
    pub fn scope(&self) -> (Option<String>, Option<String>) {
        match &self.session.role {
            Role::Operator => (None, None),
            Role::Merchant {
                client_id,
                reference_merchant_id,
            } => (Some(client_id.clone()), reference_merchant_id.clone()),
        }
    }

    pub fn name(&self) -> &str {
        &self.session.user_name
    }
}

/// The value of cookie `name` in the request.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

pub(crate) fn session_hash(secret: &str) -> String {
    crate::service::sha256_hex(&["dashboard-session", secret])
}

/// A fresh random token (URL-safe base64 of 32 bytes).
pub(crate) fn random_token() -> String {
    use base64::Engine;
    let mut b = [0u8; 32];
    aws_lc_rs::rand::fill(&mut b).expect("the system random source is available");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Whether two secrets are equal, in constant time.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

/// What stops a page: not signed in (to the sign-in page), or a page saying what is wrong.
#[derive(Debug)]
pub enum Refusal {
    SignIn(&'static str),
    Page(StatusCode, String),
}

impl Refusal {
    pub fn not_found(what: &str) -> Refusal {
        Refusal::Page(StatusCode::NOT_FOUND, what.to_string())
    }
    pub fn forbidden(what: &str) -> Refusal {
        Refusal::Page(StatusCode::FORBIDDEN, what.to_string())
    }
    pub fn bad(what: impl Into<String>) -> Refusal {
        Refusal::Page(StatusCode::BAD_REQUEST, what.into())
    }
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Refusal {
        Refusal::Page(
            crate::api::operator_status(e.code),
            format!("{}: {}", e.code.as_str(), e.message),
        )
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::SignIn(why) => redirect(&format!("/dashboard/sign-in?why={why}")),
            Refusal::Page(status, message) => {
                let html = render(
                    "error.html",
                    minijinja::context! { title => status.canonical_reason().unwrap_or("Error"),
                    status => status.as_u16(), message => message },
                );
                (status, html).into_response()
            }
        }
    }
}

/// A `303 See Other` to `to` (after a form, or to sign in).
pub fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// The signed-in viewer of a request, or why there is none.
pub async fn viewer(acq: &Acquirer, headers: &HeaderMap) -> Result<Viewer, Refusal> {
    let Some(secret) = cookie(headers, SESSION_COOKIE) else {
        return Err(Refusal::SignIn("signed-out"));
    };
    let hash = session_hash(secret);
    let now = acq.clock().now_ms();
    let session = acq
        .db()
        .read(move |c| crate::store::dashboard::live_session(c, &hash, now).map_err(ApiError::from))
        .await?;
    let Some(session) = session else {
        return Err(Refusal::SignIn("expired"));
    };
    let zone = cookie(headers, ZONE_COOKIE)
        .and_then(|z| z.replace("%2F", "/").parse().ok())
        .unwrap_or(acq.config().time_zone);
    Ok(Viewer { session, zone })
}

/// Checks a form's CSRF token against the session's.
pub fn check_csrf(viewer: &Viewer, given: Option<&str>) -> Result<(), Refusal> {
    match given {
        Some(g) if same_secret(g, &viewer.session.csrf) => Ok(()),
        _ => Err(Refusal::forbidden(
            "This form is missing its security token or it is stale. Reload the page and try again.",
        )),
    }
}

/// Percent-encodes `text` as one URL path segment: ids such as a batch's
/// `20261201-SGD-CLIENT/M1` hold a `/`, which must not split the path.
pub fn path_segment(text: String) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The template set, built once.
fn templates() -> &'static minijinja::Environment<'static> {
    static ENV: OnceLock<minijinja::Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = minijinja::Environment::new();
        env.add_filter("pathseg", path_segment);
        for (name, text) in TEMPLATES {
            env.add_template(name, text)
                .unwrap_or_else(|e| panic!("dashboard template {name}: {e}"));
        }
        env
    })
}

const TEMPLATES: [(&str, &str); 14] = [
    ("batch.html", include_str!("templates/batch.html")),
    ("base.html", include_str!("templates/base.html")),
    ("error.html", include_str!("templates/error.html")),
    ("sign_in.html", include_str!("templates/sign_in.html")),
    ("overview.html", include_str!("templates/overview.html")),
    ("payments.html", include_str!("templates/payments.html")),
    ("payment.html", include_str!("templates/payment.html")),
    ("refunds.html", include_str!("templates/refunds.html")),
    (
        "notifications.html",
        include_str!("templates/notifications.html"),
    ),
    ("settlement.html", include_str!("templates/settlement.html")),
    ("wallets.html", include_str!("templates/wallets.html")),
    ("rates.html", include_str!("templates/rates.html")),
    ("risk.html", include_str!("templates/risk.html")),
    ("audit.html", include_str!("templates/audit.html")),
];

/// Renders a template to an HTML answer; a template error is a plain 500, logged.
pub fn render(name: &str, ctx: minijinja::Value) -> Response {
    match templates().get_template(name).and_then(|t| t.render(ctx)) {
        Ok(html) => {
            let mut r = html.into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            let h = r.headers_mut();
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            // Everything the pages use is served from here; no page may be framed.
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                     frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
                ),
            );
            h.insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("same-origin"),
            );
            h.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            r
        }
        Err(e) => {
            tracing::error!(template = name, error = %e, "dashboard template failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be drawn",
            )
                .into_response()
        }
    }
}

/// The embedded static files: (name, content type, bytes).
pub const ASSETS: [(&str, &str, &[u8]); 4] = [
    (
        "dashboard.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/dashboard.css"),
    ),
    (
        "dashboard.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/dashboard.js"),
    ),
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/uPlot.min.css"),
    ),
];

/// A `Set-Cookie` value for the dashboard: `HttpOnly`, `SameSite=Strict`, path `/dashboard`,
/// and `Secure` when the acquirer's public URL is `https`; `max_age_s` 0 deletes it.
pub(crate) fn set_cookie(acq: &Acquirer, name: &str, value: &str, max_age_s: i64) -> HeaderValue {
    let secure = if acq.config().public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}"
    ))
    .expect("cookie values are URL-safe tokens")
}
