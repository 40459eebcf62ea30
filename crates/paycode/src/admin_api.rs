//! The operator's client for a running acquirer's admin API (`/admin/v1/…`, bearer token),
//! shared by `paycode admin`, `settle` and `audit`. The URL comes from `<data-dir>/demo.json`
//! and the token from `<data-dir>/admin-token` unless the caller names them. A refusal is one
//! line with the server's reason.

use crate::demo_file::DemoFile;
use anyhow::Context;
use std::path::Path;
use std::time::Duration;

/// An answer, or nothing listening at the URL (the caller may then work on the store itself).
pub enum Reached<T> {
    Answer(T),
    NotRunning,
}

pub struct AdminApi {
    url: String,
    token: String,
    /// Sent as `Operator-Name`, for the operator log.
    operator: String,
    http: reqwest::Client,
}

impl AdminApi {
    pub fn new(
        url: &str,
        token: &str,
        operator: &str,
        timeout: Duration,
    ) -> anyhow::Result<AdminApi> {
        Ok(AdminApi {
            url: url.trim_end_matches('/').to_string(),
            token: token.trim().to_string(),
            operator: operator.to_string(),
            http: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .context("building the HTTP client")?,
        })
    }

    /// The admin API described by the data directory, if both files are there.
    pub fn from_data_dir(data_dir: &Path, timeout: Duration) -> anyhow::Result<Option<AdminApi>> {
        let (Ok(demo), Ok(token)) = (
            DemoFile::load(data_dir),
            std::fs::read_to_string(data_dir.join("admin-token")),
        ) else {
            return Ok(None);
        };
        AdminApi::new(&demo.acquirer_url, &token, &default_operator(), timeout).map(Some)
    }

    /// Sends one call: the answer's headers and JSON body, or [`Reached::NotRunning`].
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<String>,
    ) -> anyhow::Result<Reached<(reqwest::header::HeaderMap, serde_json::Value)>> {
        let url = format!("{}{path}", self.url);
        let mut req = self
            .http
            .request(method, &url)
            .bearer_auth(&self.token)
            .header("Operator-Name", &self.operator);
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) if e.is_connect() => return Ok(Reached::NotRunning),
            Err(e) => return Err(e).with_context(|| format!("calling {url}")),
        };
        let (status, headers) = (resp.status(), resp.headers().clone());
        let text = resp
            .text()
            .await
            .with_context(|| format!("reading the answer of {url}"))?;
        let value: Option<serde_json::Value> = serde_json::from_str(&text).ok();
        if !status.is_success() {
            match value.as_ref().and_then(|v| v["message"].as_str()) {
                Some(why) => anyhow::bail!("refused: {why}"),
                None => anyhow::bail!(
                    "{url} answered HTTP {status}: {} (is the admin token in the data directory the server's?)",
                    text.trim()
                ),
            }
        }
        let value = value.with_context(|| {
            format!("{url} answered something that is not JSON: {}", text.trim())
        })?;
        Ok(Reached::Answer((headers, value)))
    }

    /// [`AdminApi::call`] for a command that needs the server: nothing listening is an error.
    pub async fn call_running(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<String>,
    ) -> anyhow::Result<(reqwest::header::HeaderMap, serde_json::Value)> {
        match self.call(method, path, body).await? {
            Reached::Answer(a) => Ok(a),
            Reached::NotRunning => anyhow::bail!(
                "cannot reach the acquirer at {} (is `paycode serve` running?)",
                self.url
            ),
        }
    }

    /// [`AdminApi::call`] with the answer read as `T`.
    pub async fn call_as<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> anyhow::Result<Reached<T>> {
        Ok(match self.call(method, path, None).await? {
            Reached::NotRunning => Reached::NotRunning,
            Reached::Answer((_, v)) => Reached::Answer(
                serde_json::from_value(v)
                    .with_context(|| format!("{}{path} answered something unexpected", self.url))?,
            ),
        })
    }
}

/// Who the operator log names when the caller does not say: the user's name.
pub fn default_operator() -> String {
    std::env::var("USER").unwrap_or_else(|_| "operator".to_string())
}
