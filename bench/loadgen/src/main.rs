//! A closed-loop load generator: `--connections` workers each send one
//! request, wait for the answer, and send the next, for `--seconds`. It
//! prints one line: requests per second and latency percentiles. Like wrk,
//! each worker holds one HTTP/1 connection and `--threads` event loops share
//! them, so the generator takes little of the machine it measures.
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
//! - `upload`: `POST /v1/files`, a `--file-bytes` PNG as `wx.uploadFile`
//!   sends it (multipart, `purpose=image`), a user per worker
//! - `peer-upload`: the same body to `POST /upload` with no token (the
//!   express + multer peer of bench/peers)
//! - `fsync`: not HTTP: how many `write + fdatasync` of 4 KiB the disk under
//!   `--dir` does per second, one at a time (the cap on a write path that
//!   syncs per request)

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
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
    /// `POST {url}/v1/files`: a `--file-bytes` PNG, multipart, with a token.
    Upload,
    /// `POST {url}/upload`: the same multipart body, no token (express + multer).
    PeerUpload,
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
    /// Threads sending requests, each with its share of the connections
    /// (wrk's `-t`; the issue's figures used 2).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// For `upload` and `peer-upload`: the file's size in bytes.
    #[arg(long, default_value_t = 200 * 1024)]
    file_bytes: usize,
}

/// The boundary of the upload scenarios' bodies (the shape WeChat's clients use).
const BOUNDARY: &str = "----WebKitFormBoundaryWxAuthBench01";

/// A multipart body as `wx.uploadFile` sends it: `purpose=image`, then a
/// PNG of `size` bytes (its signature and header chunk, then filler).
fn upload_body(size: usize) -> Bytes {
    let mut file = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    file.extend((0..size.saturating_sub(file.len())).map(|i| (i % 251) as u8));
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nimage\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"tmp_bench.png\"\r\n\
         Content-Type: image/png\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&file);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    Bytes::from(body)
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

/// What every connection sends: the scenario and, per worker, the path and
/// token it uses, made once so the measured loop only numbers bodies.
struct Plan {
    scenario: Scenario,
    /// `host:port` to connect to (port 80 when the URL has none).
    authority: String,
    /// The URL's authority as written, for the `Host` header.
    host: HeaderValue,
    run_id: u32,
    /// Per worker: the path it requests.
    paths: Vec<String>,
    /// Per worker: `Bearer …`, for the scenarios that send a token.
    bearer: Vec<Option<HeaderValue>>,
    /// The upload scenarios' body (shared, not copied, per request).
    upload: Bytes,
    counter: AtomicU64,
    errors: AtomicU64,
}

impl Plan {
    fn new(
        args: &Args,
        run_id: u32,
        tokens: &[String],
        doc_ids: Vec<String>,
    ) -> anyhow::Result<Self> {
        let uri: Uri = args
            .url
            .parse()
            .with_context(|| format!("--url {:?}", args.url))?;
        if uri.scheme_str() != Some("http") || !matches!(uri.path(), "" | "/") {
            bail!(
                "--url must be http://host:port (no path), not {:?}",
                args.url
            );
        }
        let authority = uri.authority().context("--url has no host")?;
        let authority = match authority.port_u16() {
            Some(_) => authority.to_string(),
            None => format!("{authority}:80"),
        };
        let path = |w: usize| -> String {
            match args.scenario {
                Scenario::Healthz => "/healthz".into(),
                Scenario::Login => "/v1/login".into(),
                Scenario::Me => "/v1/me".into(),
                Scenario::Create => "/v1/data/bench".into(),
                Scenario::Get => format!("/v1/data/bench/{}", doc_ids[w]),
                Scenario::List => "/v1/data/bench?limit=20".into(),
                Scenario::Gateway | Scenario::Plain => args.path.clone(),
                Scenario::PeerLogin => "/login".into(),
                Scenario::PeerWrite => "/api/data".into(),
                Scenario::Upload => "/v1/files".into(),
                Scenario::PeerUpload => "/upload".into(),
                Scenario::Fsync => String::new(),
            }
        };
        let bearer = (0..args.connections)
            .map(|w| match tokens.get(w) {
                Some(t) => HeaderValue::try_from(format!("Bearer {t}"))
                    .map(Some)
                    .context("token is not a header value"),
                None => Ok(None),
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            scenario: args.scenario,
            host: HeaderValue::try_from(uri.authority().context("--url has no host")?.as_str())?,
            authority,
            run_id,
            paths: (0..args.connections).map(path).collect(),
            bearer,
            upload: if matches!(args.scenario, Scenario::Upload | Scenario::PeerUpload) {
                upload_body(args.file_bytes)
            } else {
                Bytes::new()
            },
            counter: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        })
    }

    /// Worker `w`'s next request.
    fn request(&self, w: usize) -> anyhow::Result<Request<Full<Bytes>>> {
        if matches!(self.scenario, Scenario::Upload | Scenario::PeerUpload) {
            let mut request = Request::builder()
                .method(Method::POST)
                .uri(self.paths[w].as_str())
                .header(header::HOST, self.host.clone())
                .header(
                    header::CONTENT_TYPE,
                    format!("multipart/form-data; boundary={BOUNDARY}"),
                );
            if let Some(bearer) = &self.bearer[w] {
                request = request.header(header::AUTHORIZATION, bearer.clone());
            }
            return Ok(request.body(Full::new(self.upload.clone()))?);
        }
        let body = match self.scenario {
            Scenario::Login | Scenario::PeerLogin => {
                let n = self.counter.fetch_add(1, Ordering::Relaxed);
                Some(format!(r#"{{"code":"bench-{}-{n}"}}"#, self.run_id).into_bytes())
            }
            Scenario::Create => {
                let n = self.counter.fetch_add(1, Ordering::Relaxed);
                Some(serde_json::to_vec(&small_document(n))?)
            }
            Scenario::PeerWrite => {
                let n = self.counter.fetch_add(1, Ordering::Relaxed);
                let mut doc = small_document(n);
                doc["openid"] = json!(format!("o-bench-{w}"));
                Some(serde_json::to_vec(&doc)?)
            }
            _ => None,
        };
        let mut request = Request::builder()
            .method(if body.is_some() {
                Method::POST
            } else {
                Method::GET
            })
            .uri(self.paths[w].as_str())
            .header(header::HOST, self.host.clone());
        if let Some(bearer) = &self.bearer[w] {
            request = request.header(header::AUTHORIZATION, bearer.clone());
        }
        Ok(match body {
            Some(body) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body)))?,
            None => request.body(Full::new(Bytes::new()))?,
        })
    }
}

/// An HTTP/1 connection to the service; its driver runs as a task on this
/// thread's loop.
async fn connect(authority: &str) -> anyhow::Result<http1::SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(authority).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// One closed-loop worker: a request, its whole answer, the next request,
/// until `end`. Latencies of successful requests after `warmup`, in µs. A
/// connection the server closed is opened again (that costs a request
/// nothing); a request that fails or is answered with an error counts as
/// an error.
async fn worker(plan: Arc<Plan>, w: usize, warmup: Instant, end: Instant) -> Vec<u32> {
    let mut latencies: Vec<u32> = Vec::with_capacity(100_000);
    let mut connection: Option<http1::SendRequest<Full<Bytes>>> = None;
    while Instant::now() < end {
        let sender = match &mut connection {
            Some(sender) if !sender.is_closed() => sender,
            _ => match connect(&plan.authority).await {
                Ok(sender) => connection.insert(sender),
                Err(_) => {
                    plan.errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        if sender.ready().await.is_err() {
            connection = None;
            continue;
        }
        let started = Instant::now();
        let ok = match plan.request(w) {
            Ok(request) => match sender.send_request(request).await {
                Ok(response) => {
                    let success = response.status().is_success();
                    response.into_body().collect().await.is_ok() && success
                }
                Err(_) => {
                    connection = None;
                    false
                }
            },
            Err(_) => false,
        };
        if started >= warmup {
            if ok {
                latencies.push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
            } else {
                plan.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    latencies
}

#[tokio::main(flavor = "current_thread")]
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
        Scenario::Me
            | Scenario::Create
            | Scenario::Get
            | Scenario::List
            | Scenario::Gateway
            | Scenario::Upload
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
    let plan = Arc::new(Plan::new(&args, run_id, &tokens, doc_ids)?);
    let warmup = Instant::now() + Duration::from_secs(1);
    let end = warmup + Duration::from_secs(args.seconds);
    // Like wrk: a few threads, each an event loop of its own holding its
    // share of the connections (no work stealing, no cross-thread wake-ups).
    let threads = args.threads.clamp(1, args.connections.max(1));
    let mut running = Vec::new();
    for t in 0..threads {
        let plan = plan.clone();
        let mine: Vec<usize> = (t..args.connections).step_by(threads).collect();
        running.push(std::thread::spawn(move || -> anyhow::Result<Vec<u32>> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let workers: Vec<_> = mine
                    .into_iter()
                    .map(|w| tokio::spawn(worker(plan.clone(), w, warmup, end)))
                    .collect();
                let mut latencies = Vec::new();
                for w in workers {
                    latencies.extend(w.await?);
                }
                Ok(latencies)
            })
        }));
    }
    let mut all = Vec::new();
    for t in running {
        let latencies = t
            .join()
            .map_err(|_| anyhow::anyhow!("a load thread panicked"))??;
        all.extend(latencies);
    }
    all.sort_unstable();
    let errors = plan.errors.load(Ordering::Relaxed);
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
