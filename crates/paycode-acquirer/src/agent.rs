//! System-integrator mode (SPEC §11): an operator, for a merchant, grants an integrator client
//! an `Agent-Token` for one merchant and a set of merchant API operations, until it expires or
//! is revoked. The integrator signs with its own key and sends the token; the request then acts
//! as the merchant's client, for that merchant only. A token that is unknown, revoked, expired,
//! sent by another client or used outside its scope is `ACCESS_DENIED` before anything is read
//! or written; a payment or refund of another merchant is answered as one that does not exist.

use crate::service::{Acquirer, ApiError};
use crate::store::agents::{self, AgentTokenRow};
use paycode_core::ResultCode;

/// The operations a token may grant.
pub const OPERATIONS: [&str; 7] = [
    "pay",
    "inquiryPayment",
    "cancel",
    "refund",
    "inquiryRefund",
    "inquireExchangeRate",
    "inquiryCodeIssuer",
];

/// Longest life of a token.
pub const TOKEN_LIFE_MAX_S: i64 = 366 * 86_400;

/// What a valid token lets a request do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub token_id: String,
    /// The merchant's client the request acts as.
    pub client_id: String,
    pub reference_merchant_id: String,
}

/// A token as the operator receives it: the secret is shown once.
pub struct Issued {
    pub row: AgentTokenRow,
    pub token: String,
}

fn hash(token: &str) -> String {
    crate::service::sha256_hex(&["agent-token", token])
}

fn denied(why: impl Into<String>) -> ApiError {
    ApiError::new(ResultCode::ACCESS_DENIED, why)
}

impl Acquirer {
    /// Grants `integrator` the operations `scope` for `client_id`'s merchant, for `life_s`.
    pub async fn issue_agent_token(
        &self,
        integrator: &str,
        client_id: &str,
        reference_merchant_id: &str,
        scope: Vec<String>,
        life_s: i64,
    ) -> Result<Issued, ApiError> {
        let snap = self.snapshot();
        if !snap.clients.contains_key(integrator) {
            return Err(ApiError::param(
                "integratorClientId",
                format!("no client {integrator}"),
            ));
        }
        if integrator == client_id {
            return Err(ApiError::param(
                "integratorClientId",
                "is the merchant's own client, which needs no token",
            ));
        }
        if snap.merchant(client_id, reference_merchant_id).is_none() {
            return Err(ApiError::param(
                "referenceMerchantId",
                format!("no merchant {reference_merchant_id} of client {client_id}"),
            ));
        }
        if scope.is_empty() {
            return Err(ApiError::param("scope", "needs at least one operation"));
        }
        if let Some(op) = scope.iter().find(|op| !OPERATIONS.contains(&op.as_str())) {
            return Err(ApiError::param(
                "scope",
                format!("{op:?} is not one of {}", OPERATIONS.join(", ")),
            ));
        }
        if !(1..=TOKEN_LIFE_MAX_S).contains(&life_s) {
            return Err(ApiError::param(
                "expiresInS",
                format!("must be between 1 and {TOKEN_LIFE_MAX_S}"),
            ));
        }
        let mut secret = [0u8; 24];
        aws_lc_rs::rand::fill(&mut secret).map_err(|_| {
            ApiError::new(
                ResultCode::UNKNOWN_EXCEPTION,
                "the system random source failed",
            )
        })?;
        let token: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        let now = self.now_ms();
        let row = AgentTokenRow {
            token_id: format!("AT{}", &hash(&token)[..16]),
            token_hash: hash(&token),
            integrator_client_id: integrator.to_string(),
            client_id: client_id.to_string(),
            reference_merchant_id: reference_merchant_id.to_string(),
            scope,
            created_ms: now,
            expires_ms: now + life_s * 1000,
            revoked_ms: None,
        };
        let stored = row.clone();
        self.db()
            .write(move |c| agents::insert(c, &stored).map_err(ApiError::from))
            .await?;
        tracing::info!(token_id = %row.token_id, integrator, client_id, reference_merchant_id, "agent token issued");
        Ok(Issued { row, token })
    }

    pub async fn revoke_agent_token(&self, token_id: &str) -> Result<bool, ApiError> {
        let (id, now) = (token_id.to_string(), self.now_ms());
        self.db()
            .write(move |c| agents::revoke(c, &id, now).map_err(ApiError::from))
            .await
    }

    pub async fn agent_tokens(&self) -> Result<Vec<AgentTokenRow>, ApiError> {
        self.db()
            .read(|c| agents::all(c).map_err(ApiError::from))
            .await
    }

    /// What `token`, sent by the verified client `integrator` for operation `op`, allows.
    pub async fn agent_grant(
        &self,
        token: &str,
        integrator: &str,
        op: &str,
    ) -> Result<Grant, ApiError> {
        let h = hash(token);
        let row = self
            .db()
            .read(move |c| agents::by_hash(c, &h).map_err(ApiError::from))
            .await?
            .ok_or_else(|| denied("the Agent-Token is not known"))?;
        if row.integrator_client_id != integrator {
            return Err(denied(format!(
                "the Agent-Token was not granted to client {integrator}"
            )));
        }
        if row.revoked_ms.is_some() {
            return Err(denied("the Agent-Token was revoked"));
        }
        if self.now_ms() >= row.expires_ms {
            return Err(denied("the Agent-Token has expired"));
        }
        if !row.scope.iter().any(|s| s == op) {
            return Err(denied(format!(
                "the Agent-Token does not grant {op} (it grants {})",
                row.scope.join(", ")
            )));
        }
        Ok(Grant {
            token_id: row.token_id,
            client_id: row.client_id,
            reference_merchant_id: row.reference_merchant_id,
        })
    }
}
