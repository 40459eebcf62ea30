//! `paycode bench-dashboard`: times the dashboard's pages against a running `serve`, signed in
//! as the operator: the overview, the payment list and its next page, searches by request id,
//! code digits, wallet, status and amount, one payment and the refunds. Point it at a store
//! filled by `paycode seed --payments N` to see what history costs a page view.

use crate::demo_file::DemoFile;
use anyhow::{Context, bail};
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct DashboardBenchArgs {
    /// Times each page is loaded.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
}

struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: String,
}

impl Browser {
    async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await?;
        Ok((r.status().as_u16(), r.text().await?))
    }
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let at = text.find(start)? + start.len();
    let rest = &text[at..];
    Some(&rest[..rest.find(end)?])
}

async fn sign_in(base: &str, token: &str) -> anyhow::Result<Browser> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let form = http.get(format!("{base}/dashboard/sign-in")).send().await?;
    let pre = form
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_string)
        .context("the sign-in page set no cookie")?;
    let html = form.text().await?;
    let csrf = between(&html, "name=\"csrf\" value=\"", "\"").context("no sign-in token")?;
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("csrf", csrf)
        .append_pair("name", "operator")
        .append_pair("password", token)
        .finish();
    let r = http
        .post(format!("{base}/dashboard/sign-in"))
        .header("cookie", pre)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await?;
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("paycode_session="))
        .and_then(|v| v.split(';').next())
        .map(str::to_string)
        .context("signing in as operator failed (is the admin token right?)")?;
    Ok(Browser {
        http,
        base: base.to_string(),
        cookie,
    })
}

pub async fn run(data_dir: &Path, args: DashboardBenchArgs) -> anyhow::Result<()> {
    let demo = DemoFile::load(data_dir)?;
    let token =
        std::fs::read_to_string(data_dir.join("admin-token")).context("reading the admin token")?;
    let b = sign_in(&demo.acquirer_url, token.trim()).await?;

    // One old payment to look for: the oldest in the store.
    let (_, oldest) = b.get("/dashboard/payments?dir=asc").await?;
    let id = between(&oldest, "href=\"/dashboard/payments/", "\"").context("no payment")?;
    let row = &oldest[oldest
        .find(&format!("/dashboard/payments/{id}\""))
        .unwrap_or(0)..];
    let request_id = between(row, "</a></td><td>", "</td>").context("no request id")?;
    let last4 = between(row, "<code>", "</code>")
        .map(|c| c.trim_start_matches('*').to_string())
        .context("no code")?;
    let (_, first) = b.get("/dashboard/payments").await?;
    let next = first
        .find("\" id=\"next-page\"")
        .and_then(|end| {
            let start = first[..end].rfind("href=\"")? + 6;
            Some(
                first[start..end]
                    .replace("&amp;", "&")
                    .replace("&#x2f;", "/"),
            )
        })
        .unwrap_or_else(|| "/dashboard/payments".into());
    let wallet = demo
        .wallets
        .last()
        .map(|w| w.name.clone())
        .unwrap_or_default();
    let pages: Vec<(&str, String)> = vec![
        ("overview", "/dashboard/overview".into()),
        (
            "overview data (live refresh)",
            "/dashboard/overview.json".into(),
        ),
        ("payments, first page", "/dashboard/payments".into()),
        ("payments, next page", next),
        (
            "search: request id (oldest)",
            format!("/dashboard/payments?requestId={request_id}"),
        ),
        (
            "search: code ends with",
            format!("/dashboard/payments?last4={last4}"),
        ),
        (
            "filter: wallet",
            format!("/dashboard/payments?wallet={wallet}"),
        ),
        (
            "filter: status FAIL",
            "/dashboard/payments?status=FAIL".into(),
        ),
        (
            "filter: status PROCESSING",
            "/dashboard/payments?status=PROCESSING".into(),
        ),
        (
            "filter: amount 1.00-1.05",
            format!(
                "/dashboard/payments?currency={}&min=1.00&max=1.05",
                demo.currency
            ),
        ),
        ("payment (oldest)", format!("/dashboard/payments/{id}")),
        ("refunds", "/dashboard/refunds".into()),
    ];
    println!(
        "dashboard at {}, {} rounds per page, signed in as operator",
        demo.acquirer_url, args.rounds
    );
    println!(
        "{:<32} {:>9} {:>9} {:>9} {:>9}",
        "page", "median", "p95", "max", "KiB"
    );
    for (name, path) in pages {
        let mut times: Vec<Duration> = Vec::with_capacity(args.rounds);
        let mut size = 0;
        for _ in 0..args.rounds.max(1) {
            let t0 = Instant::now();
            let (status, body) = b.get(&path).await?;
            times.push(t0.elapsed());
            if status != 200 {
                bail!("{name} ({path}): HTTP {status}");
            }
            size = body.len();
        }
        times.sort();
        let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
        println!(
            "{name:<32} {:>9} {:>9} {:>9} {:>9.1}",
            ms(at(0.5)),
            ms(at(0.95)),
            ms(at(1.0)),
            size as f64 / 1024.0
        );
    }
    Ok(())
}
