//! `paycode bench --sample-every-s S`: what a soak watches. Every interval it prints the
//! payments and their latency beside the acquirer's resident memory, open file descriptors and
//! outbox depth (read from its `/metrics`), and at the end compares the first quarter of the
//! run with the last, so that growth shows as a number rather than a feeling.

use crate::bench::{Sample, percentile};
use anyhow::Context;
use paycode_core::Money;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the payment loops report between two samples.
#[derive(Default)]
pub struct Interval {
    inner: Mutex<(Vec<Duration>, usize)>,
}

impl Interval {
    pub fn add(&self, latency: Duration, ok: bool) {
        let mut g = self.inner.lock().expect("interval lock");
        if ok {
            g.0.push(latency);
        } else {
            g.1 += 1;
        }
    }

    fn take(&self) -> (Vec<Duration>, usize) {
        std::mem::take(&mut *self.inner.lock().expect("interval lock"))
    }
}

/// One interval's figures.
#[derive(Clone, Copy)]
struct Point {
    at_s: f64,
    paid_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: usize,
    rss_mib: Option<f64>,
    fds: Option<f64>,
    outbox: Option<f64>,
}

/// One watched figure of a sample, if it was reported.
type Field = fn(&Point) -> Option<f64>;

pub struct Watched {
    points: Vec<Point>,
}

/// The value of an unlabelled metric in Prometheus text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == name).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Samples every `every` until `deadline`.
pub async fn sample(
    http: reqwest::Client,
    acquirer_url: String,
    every: Duration,
    deadline: Instant,
    interval: std::sync::Arc<Interval>,
) -> Watched {
    let started = Instant::now();
    let mut points = Vec::new();
    println!(
        "{:>7} {:>8} {:>7} {:>7} {:>6} {:>8} {:>5} {:>6}",
        "t s", "paid/s", "p50 ms", "p99 ms", "errors", "rss MiB", "fds", "outbox"
    );
    let mut last = Instant::now();
    while last + every <= deadline {
        tokio::time::sleep_until((last + every).into()).await;
        let (mut ok, errors) = interval.take();
        let span = last.elapsed().as_secs_f64();
        last = Instant::now();
        ok.sort();
        let metrics = match http
            .get(format!("{acquirer_url}/metrics"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let p = Point {
            at_s: started.elapsed().as_secs_f64(),
            paid_per_s: ok.len() as f64 / span,
            p50_ms: ms(percentile(&ok, 0.50)),
            p99_ms: ms(percentile(&ok, 0.99)),
            errors,
            rss_mib: metric(&metrics, "process_resident_memory_bytes").map(|b| b / 1048576.0),
            fds: metric(&metrics, "process_open_fds"),
            outbox: metric(&metrics, "paycode_outbox_pending"),
        };
        let opt = |v: Option<f64>, prec: usize| v.map_or("-".into(), |v| format!("{v:.prec$}"));
        println!(
            "{:>7.0} {:>8.1} {:>7.1} {:>7.1} {:>6} {:>8} {:>5} {:>6}",
            p.at_s,
            p.paid_per_s,
            p.p50_ms,
            p.p99_ms,
            p.errors,
            opt(p.rss_mib, 1),
            opt(p.fds, 0),
            opt(p.outbox, 0)
        );
        points.push(p);
    }
    Watched { points }
}

impl Watched {
    /// First quarter against last quarter of the samples, for each watched figure.
    pub fn print_summary(&self) {
        let n = self.points.len();
        if n < 4 {
            println!("watch            too few samples to compare ({n}); run longer");
            return;
        }
        let q = n / 4;
        let (first, last) = (&self.points[..q], &self.points[n - q..]);
        let mean = |ps: &[Point], f: Field| {
            let v: Vec<f64> = ps.iter().filter_map(f).collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        };
        println!("watch            first quarter → last quarter ({n} samples)");
        let rows: [(&str, Field); 6] = [
            ("paid/s", |p| Some(p.paid_per_s)),
            ("p50 ms", |p| Some(p.p50_ms)),
            ("p99 ms", |p| Some(p.p99_ms)),
            ("rss MiB", |p| p.rss_mib),
            ("open fds", |p| p.fds),
            ("outbox", |p| p.outbox),
        ];
        for (name, f) in rows {
            match (mean(first, f), mean(last, f)) {
                (Some(a), Some(b)) => {
                    let change = if a.abs() > f64::EPSILON {
                        format!("{:+.1}%", 100.0 * (b - a) / a)
                    } else {
                        format!("{:+.1}", b - a)
                    };
                    println!("  {name:<14} {a:>9.1} → {b:>9.1}  {change}");
                }
                _ => println!("  {name:<14} not reported"),
            }
        }
        let errors: usize = self.points.iter().map(|p| p.errors).sum();
        println!("  {:<14} {errors}", "errors");
    }
}

/// `--record FILE`: a header naming the bench user and amount, then one line per payment
/// sent: its request id, the answer's status (`S`, `F`, `U`, `-` for none) and its result code
/// (or `transport: …`).
pub fn write_record(
    path: &Path,
    user: &str,
    amount: Money,
    samples: &[Sample],
) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    writeln!(
        out,
        "# paycode bench record: user {user} amount {} {}",
        amount.amount_minor(),
        amount.currency()
    )?;
    for s in samples {
        if let Some(id) = &s.request_id {
            writeln!(out, "{id} {} {}", s.status, s.code.replace('\n', " "))?;
        }
    }
    out.flush()?;
    out.into_inner()?.sync_all()?;
    Ok(())
}
