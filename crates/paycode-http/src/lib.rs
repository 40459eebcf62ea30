//! Signed HTTP for every paycode boundary (merchant API, MPP API, notifications).
//!
//! - Server side: [`SignedRequest`] is an axum extractor that keeps the exact path and bytes
//!   as received (for verification) and the headers the scheme needs; [`signed_response`] builds
//!   the HTTP 200 answer with the lower-case `signature`, `response-time` and `client-id`
//!   headers the SDKs require.
//! - Client side: [`SignedClient`] signs a JSON request, sends it, and verifies the answer's
//!   signature when it knows the peer's key. Its errors separate "certainly not delivered"
//!   ([`CallError::NotDelivered`]) from "outcome unknown" ([`CallError::Unknown`]): the two
//!   must be handled differently by anything that moves money.
//!
//! - [`request_time`]: the `Request-Time` freshness check every signed server runs after the
//!   signature verified; [`SignedClient`] stamps each request with its own clock's time.
//! - [`server`]: the accept loop of every listener, with its header, idle and connection
//!   bounds; it marks requests whose header block is over the limit, and [`SignedRequest`]
//!   turns that mark into a [`RequestRejection`] the APIs answer with a signed `PARAM_ILLEGAL`.
//!
//! RSA signing costs about a millisecond, so it always runs on the blocking pool, never on an
//! async worker thread.

pub mod server;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use paycode_sign::{PrivateKey, PublicKey, SignError, SignatureHeader};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;

pub mod request_time;

pub use paycode_sign;
pub use request_time::{RequestTimeError, check_request_time};

/// The current time as the APIs write it: ISO-8601 with offset, millisecond precision.
/// Longest stretch of a client's own input echoed back in an error message.
pub const ECHO_MAX_CHARS: usize = 200;

/// `text` cut to [`ECHO_MAX_CHARS`] characters (with `…` when cut): error messages name what is
/// wrong without sending a hostile body back whole (a JSON parser quotes the offending value).
pub fn brief(text: &str) -> String {
    cut(text, ECHO_MAX_CHARS)
}

/// `text` cut to `max_chars` characters, with `…` when cut.
pub(crate) fn cut(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

pub fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Epoch milliseconds as the APIs write times: ISO-8601 in UTC, millisecond precision.
pub fn iso_of_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A party's clock in epoch milliseconds. Clients stamp `Request-Time` with the sender's clock
/// so that a service whose clock a test moves sends the time it believes it is.
pub type NowMs = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock as a [`NowMs`].
pub fn system_now_ms() -> NowMs {
    Arc::new(|| chrono::Utc::now().timestamp_millis())
}

/// A request of the signed APIs, as received. Nothing is verified yet: the service looks up the
/// caller's key by `client_id` and the header's key version, then calls [`SignedRequest::verify`].
#[derive(Debug, Clone)]
pub struct SignedRequest {
    /// Path and query exactly as received (path component of an absolute-form target).
    pub path: String,
    pub client_id: Option<String>,
    pub request_time: Option<String>,
    pub signature: Option<String>,
    pub agent_token: Option<String>,
    pub body: Bytes,
}

impl SignedRequest {
    /// Parses the `Signature` header.
    pub fn signature_header(&self) -> Result<SignatureHeader, SignError> {
        let raw = self
            .signature
            .as_deref()
            .ok_or(SignError::HeaderMalformed("Signature header is missing"))?;
        SignatureHeader::parse(raw)
    }

    pub fn verify(&self, header: &SignatureHeader, key: &PublicKey) -> Result<(), SignError> {
        paycode_sign::verify(
            key,
            header,
            &self.path,
            self.client_id.as_deref().unwrap_or(""),
            self.request_time.as_deref().unwrap_or(""),
            &self.body,
        )
    }
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
}

/// The request was not read: its header block is over the limit, or its body could not be read
/// (too large, or the connection failed). Carries what is needed to answer with a signed
/// `PARAM_ILLEGAL`.
#[derive(Debug)]
pub struct RequestRejection {
    pub path: String,
    pub client_id: Option<String>,
    pub reason: Unread,
}

/// Why a [`RequestRejection`] happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unread {
    /// The header block is over [`server::ServerLimits::header_max_bytes`].
    Headers { size_bytes: usize, max_bytes: usize },
    /// The body could not be read; the text says why.
    Body(String),
}

impl RequestRejection {
    /// The part of the request at fault, as named in `PARAM_ILLEGAL` messages.
    pub fn field(&self) -> &'static str {
        match self.reason {
            Unread::Headers { .. } => "headers",
            Unread::Body(_) => "body",
        }
    }

    /// What went wrong, for the `resultMessage`; `body_max_bytes` is the caller's body limit.
    pub fn describe(&self, body_max_bytes: usize) -> String {
        match &self.reason {
            Unread::Headers {
                size_bytes,
                max_bytes,
            } => format!(
                "the request header block is {size_bytes} bytes; at most {max_bytes} bytes are accepted"
            ),
            Unread::Body(why) => format!(
                "cannot read the request body ({why}); at most {body_max_bytes} bytes are accepted"
            ),
        }
    }
}

impl IntoResponse for RequestRejection {
    fn into_response(self) -> Response {
        // Only for handlers that do not answer the rejection themselves; the signed APIs do.
        match &self.reason {
            Unread::Headers { .. } => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                self.describe(0),
            )
                .into_response(),
            Unread::Body(why) => (StatusCode::PAYLOAD_TOO_LARGE, why.clone()).into_response(),
        }
    }
}

impl<S: Send + Sync> FromRequest<S> for SignedRequest {
    type Rejection = RequestRejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let uri = req.uri();
        let path = uri
            .path_and_query()
            .map(|pq| pq.as_str().to_string())
            .unwrap_or_else(|| uri.path().to_string());
        let headers = req.headers();
        let client_id = header_text(headers, "client-id");
        if let Some(over) = req.extensions().get::<server::OversizedHeaders>() {
            return Err(RequestRejection {
                path,
                client_id,
                reason: Unread::Headers {
                    size_bytes: over.size_bytes,
                    max_bytes: over.max_bytes,
                },
            });
        }
        let request_time = header_text(headers, "request-time");
        let signature = header_text(headers, "signature");
        let agent_token = header_text(headers, "agent-token");
        let body = match Bytes::from_request(req, state).await {
            Ok(b) => b,
            Err(e) => {
                return Err(RequestRejection {
                    path,
                    client_id,
                    reason: Unread::Body(e.body_text()),
                });
            }
        };
        Ok(SignedRequest {
            path,
            client_id,
            request_time,
            signature,
            agent_token,
            body,
        })
    }
}

/// A private key with its version, shared by all the signing done by one party.
#[derive(Clone, Debug)]
pub struct Signer {
    key: Arc<PrivateKey>,
    key_version: u32,
}

impl Signer {
    pub fn new(key: PrivateKey, key_version: u32) -> Signer {
        Signer {
            key: Arc::new(key),
            key_version,
        }
    }

    pub fn public_key(&self) -> PublicKey {
        self.key.public_key()
    }

    pub fn private_key(&self) -> &PrivateKey {
        &self.key
    }

    /// Signs on the blocking pool and returns the `Signature` header value.
    pub async fn sign(
        &self,
        path: String,
        client_id: String,
        time: String,
        body: Bytes,
    ) -> Result<String, SignError> {
        let key = self.key.clone();
        let version = self.key_version;
        tokio::task::spawn_blocking(move || {
            paycode_sign::sign(&key, version, &path, &client_id, &time, &body)
        })
        .await
        .unwrap_or(Err(SignError::SigningFailed))
    }
}

/// The HTTP 200 JSON answer with the signed lower-case headers. `path` is the request path as
/// received and `client_id` the request's client id (echoed back).
pub async fn signed_response(
    signer: &Signer,
    path: &str,
    client_id: &str,
    body: Vec<u8>,
) -> Response {
    let time = now_iso();
    let body = Bytes::from(body);
    let signature = signer
        .sign(
            path.to_string(),
            client_id.to_string(),
            time.clone(),
            body.clone(),
        )
        .await;
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&time) {
        h.insert("response-time", v);
    }
    if let Ok(v) = HeaderValue::from_str(client_id) {
        h.insert("client-id", v);
    }
    match signature.ok().and_then(|s| HeaderValue::from_str(&s).ok()) {
        Some(v) => {
            h.insert("signature", v);
        }
        None => tracing::error!("could not sign a response"),
    }
    resp
}

/// Failure of a signed call, split by what it means for the outcome.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The request certainly did not reach the peer (connection refused, bad URL, signing
    /// failed before sending): safe to treat as "nothing happened".
    #[error("not delivered: {0}")]
    NotDelivered(String),
    /// The request may have been processed (timeout, reset, garbled or unsigned answer): the
    /// outcome is unknown and must be found out by inquiry.
    #[error("outcome unknown: {0}")]
    Unknown(String),
}

impl CallError {
    pub fn is_unknown(&self) -> bool {
        matches!(self, CallError::Unknown(_))
    }
}

/// A client that signs requests as `client_id` and verifies answers with `peer_key`.
#[derive(Clone)]
pub struct SignedClient {
    http: reqwest::Client,
    client_id: String,
    signer: Signer,
    peer_key: Option<PublicKey>,
    now_ms: NowMs,
    /// Sent as `Agent-Token` (an integrator acting for a merchant).
    agent_token: Option<String>,
}

impl std::fmt::Debug for SignedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedClient")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// A signed answer: its body bytes, and whether its signature verified.
#[derive(Debug)]
pub struct SignedAnswer {
    pub body: Bytes,
    pub status: u16,
}

impl SignedClient {
    pub fn new(
        client_id: &str,
        signer: Signer,
        peer_key: Option<PublicKey>,
        timeout: Duration,
    ) -> SignedClient {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(256)
            // Receivers that look headers up case-sensitively get them as documented.
            .http1_title_case_headers()
            .build()
            .expect("the HTTP client configuration is static and valid");
        SignedClient {
            http,
            client_id: client_id.to_string(),
            signer,
            peer_key,
            now_ms: system_now_ms(),
            agent_token: None,
        }
    }

    /// The same client sending `Agent-Token: token` with every request.
    pub fn with_agent_token(&self, token: &str) -> SignedClient {
        let mut c = self.clone();
        c.agent_token = Some(token.to_string());
        c
    }

    /// The same client stamping `Request-Time` with `now_ms` instead of the system clock.
    pub fn with_clock(mut self, now_ms: NowMs) -> SignedClient {
        self.now_ms = now_ms;
        self
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The same client (sharing its connection pool) verifying answers with `key`.
    pub fn with_peer_key(&self, key: PublicKey) -> SignedClient {
        let mut c = self.clone();
        c.peer_key = Some(key);
        c
    }

    /// [`SignedClient::post_raw`] signing as another client id (notifications carry the
    /// merchant's client id).
    pub async fn post_raw_as(
        &self,
        client_id: &str,
        url: &str,
        body: Vec<u8>,
    ) -> Result<SignedAnswer, CallError> {
        let mut c = self.clone();
        c.client_id = client_id.to_string();
        c.post_raw(url, body).await
    }

    /// Signs and posts `body` to `url`, returning the raw answer. The signed path is the URL's
    /// path and query. Any HTTP status is returned; the answer's signature is checked when the
    /// peer key is known and the status is 200.
    pub async fn post_raw(&self, url: &str, body: Vec<u8>) -> Result<SignedAnswer, CallError> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| CallError::NotDelivered(format!("bad URL {url:?}: {e}")))?;
        let path = match parsed.query() {
            Some(q) => format!("{}?{}", parsed.path(), q),
            None => parsed.path().to_string(),
        };
        // Stamped at sending, so every retry carries a fresh time.
        let time = iso_of_ms((self.now_ms)());
        let body = Bytes::from(body);
        let signature = self
            .signer
            .sign(
                path.clone(),
                self.client_id.clone(),
                time.clone(),
                body.clone(),
            )
            .await
            .map_err(|e| CallError::NotDelivered(format!("cannot sign: {e}")))?;
        let mut request = self
            .http
            .post(parsed)
            .header("Content-Type", "application/json; charset=UTF-8")
            .header("Client-Id", &self.client_id)
            .header("Request-Time", &time)
            .header("Signature", signature);
        if let Some(token) = &self.agent_token {
            request = request.header("Agent-Token", token);
        }
        let resp = request.body(body).send().await.map_err(|e| {
            if e.is_connect() || e.is_builder() {
                CallError::NotDelivered(e.to_string())
            } else {
                CallError::Unknown(e.to_string())
            }
        })?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .map_err(|e| CallError::Unknown(format!("reading answer: {e}")))?;
        if status == 200
            && let Some(key) = &self.peer_key
        {
            verify_answer(key, &headers, &path, &body)
                .map_err(|e| CallError::Unknown(format!("answer signature: {e}")))?;
        }
        Ok(SignedAnswer { body, status })
    }

    /// Posts a JSON request and parses a JSON answer (which must be HTTP 200 and, when the peer
    /// key is known, correctly signed).
    pub async fn post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        url: &str,
        req: &Req,
    ) -> Result<Resp, CallError> {
        let body = serde_json::to_vec(req)
            .map_err(|e| CallError::NotDelivered(format!("cannot encode request: {e}")))?;
        let answer = self.post_raw(url, body).await?;
        if answer.status != 200 {
            return Err(CallError::Unknown(format!("HTTP status {}", answer.status)));
        }
        serde_json::from_slice(&answer.body)
            .map_err(|e| CallError::Unknown(format!("answer is not the expected JSON: {e}")))
    }
}

/// Verifies an answer signed with the `signature` / `response-time` / `client-id` headers.
pub fn verify_answer(
    key: &PublicKey,
    headers: &reqwest::header::HeaderMap,
    path: &str,
    body: &[u8],
) -> Result<(), SignError> {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let sig = get("signature").ok_or(SignError::HeaderMalformed("signature header is missing"))?;
    let time =
        get("response-time").ok_or(SignError::HeaderMalformed("response-time is missing"))?;
    let client_id = get("client-id").ok_or(SignError::HeaderMalformed("client-id is missing"))?;
    let header = SignatureHeader::parse(sig)?;
    paycode_sign::verify(key, &header, path, client_id, time, body)
}

#[cfg(test)]
mod brief_tests {
    use super::*;

    #[test]
    fn long_echoes_are_cut_at_a_character_boundary() {
        assert_eq!(brief("short"), "short");
        let long = "é".repeat(ECHO_MAX_CHARS + 50);
        let cut = brief(&long);
        assert_eq!(cut.chars().count(), ECHO_MAX_CHARS + 1);
        assert!(cut.ends_with('…'));
    }
}
