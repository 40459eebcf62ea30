//! `paycode bench`: signed payment load against a running `serve`.
//!
//! It provisions a bench user with many devices at the merchant's own-currency wallet (each
//! device's code is single use per time step, so a run needs about one device per payment),
//! then runs `--clients` concurrent POS loops, each signing a `pay` with a fresh code and
//! verifying the signed answer, for `--duration-s`. Before the load it measures the machine's
//! RSA-2048 signing rate on all cores, so the payment rate can be read against the signing floor
//! (three server-side signatures per payment, four with this client's own on the same machine).
//!
//! With `--inquiry` a second phase of the same length follows: signed `inquiryPayment` calls,
//! alternating between the payments the first phase made and, when `paycode seed` wrote
//! `seeded.json` in the data directory, seeded payments spread over the whole history (one
//! server-side signature per inquiry, two with this client's own).

use crate::bench_watch as watch;
use crate::demo_file::DemoFile;
use anyhow::{Context, bail};
use paycode_http::{SignedClient, Signer};
use paycode_proto::customer::DeviceMaterial;
use paycode_sign::{PrivateKey, PublicKey};
use paycode_wallet::{CodeDisplay, CodeMaterial};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Concurrent POS clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// How long to send payments.
    #[arg(long, default_value_t = 20)]
    duration_s: u64,
    /// Devices to provision (one payment each at most); default: enough for 1,500 payments/s.
    #[arg(long)]
    devices: Option<usize>,
    /// Amount of each payment, in the merchant's currency.
    #[arg(long, default_value = "0.10")]
    amount: String,
    /// After the payments, run signed inquiryPayment calls for as long again.
    #[arg(long)]
    inquiry: bool,
    /// Acquirer base URL to send to (repeat it to spread the clients over several acquirer
    /// processes in turn); default: the one in demo.json.
    #[arg(long = "acquirer-url", value_name = "URL")]
    acquirer_urls: Vec<String>,
    /// Send at most this many payments per second in all (a soak); devices are then reused
    /// once their next code is due, so a run may last as long as wanted.
    #[arg(long)]
    rate: Option<f64>,
    /// Every this many seconds, print the interval's payments, latency and errors beside the
    /// acquirer's memory, open file descriptors and outbox depth (from its `/metrics`), and a
    /// first-versus-last comparison at the end.
    #[arg(long, value_name = "S")]
    sample_every_s: Option<u64>,
    /// Write every payment sent, with the answer the bench got, to this file, for
    /// `paycode bench-verify` to check against the store later.
    #[arg(long, value_name = "FILE")]
    record: Option<std::path::PathBuf>,
}

impl BenchArgs {
    /// The acquirer base URLs, one per client in turn.
    fn targets(&self, demo: &DemoFile) -> Vec<String> {
        let urls = if self.acquirer_urls.is_empty() {
            vec![demo.acquirer_url.clone()]
        } else {
            self.acquirer_urls.clone()
        };
        urls.iter()
            .map(|u| u.trim_end_matches('/').to_string())
            .collect()
    }
}

pub(crate) struct Sample {
    pub(crate) latency: Duration,
    /// The result code answered, or `transport: …`.
    pub(crate) code: String,
    /// The answer's `resultStatus` (`S`, `F`, `U`), `-` when there was none.
    pub(crate) status: char,
    /// The payment request id a pay used (successful ones are inquired in the second phase).
    pub(crate) request_id: Option<String>,
}

/// Sorted latencies of the successful calls, and the failures by result code.
fn tally(samples: &[Sample]) -> (Vec<Duration>, BTreeMap<String, usize>) {
    let mut ok: Vec<Duration> = samples
        .iter()
        .filter(|s| s.code == "SUCCESS")
        .map(|s| s.latency)
        .collect();
    ok.sort();
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.code != "SUCCESS") {
        *errors.entry(s.code.clone()).or_default() += 1;
    }
    (ok, errors)
}

/// Prints one phase's figures: `what` per second, latency, errors and the signing floor at
/// `server_signatures` per call (one more with this client's own).
fn report(what: &str, samples: &[Sample], elapsed_s: f64, sig_per_s: f64, server_signatures: u32) {
    let (ok, errors) = tally(samples);
    let rate = ok.len() as f64 / elapsed_s;
    let floor = sig_per_s / f64::from(server_signatures);
    let floor_own = sig_per_s / f64::from(server_signatures + 1);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("{what:<16} {}", ok.len());
    println!("{:<16} {rate:.1}", format!("{what}/s"));
    println!(
        "latency ms       p50 {:.1}  p99 {:.1}  max {:.1}",
        ms(percentile(&ok, 0.50)),
        ms(percentile(&ok, 0.99)),
        ms(ok.last().copied().unwrap_or_default())
    );
    println!("errors           {}", samples.len() - ok.len());
    for (code, n) in &errors {
        println!("  {code:<30} {n}");
    }
    println!(
        "signing floor    {floor:.0} {what}/s at {server_signatures} server signature(s); {floor_own:.0} with this client's own on the same machine"
    );
    println!(
        "ratio            {:.0}% of the {server_signatures}-signature floor, {:.0}% of the {}-signature floor",
        100.0 * rate / floor,
        100.0 * rate / floor_own,
        server_signatures + 1
    );
}

/// What `paycode seed` wrote, for inquiries of seeded payments (`<data-dir>/seeded.json`).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Seeded {
    first_day: i64,
    last_day: i64,
    n_shops: u64,
    /// Payments of each merchant on each day at least.
    per_day_min: u64,
}

impl Seeded {
    fn load(data_dir: &Path) -> Option<Seeded> {
        let text = std::fs::read_to_string(data_dir.join("seeded.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The request id of a seeded payment drawn from `x`.
    fn request_id(&self, x: u64) -> String {
        let n_days = (self.last_day - self.first_day + 1).max(1) as u64;
        let day = self.first_day + (x % n_days) as i64;
        let shop = (x / n_days) % self.n_shops.max(1);
        let k = (x / 7) % self.per_day_min.max(1);
        format!("SEED-{day}-{shop}-{k}")
    }
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// RSA-2048 signatures per second on all cores, measured for `window`.
async fn signing_rate(key: &str, window: Duration) -> anyhow::Result<f64> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut tasks = Vec::new();
    let started = Instant::now();
    for _ in 0..cores {
        let key = PrivateKey::parse(key)?;
        tasks.push(tokio::task::spawn_blocking(move || {
            let mut n = 0u64;
            let t0 = Instant::now();
            while t0.elapsed() < window {
                let _ =
                    key.sign_raw(b"POST /ams/api/v1/payments/pay\nclient.2026-01-01T00:00:00Z.{}");
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await?;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

pub async fn run(data_dir: &Path, args: BenchArgs) -> anyhow::Result<()> {
    if args.clients == 0 || args.duration_s == 0 {
        bail!("--clients and --duration-s must be positive");
    }
    let demo = DemoFile::load(data_dir)?;
    let currency =
        paycode_core::Currency::parse(&demo.currency).map_err(|e| anyhow::anyhow!("{e}"))?;
    let amount = paycode_core::Money::from_decimal_str(&args.amount, currency)
        .map_err(|e| anyhow::anyhow!("--amount: {e}"))?;
    let wallet = demo
        .wallets
        .iter()
        .find(|w| w.currency == demo.currency)
        .context("demo.json has no wallet in the merchant's currency")?;
    let http = reqwest::Client::new();
    let token_path = data_dir.join("admin-token");
    let token = std::fs::read_to_string(&token_path)
        .with_context(|| format!("reading the operator token {}", token_path.display()))?
        .trim()
        .to_string();

    // A bench user with room for every payment, and its devices.
    let user = format!("bench-{}", chrono::Utc::now().format("%Y%m%d%H%M%S"));
    if args.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        bail!("--rate must be a positive number of payments per second");
    }
    if args.sample_every_s == Some(0) {
        bail!("--sample-every-s must be positive");
    }
    // With --rate a device is reused once its next code is due: two code steps' worth suffice.
    let n_devices = args
        .devices
        .unwrap_or_else(|| match args.rate {
            Some(r) => (r * 2.0 * paycode_wallet::CODE_STEP_S_DEFAULT as f64) as usize,
            None => 1_500 * args.duration_s as usize,
        })
        .clamp(args.clients, 100_000);
    // Room for every payment: one per device, or with --rate as many as the run can send.
    let payments_max = match args.rate {
        Some(r) => (r * args.duration_s as f64).ceil() as i64 + n_devices as i64,
        None => n_devices as i64,
    };
    let huge = amount.amount_minor().saturating_mul(payments_max + 1);
    let created: Value = http
        .post(format!("{}/admin/v1/users", wallet.url))
        .bearer_auth(&token)
        .json(&json!({
            "name": user, "password": "bench-password", "balanceMinor": huge,
            "passwordFreePerPaymentMinor": huge, "passwordFreeDailyMinor": huge,
            "hardLimitPerPaymentMinor": huge, "hardLimitDailyMinor": huge,
        }))
        .send()
        .await
        .with_context(|| {
            format!(
                "cannot reach wallet {} at {} (is `paycode serve` running?)",
                wallet.name, wallet.url
            )
        })?
        .json()
        .await
        .context("creating the bench user")?;
    if created["result"]["resultStatus"] != "S" {
        bail!("creating the bench user failed: {}", created["result"]);
    }
    eprintln!(
        "provisioning {n_devices} devices for {user} at {} …",
        wallet.name
    );
    let provisioned: Value = http
        .post(format!("{}/admin/v1/users/{user}/devices", wallet.url))
        .bearer_auth(&token)
        .json(&json!({"count": n_devices}))
        .send()
        .await?
        .json()
        .await
        .context("provisioning devices")?;
    let devices: Vec<CodeMaterial> = provisioned["devices"]
        .as_array()
        .context("the wallet returned no devices")?
        .iter()
        .map(|d| {
            let m: DeviceMaterial = serde_json::from_value(d.clone())?;
            CodeMaterial::from_device_material(&m).map_err(|e| anyhow::anyhow!("{e}"))
        })
        .collect::<anyhow::Result<_>>()?;
    let devices = Arc::new(devices);

    eprintln!("measuring the signing floor …");
    let sig_per_s = signing_rate(&demo.merchant_private_key, Duration::from_secs(2)).await?;

    let client = SignedClient::new(
        &demo.client_id,
        Signer::new(PrivateKey::parse(&demo.merchant_private_key)?, 1),
        Some(PublicKey::parse(&demo.acquirer_public_key)?),
        Duration::from_secs(30),
    );
    let targets = args.targets(&demo);
    let next = Arc::new(AtomicUsize::new(0));
    let run_id = chrono::Utc::now().format("%H%M%S").to_string();
    eprintln!(
        "running {} clients for {} s against {} …",
        args.clients,
        args.duration_s,
        targets.join(", ")
    );
    let deadline = Instant::now() + Duration::from_secs(args.duration_s);
    let started = Instant::now();
    let interval = Arc::new(watch::Interval::default());
    let sampler = args.sample_every_s.map(|every| {
        tokio::spawn(watch::sample(
            http.clone(),
            targets[0].clone(),
            Duration::from_secs(every),
            deadline,
            interval.clone(),
        ))
    });
    let (rate, clients) = (args.rate, args.clients);
    let mut tasks = Vec::new();
    for k in 0..args.clients {
        let (client, url, next, devices, demo, run_id, interval) = (
            client.clone(),
            format!("{}/ams/api/v1/payments/pay", targets[k % targets.len()]),
            next.clone(),
            devices.clone(),
            demo.clone(),
            run_id.clone(),
            interval.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            // Without --rate every device pays once; with it, this client's own devices
            // (k, k + clients, ...) take turns, each remembering what it showed.
            let mine: Vec<usize> = (k..devices.len()).step_by(clients).collect();
            let mut shown_before = vec![CodeDisplay::default(); mine.len()];
            let mut turn = 0usize;
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let (device, display) = match rate {
                    None => match devices.get(i) {
                        Some(d) => (d, CodeDisplay::default()),
                        None => break,
                    },
                    Some(rate) => {
                        let due = started + Duration::from_secs_f64(i as f64 / rate);
                        if due >= deadline {
                            break;
                        }
                        tokio::time::sleep_until(due.into()).await;
                        turn += 1;
                        let slot = turn % mine.len();
                        (&devices[mine[slot]], shown_before[slot])
                    }
                };
                let now_s = chrono::Utc::now().timestamp() as u64;
                let Ok((shown, display)) = display.next(device, now_s) else { break };
                if rate.is_some() {
                    shown_before[turn % mine.len()] = display;
                }
                let code = shown.digits;
                let request_id = format!("BENCH-{run_id}-{i}");
                let body = json!({
                    "productCode": "IN_STORE_PAYMENT",
                    "paymentRequestId": request_id,
                    "paymentAmount": {"currency": demo.currency, "value": amount.amount_minor().to_string()},
                    "paymentMethod": {"paymentMethodType": "CONNECT_WALLET", "paymentMethodId": code},
                    "paymentFactor": {"inStorePaymentScenario": "PaymentCode"},
                    "order": {"orderDescription": "bench", "merchant": {
                        "referenceMerchantId": demo.reference_merchant_id, "merchantName": demo.merchant_name,
                        "merchantMCC": demo.merchant_mcc, "store": {"referenceStoreId": demo.reference_store_id,
                        "storeName": demo.store_name, "storeMCC": demo.merchant_mcc}}}
                });
                let t0 = Instant::now();
                let (code, status) = match client.post::<Value, Value>(&url, &body).await {
                    Ok(v) => (
                        v["result"]["resultCode"].as_str().unwrap_or("NO_RESULT").to_string(),
                        v["result"]["resultStatus"].as_str().and_then(|s| s.chars().next()).unwrap_or('-'),
                    ),
                    Err(e) => (format!("transport: {}", e.to_string().chars().take(60).collect::<String>()), '-'),
                };
                interval.add(t0.elapsed(), code == "SUCCESS");
                samples.push(Sample { latency: t0.elapsed(), code, status, request_id: Some(request_id) });
            }
            samples
        }));
    }
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let watched = match sampler {
        Some(s) => Some(s.await?),
        None => None,
    };
    if let Some(path) = &args.record {
        watch::write_record(path, &user, amount, &samples)?;
    }
    let inquiries = if args.inquiry {
        let paid: Vec<String> = samples
            .iter()
            .filter(|s| s.code == "SUCCESS")
            .filter_map(|s| s.request_id.clone())
            .collect();
        Some(inquire(&args, &demo, &client, paid, Seeded::load(data_dir)).await?)
    } else {
        None
    };
    println!(
        "paycode bench: {} clients, {:.1} s, amount {amount}, {} acquirer process(es)",
        args.clients,
        elapsed,
        targets.len()
    );
    report("payments", &samples, elapsed, sig_per_s, 3);
    if let Some((inquiry_samples, inquiry_elapsed, n_seeded)) = &inquiries {
        println!(
            "inquiry: {} clients, {inquiry_elapsed:.1} s, {} of the inquired payments seeded",
            args.clients,
            if *n_seeded { "half" } else { "none" }
        );
        report("inquiries", inquiry_samples, *inquiry_elapsed, sig_per_s, 1);
    }
    println!("signing          {sig_per_s:.0} RSA-2048 signatures/s on all cores");
    if let Some(w) = &watched {
        w.print_summary();
    }
    // With --rate devices take turns, so running through them all is expected.
    if args.rate.is_none() && samples.len() >= devices.len() {
        eprintln!(
            "note: every provisioned device was used; pass a larger --devices for a longer run"
        );
    }
    Ok(())
}

/// The inquiry phase: `--clients` loops of signed `inquiryPayment` for `--duration-s`, by
/// request id, alternating between `paid` and seeded payments (when there are any); returns
/// the samples, the elapsed seconds and whether seeded payments were inquired.
async fn inquire(
    args: &BenchArgs,
    demo: &DemoFile,
    client: &SignedClient,
    paid: Vec<String>,
    seeded: Option<Seeded>,
) -> anyhow::Result<(Vec<Sample>, f64, bool)> {
    if paid.is_empty() {
        bail!("no payment succeeded, so there is nothing to inquire");
    }
    let targets = args.targets(demo);
    let with_seeded = seeded.is_some();
    let (paid, seeded) = (Arc::new(paid), Arc::new(seeded));
    let next = Arc::new(AtomicUsize::new(0));
    eprintln!(
        "inquiring with {} clients for {} s …",
        args.clients, args.duration_s
    );
    let deadline = Instant::now() + Duration::from_secs(args.duration_s);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..args.clients {
        let (client, url, next, paid, seeded) = (
            client.clone(),
            format!(
                "{}/ams/api/v1/payments/inquiryPayment",
                targets[k % targets.len()]
            ),
            next.clone(),
            paid.clone(),
            seeded.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                // A multiplicative hash spreads consecutive calls over the whole list.
                let x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 16;
                let request_id = match seeded.as_ref() {
                    Some(s) if i % 2 == 1 => s.request_id(x),
                    _ => paid[(x % paid.len() as u64) as usize].clone(),
                };
                let body = json!({ "paymentRequestId": request_id });
                let t0 = Instant::now();
                let code = match client.post::<Value, Value>(&url, &body).await {
                    // The inquiry succeeded when it found the payment and it was paid.
                    Ok(v) if v["result"]["resultCode"] == "SUCCESS" => v["paymentStatus"]
                        .as_str()
                        .map_or("NO_STATUS".to_string(), |status| match status {
                            "SUCCESS" | "FAIL" | "CANCELLED" => "SUCCESS".to_string(),
                            other => format!("status {other}"),
                        }),
                    Ok(v) => v["result"]["resultCode"]
                        .as_str()
                        .unwrap_or("NO_RESULT")
                        .to_string(),
                    Err(e) => format!(
                        "transport: {}",
                        e.to_string().chars().take(60).collect::<String>()
                    ),
                };
                samples.push(Sample {
                    latency: t0.elapsed(),
                    code,
                    status: '-',
                    request_id: None,
                });
            }
            samples
        }));
    }
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await?);
    }
    Ok((samples, started.elapsed().as_secs_f64(), with_seeded))
}
