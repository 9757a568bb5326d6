//! Realtime figures for `bench/run.sh` (`ONLY=realtime`), measured from
//! outside through real sockets:
//!
//! - `sockets`: N sockets with one watch each held open; the server's
//!   resident memory before and after (`--pid`), and one write reaching
//!   all N (every socket is alive, not just open).
//! - `latency`: one watcher; sequential writes; from each write's 2xx to
//!   its change arriving (0 when the change came first), p50/p99.
//! - `fanout`: N watchers of one shared collection; per write, from its
//!   2xx until the last watcher has it; then writers as fast as they go,
//!   and the changes delivered per second over all watchers.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    Sockets,
    Latency,
    Fanout,
}

#[derive(Parser)]
struct Args {
    #[arg(long, value_enum)]
    mode: Mode,
    /// Where watchers connect: one URL, or several comma-separated (they
    /// are used in turn).
    #[arg(long)]
    url: String,
    /// Where writes go (default: the first of --url).
    #[arg(long)]
    write_url: Option<String>,
    /// Sockets (sockets, fanout).
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// Writes measured one by one (latency, fanout).
    #[arg(long, default_value_t = 200)]
    rounds: usize,
    /// Seconds of writes as fast as they go (fanout).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// The server's process ids, comma-separated (sockets: its RSS).
    #[arg(long, default_value = "")]
    pid: String,
    /// The collection (shared for fanout: configure it public_read).
    #[arg(long, default_value = "rt")]
    collection: String,
    /// Printed with the figures.
    #[arg(long, default_value = "")]
    label: String,
    /// Seconds the sockets stay open after their figures are printed
    /// (sockets): for measuring other traffic while they watch.
    #[arg(long, default_value_t = 0)]
    hold: u64,
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

/// Resident memory of the processes, MB.
fn rss_mb(pids: &str) -> f64 {
    pids.split(',')
        .filter(|p| !p.is_empty())
        .map(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("VmRSS:"))
                        .and_then(|l| l.split_whitespace().nth(1))
                        .and_then(|kb| kb.parse::<f64>().ok())
                })
                .unwrap_or(0.0)
                / 1024.0
        })
        .sum()
}

/// A document id and when its change arrived on some socket.
type Arrival = (String, Instant);

/// Opens a socket, authenticates, watches, waits for the `init`; then
/// reports every change's document ids on `arrivals`.
async fn watcher(
    url: String,
    token: String,
    collection: String,
    arrivals: mpsc::UnboundedSender<Arrival>,
    opened: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let ws_url = format!("{}/v1/watch", url.replacen("http", "ws", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await?;
    ws.send(Message::Text(
        json!({"type": "auth", "access_token": token})
            .to_string()
            .into(),
    ))
    .await?;
    ws.send(Message::Text(
        json!({"type": "watch", "id": "w", "collection": collection, "limit": 1})
            .to_string()
            .into(),
    ))
    .await?;
    let mut ready = false;
    while let Some(frame) = ws.next().await {
        let Message::Text(text) = frame? else {
            continue;
        };
        let m: Value = serde_json::from_str(text.as_str())?;
        match m["type"].as_str() {
            Some("init") if !ready => {
                ready = true;
                opened.fetch_add(1, Ordering::Relaxed);
            }
            Some("change") => {
                let now = Instant::now();
                for c in m["changes"].as_array().into_iter().flatten() {
                    if c["op"] == "add"
                        && let Some(id) = c["doc_id"].as_str()
                    {
                        let _ = arrivals.send((id.to_owned(), now));
                    }
                }
            }
            Some("error") => bail!("the server refused the watch: {m}"),
            _ => {}
        }
    }
    Ok(())
}

/// Opens `count` watchers over `urls` in turn, 100 at a time; resolves
/// once every one has its `init`.
async fn open_watchers(
    urls: &[String],
    token: &str,
    collection: &str,
    count: usize,
) -> anyhow::Result<(mpsc::UnboundedReceiver<Arrival>, Duration)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let opened = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    for i in 0..count {
        let (url, token, collection, tx, counter) = (
            urls[i % urls.len()].clone(),
            token.to_owned(),
            collection.to_owned(),
            tx.clone(),
            opened.clone(),
        );
        tokio::spawn(async move {
            if let Err(e) = watcher(url, token, collection, tx, counter).await {
                eprintln!("a watcher ended: {e}");
            }
        });
        // At most 100 handshakes in flight.
        while i as u64 + 1 - opened.load(Ordering::Relaxed) > 100 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while (opened.load(Ordering::Relaxed) as usize) < count {
        if Instant::now() > deadline {
            bail!(
                "only {} of {count} watchers opened",
                opened.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok((rx, started.elapsed()))
}

async fn write(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    collection: &str,
    n: usize,
) -> anyhow::Result<(String, Instant)> {
    let r: Value = http
        .post(format!("{url}/v1/data/{collection}"))
        .bearer_auth(token)
        .json(&json!({"n": n}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let at = Instant::now();
    Ok((r["id"].as_str().context("no id")?.to_owned(), at))
}

/// Waits until `want` arrivals of `id` were seen (arrivals of other ids
/// are kept in `early`); the last arrival's time.
async fn arrivals_of(
    rx: &mut mpsc::UnboundedReceiver<Arrival>,
    early: &mut HashMap<String, (usize, Instant)>,
    id: &str,
    want: usize,
) -> anyhow::Result<Instant> {
    loop {
        if let Some((n, last)) = early.get(id)
            && *n >= want
        {
            let last = *last;
            early.remove(id);
            return Ok(last);
        }
        let (got, at) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .context("a change did not arrive within 30 s")?
            .context("every watcher ended")?;
        let e = early.entry(got).or_insert((0, at));
        e.0 += 1;
        e.1 = e.1.max(at);
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    wechat_miniapp::ensure_tls_provider();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let urls: Vec<String> = args.url.split(',').map(str::to_owned).collect();
    let write_url = args.write_url.clone().unwrap_or_else(|| urls[0].clone());
    let run = std::process::id();
    let token = login(&http, &write_url, &format!("bench-rt-{run}")).await?;
    let label = if args.label.is_empty() {
        format!("{:?}", args.mode).to_lowercase()
    } else {
        args.label.clone()
    };
    match args.mode {
        Mode::Sockets => {
            let before = rss_mb(&args.pid);
            let (mut rx, took) = open_watchers(&urls, &token, &args.collection, args.count).await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let after = rss_mb(&args.pid);
            let (id, ok) = write(&http, &write_url, &token, &args.collection, 0).await?;
            let last = arrivals_of(&mut rx, &mut HashMap::new(), &id, args.count).await?;
            println!(
                "{}",
                json!({
                    "label": label,
                    "sockets": args.count,
                    "open_seconds": took.as_secs_f64(),
                    "rss_before_mb": before,
                    "rss_after_mb": after,
                    "kb_per_socket": (after - before) * 1024.0 / args.count as f64,
                    "one_write_to_all_ms": last.saturating_duration_since(ok).as_secs_f64() * 1000.0,
                })
            );
            tokio::time::sleep(Duration::from_secs(args.hold)).await;
        }
        Mode::Latency => {
            let (mut rx, _) =
                open_watchers(&urls[urls.len() - 1..], &token, &args.collection, 1).await?;
            let mut early = HashMap::new();
            let mut ms = Vec::with_capacity(args.rounds);
            for n in 0..args.rounds {
                let (id, ok) = write(&http, &write_url, &token, &args.collection, n).await?;
                let at = arrivals_of(&mut rx, &mut early, &id, 1).await?;
                ms.push(at.saturating_duration_since(ok).as_secs_f64() * 1000.0);
            }
            ms.sort_by(f64::total_cmp);
            println!(
                "{}",
                json!({
                    "label": label,
                    "writes": args.rounds,
                    "p50_ms": percentile(&ms, 0.5),
                    "p99_ms": percentile(&ms, 0.99),
                    "max_ms": percentile(&ms, 1.0),
                })
            );
        }
        Mode::Fanout => {
            let (mut rx, _) = open_watchers(&urls, &token, &args.collection, args.count).await?;
            let mut early = HashMap::new();
            let mut ms = Vec::with_capacity(args.rounds);
            for n in 0..args.rounds {
                let (id, ok) = write(&http, &write_url, &token, &args.collection, n).await?;
                let last = arrivals_of(&mut rx, &mut early, &id, args.count).await?;
                ms.push(last.saturating_duration_since(ok).as_secs_f64() * 1000.0);
            }
            ms.sort_by(f64::total_cmp);
            // Saturation: 8 writers for `seconds`; deliveries counted.
            let delivered = Arc::new(AtomicU64::new(0));
            let counting = {
                let delivered = delivered.clone();
                tokio::spawn(async move {
                    while rx.recv().await.is_some() {
                        delivered.fetch_add(1, Ordering::Relaxed);
                    }
                })
            };
            let writes = Arc::new(AtomicU64::new(0));
            // Counted from before the first write.
            let started = delivered.load(Ordering::Relaxed);
            let began = Instant::now();
            let end = began + Duration::from_secs(args.seconds);
            let mut writers = Vec::new();
            for w in 0..8 {
                let (http, url, token, collection, writes) = (
                    http.clone(),
                    write_url.clone(),
                    token.clone(),
                    args.collection.clone(),
                    writes.clone(),
                );
                writers.push(tokio::spawn(async move {
                    let mut n = 0;
                    while Instant::now() < end {
                        if write(&http, &url, &token, &collection, w * 1_000_000 + n)
                            .await
                            .is_ok()
                        {
                            writes.fetch_add(1, Ordering::Relaxed);
                        }
                        n += 1;
                    }
                }));
            }
            for w in writers {
                w.await?;
            }
            // Until the last changes have arrived (no new one for 500 ms).
            let mut seen = delivered.load(Ordering::Relaxed);
            let mut last_at = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let now = delivered.load(Ordering::Relaxed);
                if now != seen {
                    seen = now;
                    last_at = Instant::now();
                } else if last_at.elapsed() > Duration::from_millis(500) {
                    break;
                }
            }
            let total = seen - started;
            let spent = last_at.duration_since(began).as_secs_f64();
            counting.abort();
            let wrote = writes.load(Ordering::Relaxed);
            println!(
                "{}",
                json!({
                    "label": label,
                    "watchers": args.count,
                    "one_write_to_last_p50_ms": percentile(&ms, 0.5),
                    "one_write_to_last_max_ms": percentile(&ms, 1.0),
                    "saturation_writes_per_s": wrote as f64 / args.seconds as f64,
                    "saturation_deliveries_per_s": total as f64 / spent,
                    "deliveries_expected": wrote * args.count as u64,
                    "deliveries_seen": total,
                })
            );
        }
    }
    Ok(())
}
