//! `agent_tokens`: what a system integrator may do for one merchant (SPEC §11). The token
//! itself is never stored, only its SHA-256.

use super::StoreResult;
use paycode_db::sql::{Connection, OptionalExtension, params};

pub const AGENT_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS agent_tokens (
    token_id              TEXT PRIMARY KEY,
    token_hash            TEXT NOT NULL UNIQUE,   -- hex SHA-256 of the token
    integrator_client_id  TEXT NOT NULL,          -- the client that signs the requests
    client_id             TEXT NOT NULL,          -- the merchant's client it acts for
    reference_merchant_id TEXT NOT NULL,
    scope                 TEXT NOT NULL,          -- comma-separated merchant API operations
    created_ms            INTEGER NOT NULL,
    expires_ms            INTEGER NOT NULL,
    revoked_ms            INTEGER
);
"#;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentTokenRow {
    pub token_id: String,
    pub token_hash: String,
    pub integrator_client_id: String,
    pub client_id: String,
    pub reference_merchant_id: String,
    /// Merchant API operations (`pay`, `inquiryPayment`, …).
    pub scope: Vec<String>,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub revoked_ms: Option<i64>,
}

const COLUMNS: &str = "token_id, token_hash, integrator_client_id, client_id, \
    reference_merchant_id, scope, created_ms, expires_ms, revoked_ms";

fn from_row(r: &paycode_db::sql::Row<'_>) -> paycode_db::sql::Result<AgentTokenRow> {
    let scope: String = r.get(5)?;
    Ok(AgentTokenRow {
        token_id: r.get(0)?,
        token_hash: r.get(1)?,
        integrator_client_id: r.get(2)?,
        client_id: r.get(3)?,
        reference_merchant_id: r.get(4)?,
        scope: scope
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        created_ms: r.get(6)?,
        expires_ms: r.get(7)?,
        revoked_ms: r.get(8)?,
    })
}

pub fn insert(c: &Connection, t: &AgentTokenRow) -> StoreResult<()> {
    c.execute(
        &format!(
            "INSERT INTO agent_tokens ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
        ),
        params![
            t.token_id,
            t.token_hash,
            t.integrator_client_id,
            t.client_id,
            t.reference_merchant_id,
            t.scope.join(","),
            t.created_ms,
            t.expires_ms,
            t.revoked_ms
        ],
    )?;
    Ok(())
}

pub fn by_hash(c: &Connection, token_hash: &str) -> StoreResult<Option<AgentTokenRow>> {
    Ok(c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM agent_tokens WHERE token_hash = ?1"
    ))?
    .query_row([token_hash], from_row)
    .optional()?)
}

/// Revokes a token; `false` when there is no such token or it was revoked already.
pub fn revoke(c: &Connection, token_id: &str, now_ms: i64) -> StoreResult<bool> {
    Ok(c.execute(
        "UPDATE agent_tokens SET revoked_ms = ?2 WHERE token_id = ?1 AND revoked_ms IS NULL",
        params![token_id, now_ms],
    )? == 1)
}

pub fn all(c: &Connection) -> StoreResult<Vec<AgentTokenRow>> {
    Ok(c.query_all_cached(
        &format!("SELECT {COLUMNS} FROM agent_tokens ORDER BY created_ms, token_id"),
        (),
        from_row,
    )?)
}

/// The operator log: every change made through the admin API, who made it and when.
pub const OPERATOR_LOG_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS operator_log (
    seq           INTEGER PRIMARY KEY,
    at_ms         INTEGER NOT NULL,
    actor         TEXT NOT NULL,
    action        TEXT NOT NULL,
    target        TEXT NOT NULL,
    detail        TEXT NOT NULL
);
"#;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorLogRow {
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
}

pub fn log_operator(c: &Connection, r: &OperatorLogRow) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO operator_log (at_ms, actor, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![r.at_ms, r.actor, r.action, r.target, r.detail])?;
    Ok(())
}

/// The latest entries, newest first.
pub fn operator_log(c: &Connection, limit: usize) -> StoreResult<Vec<OperatorLogRow>> {
    Ok(c.query_all_cached(
        "SELECT at_ms, actor, action, target, detail FROM operator_log ORDER BY seq DESC LIMIT ?1",
        params![limit as i64],
        |r| {
            Ok(OperatorLogRow {
                at_ms: r.get(0)?,
                actor: r.get(1)?,
                action: r.get(2)?,
                target: r.get(3)?,
                detail: r.get(4)?,
            })
        },
    )?)
}
