//! Dashboard users: created by the operator (admin API `POST /admin/v1/dashboard-users`,
//! `paycode admin users add`), passwords stored as Argon2id hashes, checked on the blocking
//! pool (tens of milliseconds by design) and never inside a database job.

use crate::api::{admin_allowed, admin_error};
use crate::service::{Acquirer, ApiError};
use crate::store::dashboard::{self as store, Role, UserRow};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

/// Shortest password accepted.
pub const PASSWORD_MIN_CHARS: usize = 10;

fn hash_password(password: &str) -> Result<String, ApiError> {
    paycode_sign::password::hash(password, paycode_sign::password::MEMORY_KIB_DEFAULT)
        .map_err(|e| ApiError::new(paycode_core::ResultCode::UNKNOWN_EXCEPTION, e))
}

fn password_matches(password: &str, stored: &str) -> bool {
    paycode_sign::password::verify(password, stored).unwrap_or(false)
}

/// A hash of nothing anybody knows, checked when the user does not exist so that a wrong
/// name takes as long as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&crate::dashboard::random_token()).unwrap_or_default())
}

/// A new or changed user, as the operator asks for it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
    pub password: String,
    /// `OPERATOR` or `MERCHANT`.
    pub role: String,
    #[serde(default)]
    pub client_id: Option<String>,
    /// Absent for an ISV or SI user, who sees every merchant of its client.
    #[serde(default)]
    pub reference_merchant_id: Option<String>,
    #[serde(default)]
    pub disabled: bool,
}

impl Acquirer {
    /// Creates or replaces a dashboard user after checking the whole request.
    pub async fn put_dashboard_user(&self, u: NewUser) -> Result<UserRow, ApiError> {
        let name = u.name.trim().to_string();
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c))
        {
            return Err(ApiError::param(
                "name",
                "1 to 64 letters, digits, '.', '_', '@' or '-'",
            ));
        }
        if name == "operator" {
            return Err(ApiError::param(
                "name",
                "\"operator\" is the admin token's own sign-in",
            ));
        }
        if u.password.chars().count() < PASSWORD_MIN_CHARS {
            return Err(ApiError::param(
                "password",
                format!("needs at least {PASSWORD_MIN_CHARS} characters"),
            ));
        }
        let role = match (u.role.as_str(), u.client_id, u.reference_merchant_id) {
            ("OPERATOR", None, None) => Role::Operator,
            ("OPERATOR", _, _) => {
                return Err(ApiError::param(
                    "clientId",
                    "an operator user sees every merchant: give no clientId or referenceMerchantId",
                ));
            }
            ("MERCHANT", Some(client_id), merchant) => {
                let snap = self.snapshot();
                if !snap.clients.contains_key(&client_id) {
                    return Err(ApiError::param(
                        "clientId",
                        format!("no client {client_id}"),
                    ));
                }
                if let Some(m) = &merchant
                    && snap.merchant(&client_id, m).is_none()
                {
                    return Err(ApiError::param(
                        "referenceMerchantId",
                        format!("no merchant {m} of client {client_id}"),
                    ));
                }
                Role::Merchant {
                    client_id,
                    reference_merchant_id: merchant,
                }
            }
            ("MERCHANT", None, _) => {
                return Err(ApiError::param(
                    "clientId",
                    "a merchant user needs its client",
                ));
            }
            (other, _, _) => {
                return Err(ApiError::param(
                    "role",
                    format!("{other:?} is not OPERATOR or MERCHANT"),
                ));
            }
        };
        let password = u.password;
        let password_hash = tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|e| {
                ApiError::new(paycode_core::ResultCode::UNKNOWN_EXCEPTION, e.to_string())
            })??;
        let now = self.clock().now_ms();
        let row = UserRow {
            name,
            password_hash,
            role,
            created_ms: now,
            disabled_ms: u.disabled.then_some(now),
        };
        let stored = row.clone();
        self.db()
            .write(move |c| store::upsert_user(c, &stored).map_err(ApiError::from))
            .await?;
        Ok(row)
    }

    /// The user `name` if the password is theirs and they are not disabled. Takes as long for
    /// an unknown name as for a wrong password.
    pub async fn check_dashboard_password(
        &self,
        name: &str,
        password: &str,
    ) -> Result<Option<UserRow>, ApiError> {
        let n = name.to_string();
        let user = self
            .db()
            .read(move |c| store::user(c, &n).map_err(ApiError::from))
            .await?;
        let stored = user
            .as_ref()
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| decoy_hash().to_string());
        let password = password.to_string();
        let ok = tokio::task::spawn_blocking(move || password_matches(&password, &stored))
            .await
            .unwrap_or(false);
        Ok(user.filter(|u| ok && u.disabled_ms.is_none()))
    }
}

fn user_json(u: &UserRow) -> serde_json::Value {
    let (role, client, merchant) = match &u.role {
        Role::Operator => ("OPERATOR", None, None),
        Role::Merchant {
            client_id,
            reference_merchant_id,
        } => ("MERCHANT", Some(client_id), reference_merchant_id.as_ref()),
    };
    serde_json::json!({
        "name": u.name, "role": role, "clientId": client, "referenceMerchantId": merchant,
        "created": crate::wire::iso(u.created_ms), "disabled": u.disabled_ms.is_some(),
    })
}

/// `POST /admin/v1/dashboard-users`: creates or replaces a user.
pub async fn put_user(State(acq): State<Acquirer>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = admin_allowed(&acq, &headers) {
        return *r;
    }
    let u: NewUser = match crate::api::parse_json(&body) {
        Ok(u) => u,
        Err(e) => return admin_error(e),
    };
    match acq.put_dashboard_user(u).await {
        Ok(row) => {
            let answer = Json(user_json(&row)).into_response();
            let detail = user_json(&row).to_string();
            crate::admin::logged(
                &acq,
                &headers,
                ("dashboard-user.put", row.name.clone(), detail),
                answer,
            )
            .await
        }
        Err(e) => admin_error(e),
    }
}

/// `GET /admin/v1/dashboard-users`.
pub async fn list_users(State(acq): State<Acquirer>, headers: HeaderMap) -> Response {
    if let Err(r) = admin_allowed(&acq, &headers) {
        return *r;
    }
    match acq
        .db()
        .read(|c| store::users(c).map_err(ApiError::from))
        .await
    {
        Ok(rows) => {
            Json(serde_json::json!({"users": rows.iter().map(user_json).collect::<Vec<_>>()}))
                .into_response()
        }
        Err(e) => admin_error(e),
    }
}
