//! A closed-loop load generator: `--connections` workers each send one
//! request, wait for the answer, and send the next, for `--seconds`. It
//! prints one line: requests per second and latency percentiles.
//!
//! Scenarios:
//! - `healthz`: `GET /healthz` (the baseline every figure is compared with)
//! - `login`: `POST /v1/login` with a fresh code per request (the simulator
//!   must run with `--accept-any-code`)
//! - `me`: `GET /v1/me` with a token per worker
//! - `create`: `POST /v1/data/bench` of a small document, a user per worker
//! - `get`: `GET /v1/data/bench/{id}` of a document per worker
//! - `list`: `GET /v1/data/bench?limit=20`, each worker's user holding 25
//! - `gateway`: `GET {path}` with a token (a gateway route, or a query such
//!   as `/v1/data/posts?where=…`; `--login-code` picks the user)
//! - `fsync`: not HTTP: how many `write + fdatasync` of 4 KiB the disk under
//!   `--dir` does per second, one at a time (the cap on a write path that
//!   syncs per request)

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use serde_json::{Value, json};

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
enum Scenario {
    Healthz,
    Login,
    Me,
    Create,
    Get,
    List,
    /// `GET {url}{path}` with a user's access token (a gateway route).
    Gateway,
    /// `GET {url}{path}` with no token (the service behind the gateway, directly).
    Plain,
    /// The seed pattern's login: `POST {url}/login {"code"}` (a peer in bench/peers).
    PeerLogin,
    /// The seed pattern's write: `POST {url}/api/data` with the client's openid.
    PeerWrite,
    Fsync,
}

#[derive(Parser)]
struct Args {
    /// What to measure.
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// The service's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Concurrent workers (closed loop).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// How long to measure, after a one-second warm-up.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// For `gateway` and `plain`: the path to request.
    #[arg(long, default_value = "/api/ping")]
    path: String,
    /// For `fsync`: where to write.
    #[arg(long, default_value = ".")]
    dir: std::path::PathBuf,
    /// Log every worker in with this code (so as one user: the filled
    /// users of bench/fill answer to `fill-N`) instead of a fresh user each.
    #[arg(long)]
    login_code: Option<String>,
    /// A label for the output line.
    #[arg(long, default_value = "")]
    label: String,
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

fn fsync_rate(dir: &std::path::Path, seconds: u64) -> anyhow::Result<()> {
    let path = dir.join("loadgen-fsync.tmp");
    let mut file =
        std::fs::File::create(&path).with_context(|| format!("create {}", path.display()))?;
    let block = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut n = 0u64;
    let started = Instant::now();
    while Instant::now() < deadline {
        file.write_all(&block)?;
        file.sync_data()?;
        n += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    drop(file);
    let _ = std::fs::remove_file(&path);
    println!(
        "fsync            {:>9.0} syncs/s  (write 4 KiB + fdatasync, one at a time)",
        n as f64 / elapsed
    );
    Ok(())
}

/// The document the data scenarios write: the classic example, numbered.
fn small_document(n: u64) -> Value {
    json!({"name": "张三", "age": "20", "n": n})
}

async fn login(http: &reqwest::Client, url: &str, code: &str) -> anyhow::Result<String> {
    let r: Value = http
        .post(format!("{url}/v1/login"))
        .json(&json!({"code": code}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    r["access_token"]
        .as_str()
        .map(str::to_owned)
        .context("no access_token")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.scenario == Scenario::Fsync {
        return fsync_rate(&args.dir, args.seconds);
    }
    wechat_miniapp::ensure_tls_provider();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections)
        .timeout(Duration::from_secs(30))
        .build()?;
    let run_id = std::process::id();
    let mut tokens = Vec::new();
    let mut doc_ids = Vec::new();
    if matches!(
        args.scenario,
        Scenario::Me | Scenario::Create | Scenario::Get | Scenario::List | Scenario::Gateway
    ) {
        for w in 0..args.connections {
            let code = args
                .login_code
                .clone()
                .unwrap_or_else(|| format!("bench-user-{run_id}-{w}"));
            let token = login(&http, &args.url, &code).await?;
            let documents = match args.scenario {
                Scenario::Get => 1,
                Scenario::List => 25,
                _ => 0,
            };
            for n in 0..documents {
                let doc: Value = http
                    .post(format!("{}/v1/data/bench", args.url))
                    .bearer_auth(&token)
                    .json(&small_document(n))
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                doc_ids.push(doc["id"].as_str().context("no id")?.to_owned());
            }
            tokens.push(token);
        }
    }
    let tokens = Arc::new(tokens);
    let doc_ids = Arc::new(doc_ids);
    let url = Arc::new(args.url.clone());
    let path = Arc::new(args.path.clone());
    let counter = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let warmup = Instant::now() + Duration::from_secs(1);
    let end = warmup + Duration::from_secs(args.seconds);
    let mut workers = Vec::new();
    for w in 0..args.connections {
        let doc_ids = doc_ids.clone();
        let (http, url, tokens, counter, errors) = (
            http.clone(),
            url.clone(),
            tokens.clone(),
            counter.clone(),
            errors.clone(),
        );
        let scenario = args.scenario;
        let path = path.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies: Vec<u32> = Vec::with_capacity(100_000);
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let started = Instant::now();
                let result = match scenario {
                    Scenario::Healthz => http.get(format!("{url}/healthz")).send().await,
                    Scenario::Me => {
                        http.get(format!("{url}/v1/me"))
                            .bearer_auth(&tokens[w])
                            .send()
                            .await
                    }
                    Scenario::Login => {
                        let n = counter.fetch_add(1, Ordering::Relaxed);
                        http.post(format!("{url}/v1/login"))
                            .json(&json!({"code": format!("bench-{run_id}-{n}")}))
                            .send()
                            .await
                    }
                    Scenario::Create => {
                        let n = counter.fetch_add(1, Ordering::Relaxed);
                        http.post(format!("{url}/v1/data/bench"))
                            .bearer_auth(&tokens[w])
                            .json(&small_document(n))
                            .send()
                            .await
                    }
                    Scenario::Get => {
                        http.get(format!("{url}/v1/data/bench/{}", doc_ids[w]))
                            .bearer_auth(&tokens[w])
                            .send()
                            .await
                    }
                    Scenario::List => {
                        http.get(format!("{url}/v1/data/bench?limit=20"))
                            .bearer_auth(&tokens[w])
                            .send()
                            .await
                    }
                    Scenario::Gateway => {
                        http.get(format!("{url}{path}"))
                            .bearer_auth(&tokens[w])
                            .send()
                            .await
                    }
                    Scenario::Plain => http.get(format!("{url}{path}")).send().await,
                    Scenario::PeerLogin => {
                        let n = counter.fetch_add(1, Ordering::Relaxed);
                        http.post(format!("{url}/login"))
                            .json(&json!({"code": format!("bench-{run_id}-{n}")}))
                            .send()
                            .await
                    }
                    Scenario::PeerWrite => {
                        let n = counter.fetch_add(1, Ordering::Relaxed);
                        let mut doc = small_document(n);
                        doc["openid"] = json!(format!("o-bench-{w}"));
                        http.post(format!("{url}/api/data")).json(&doc).send().await
                    }
                    Scenario::Fsync => unreachable!(),
                };
                let ok = match result {
                    Ok(resp) => {
                        let ok = resp.status().is_success();
                        let _ = resp.bytes().await;
                        ok
                    }
                    Err(_) => false,
                };
                if started >= warmup {
                    if ok {
                        latencies
                            .push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await?);
    }
    all.sort_unstable();
    let errors = errors.load(Ordering::Relaxed);
    let rps = all.len() as f64 / args.seconds as f64;
    println!(
        "{:<16} {:>9.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>8.2} ms  errors {}",
        if args.label.is_empty() {
            format!("{:?}", args.scenario).to_lowercase()
        } else {
            args.label.clone()
        },
        rps,
        percentile(&all, 0.50),
        percentile(&all, 0.99),
        percentile(&all, 1.0),
        errors
    );
    if all.is_empty() {
        bail!("no request succeeded");
    }
    Ok(())
}
