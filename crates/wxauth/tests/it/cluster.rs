//! Three `wxauth serve` processes on one PostgreSQL database and one Redis,
//! behind nginx (round robin), with the simulator as WeChat: what one
//! instance learns, all know.
//!
//! Needs WXAUTH_TEST_POSTGRES_URL, WXAUTH_TEST_REDIS_URL (the sign that
//! Redis is expected: each cluster runs a `redis-server` of its own, so the
//! Redis test can stop it) and nginx on PATH (`.ci/run` installs it).
//! Without them the tests say they skipped; under CI=true they fail.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use wechat_miniapp::OffsetClock;

use crate::app::*;
use crate::s3::S3Server;
use crate::spawn::{
    ConfigFile, Server, free_port, on_path, serve_command, skipped, spawn_serve, stop,
};

fn required(what: &str) -> bool {
    skipped(what);
    false
}

/// A `redis-server` of the test's own.
struct Redis {
    child: Option<Child>,
    port: u16,
}

impl Redis {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child: Some(child),
            port,
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// nginx in front of the instances, round robin.
struct Nginx {
    child: Child,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers too (SIGKILL would orphan them).
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// The balancer's configuration: the nginx block of docs/scale-out.md as
/// written, with this test's instances and port in place of its example
/// addresses, inside the process settings a test's nginx needs.
fn nginx_conf(port: u16, upstreams: &[String]) -> String {
    let doc = std::fs::read_to_string(crate::docs::repo().join("docs/scale-out.md")).unwrap();
    let (_, recipe) = crate::docs::blocks(&doc, "nginx")
        .into_iter()
        .next()
        .expect("docs/scale-out.md has an nginx block");
    let instances: Vec<u16> = upstreams
        .iter()
        .map(|u| u.rsplit(':').next().unwrap().parse().unwrap())
        .collect();
    with_ports(&recipe, port, &instances)
}

/// A recipe of docs/scale-out.md with free ports in place of its own:
/// `balancer` for 8080, `instances` for 8081, 8082, 8083.
fn with_ports(recipe: &str, balancer: u16, instances: &[u16]) -> String {
    let mut text = recipe.replace("8080", &balancer.to_string());
    for (example, port) in ["8081", "8082", "8083"].iter().zip(instances) {
        text = text.replace(example, &port.to_string());
    }
    // The example lists three instances; a cluster of fewer drops the rest.
    for example in ["8081", "8082", "8083"].iter().skip(instances.len()) {
        text = text
            .lines()
            .filter(|l| !l.contains(&format!("127.0.0.1:{example};")))
            .map(|l| format!("{l}\n"))
            .collect();
    }
    text
}

struct Cluster {
    sim: wechat_sim::Simulator,
    db_url: String,
    redis: Redis,
    /// The bucket every instance keeps files' bytes in.
    s3: S3Server,
    instances: Vec<Server>,
    balancer: String,
    http: reqwest::Client,
    _nginx: Nginx,
    _dir: crate::db::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for s in &mut self.instances {
            let _ = s.child.kill();
            let _ = s.child.wait();
        }
    }
}

/// The instances' configuration; `redis_port` None: no Redis at all;
/// `s3` None: files in `dir/files`.
fn write_cluster_config(
    dir: &Path,
    db_url: &str,
    redis_port: Option<u16>,
    sim_url: &str,
    per_ip: u32,
    s3: Option<&S3Server>,
) -> PathBuf {
    ConfigFile {
        redis_url: redis_port.map(|p| format!("redis://127.0.0.1:{p}")),
        limits: vec![
            format!("login_per_ip_per_minute = {per_ip}"),
            "data_requests_per_user_per_minute = 100000000".into(),
        ],
        // WeChat's pushes, in safe mode (crate::revoked's settings).
        app1_lines: vec![
            format!("push_token = \"{}\"", crate::revoked::TOKEN),
            format!("push_aes_key = \"{}\"", crate::revoked::AES_KEY),
        ],
        // The keys in variables, as an operator should keep them.
        tail: s3.map_or(String::new(), |s3| {
            format!(
                "[files]\nurl = \"{}\"\naccess_key_env = \"TEST_S3_ACCESS_KEY\"\n\
                 secret_key_env = \"TEST_S3_SECRET_KEY\"\n",
                s3.files_url()
            )
        }),
        ..ConfigFile::on(db_url, sim_url)
    }
    .write(dir)
}

fn start_instance(config: &Path) -> Server {
    let mut cmd = serve_command(config, "warn");
    cmd.env("TEST_S3_ACCESS_KEY", crate::s3::ACCESS_KEY)
        .env("TEST_S3_SECRET_KEY", crate::s3::SECRET_KEY)
        .stderr(Stdio::null());
    spawn_serve(cmd)
}

/// Three instances behind nginx, logins limited to `per_ip` a minute per
/// client address.
async fn cluster(per_ip: u32) -> Option<Cluster> {
    if std::env::var("WXAUTH_TEST_REDIS_URL").map_or(true, |u| u.is_empty()) {
        required("WXAUTH_TEST_REDIS_URL");
        return None;
    }
    for bin in ["redis-server", "nginx"] {
        if !on_path(bin) {
            required(bin);
            return None;
        }
    }
    let s3 = S3Server::start()?;
    let db_url = crate::db::postgres_schema_url().await?;
    let clock = OffsetClock::new();
    let (sim, sim_url) = spawn_sim(&clock).await;
    let redis = Redis::start(free_port());
    let dir = crate::db::temp_dir();
    let config = write_cluster_config(
        &dir.0,
        &db_url,
        Some(redis.port),
        &sim_url,
        per_ip,
        Some(&s3),
    );
    // The first migrates the schema; then the others start on it.
    let mut instances = vec![start_instance(&config)];
    instances.push(start_instance(&config));
    instances.push(start_instance(&config));
    let port = free_port();
    let upstreams: Vec<String> = instances.iter().map(|s| s.url.clone()).collect();
    std::fs::write(dir.0.join("nginx.conf"), nginx_conf(port, &upstreams)).unwrap();
    let nginx = Command::new("nginx")
        .arg("-p")
        .arg(&dir.0)
        .arg("-c")
        .arg(dir.0.join("nginx.conf"))
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let balancer = format!("http://127.0.0.1:{port}");
    let c = Cluster {
        sim,
        db_url: db_url.clone(),
        redis,
        s3,
        instances,
        balancer,
        http: reqwest::Client::new(),
        _nginx: Nginx { child: nginx },
        _dir: dir,
    };
    // Ready: the balancer answers and every instance sees Redis (30 s: the
    // whole suite may be running beside it on two cores).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut ready = c.get(&c.balancer, "/healthz", None).await.status == 200;
        for i in &c.instances {
            ready &= c.get(&i.url, "/readyz", None).await.body["redis"] == "up";
        }
        if ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cluster did not become ready; nginx's log: {}",
            std::fs::read_to_string(c._dir.0.join("nginx-error.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Some(c)
}

impl Cluster {
    async fn call(
        &self,
        base: &str,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = self.http.request(method, format!("{base}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        match req.send().await {
            Ok(r) => reply(r).await,
            Err(e) => panic!("{base}{path}: {e}"),
        }
    }

    async fn get(&self, base: &str, path: &str, token: Option<&str>) -> Reply {
        match self
            .http
            .get(format!("{base}{path}"))
            .bearer_auth(token.unwrap_or(""))
            .send()
            .await
        {
            Ok(r) => reply(r).await,
            Err(_) => Reply {
                status: reqwest::StatusCode::BAD_GATEWAY,
                headers: Default::default(),
                body: Value::Null,
            },
        }
    }

    async fn login(&self, base: &str, user: &str) -> Value {
        let code = self.sim.login_code(APP1, user).unwrap();
        let r = self
            .call(
                base,
                Method::POST,
                "/v1/login",
                None,
                Some(json!({"code": code})),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body
    }

    /// One fresh login code of `user` sent to every instance at once: the
    /// answers, and how many jscode2session calls they cost.
    async fn one_code_to_all(&self, user: &str) -> (Vec<Reply>, u64) {
        let before = self.calls("jscode2session");
        let code = self.sim.login_code(APP1, user).unwrap();
        let answers = futures_util::future::join_all(self.instances.iter().map(|i| {
            self.call(
                &i.url,
                Method::POST,
                "/v1/login",
                None,
                Some(json!({"code": code})),
            )
        }))
        .await;
        (answers, self.calls("jscode2session") - before)
    }

    fn calls(&self, api: &str) -> u64 {
        self.sim.stats().calls.get(api).copied().unwrap_or(0)
    }

    /// Waits until `token` is refused (401) by every instance; how long it took.
    async fn refused_everywhere(&self, token: &str, within: Duration) -> Duration {
        let start = Instant::now();
        for i in &self.instances {
            loop {
                let r = self.get(&i.url, "/v1/me", Some(token)).await;
                if r.status == 401 {
                    break;
                }
                assert_eq!(r.status, 200, "{:?}", r.body);
                assert!(
                    start.elapsed() < within,
                    "{} still accepts the token after {:?}",
                    i.url,
                    start.elapsed()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        start.elapsed()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_revocations_codes_and_the_wechat_token() {
    let Some(c) = cluster(100_000).await else {
        return;
    };
    let lb = c.balancer.clone();

    // Logout through the balancer: refused on all three within 1 s.
    let session = c.login(&lb, "alice").await;
    let t = token(&session).to_owned();
    for i in &c.instances {
        assert_eq!(c.get(&i.url, "/v1/me", Some(&t)).await.status, 200);
    }
    let r = c
        .call(&lb, Method::POST, "/v1/logout", Some(&t), None)
        .await;
    assert_eq!(r.status, 204);
    let took = c.refused_everywhere(&t, Duration::from_secs(1)).await;
    eprintln!("logout reached all three instances in {took:?}");

    // A revocation whose message never came (written to the database only,
    // as when an instance's publish is lost): refused within 1 s all the
    // same, from the periodic resync.
    let session = c.login(&lb, "lost-message").await;
    let t = token(&session).to_owned();
    let claims = t.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims).unwrap(),
    )
    .unwrap();
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&c.db_url).await.unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    sqlx::query("UPDATE sessions SET revoked_at = $1, revoked_reason = 'test' WHERE id = $2")
        .bind(now_ms)
        .bind(claims["sid"].as_str().unwrap())
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let took = c.refused_everywhere(&t, Duration::from_secs(1)).await;
    eprintln!("a revocation without a message reached all three in {took:?}");

    // An account deleted through one instance: its tokens are refused by
    // all three within 1 s (its session rows are gone; tombstones and the
    // broadcast say so), and the same WeChat user logging in again is a
    // new user.
    let session = c.login(&c.instances[0].url, "leaving").await;
    let t = token(&session).to_owned();
    let old_id = session["user"]["id"].as_str().unwrap().to_owned();
    for i in &c.instances {
        assert_eq!(c.get(&i.url, "/v1/me", Some(&t)).await.status, 200);
    }
    let r = c
        .call(
            &c.instances[1].url,
            Method::DELETE,
            "/v1/me",
            Some(&t),
            Some(json!({"confirm": "delete my account"})),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let took = c.refused_everywhere(&t, Duration::from_secs(1)).await;
    eprintln!("an account deletion reached all three instances in {took:?}");
    let again = c.login(&c.instances[2].url, "leaving").await;
    assert_eq!(again["new_user"], true);
    assert_ne!(again["user"]["id"].as_str().unwrap(), old_id);

    // A user withdrawing their authorization: WeChat's push (through the
    // balancer) ends their sessions on all three within 1 s.
    c.sim
        .set_push_target(crate::revoked::target(
            &lb,
            APP1,
            wechat_sim::PushMode::Safe,
            wechat_sim::PushFormat::Json,
        ))
        .unwrap();
    let session = c.login(&lb, "revoker").await;
    let t = token(&session).to_owned();
    for i in &c.instances {
        assert_eq!(c.get(&i.url, "/v1/me", Some(&t)).await.status, 200);
    }
    let id = c
        .sim
        .revoke_authorization(APP1, Some("revoker"), None, false, "1")
        .unwrap();
    let pushed = Instant::now();
    assert!(crate::revoked::settled(&c.sim, id).await.delivered);
    c.refused_everywhere(&t, Duration::from_secs(1)).await;
    eprintln!(
        "a pushed revoke reached all three instances in {:?}",
        pushed.elapsed()
    );
    // The same push arriving at each instance at once (WeChat's copies
    // behind a balancer) is acted on once: one audit entry.
    let session = c.login(&lb, "copied").await;
    let user_id = session["user"]["id"].as_str().unwrap().to_owned();
    let copies =
        crate::revoked::encrypted_copies(&c.sim.user_info(APP1, "copied").unwrap()["openid"], 3);
    let sends = c.instances.iter().zip(copies).map(|(i, (query, body))| {
        c.http
            .post(format!("{}/v1/wechat/push/{APP1}", i.url))
            .query(&query)
            .body(body)
            .send()
    });
    for r in futures_util::future::join_all(sends).await {
        let r = r.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "success");
    }
    c.refused_everywhere(token(&session), Duration::from_secs(1))
        .await;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&c.db_url).await.unwrap();
    let (entries,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM audit_log WHERE actor = $1 AND target = $2")
            .bind(format!("wechat:{APP1}"))
            .bind(format!("user:{user_id}"))
            .fetch_one(&pool)
            .await
            .unwrap();
    pool.close().await;
    assert_eq!(entries, 1, "three copies, acted on once");

    // Refresh-token reuse on one instance revokes the session on all.
    let session = c.login(&c.instances[0].url, "bob").await;
    let old_refresh = refresh(&session).to_owned();
    let r = c
        .call(
            &c.instances[1].url,
            Method::POST,
            "/v1/token/refresh",
            None,
            Some(json!({"refresh_token": old_refresh})),
        )
        .await;
    assert_eq!(r.status, 200);
    let newer = token(&r.body).to_owned();
    for i in &c.instances {
        assert_eq!(c.get(&i.url, "/v1/me", Some(&newer)).await.status, 200);
    }
    let r = c
        .call(
            &c.instances[2].url,
            Method::POST,
            "/v1/token/refresh",
            None,
            Some(json!({"refresh_token": old_refresh})),
        )
        .await;
    assert_eq!(r.status, 401, "reuse");
    c.refused_everywhere(&newer, Duration::from_secs(1)).await;

    // One code sent to all three at once: one jscode2session, three 200s, one user.
    let (answers, exchanges) = c.one_code_to_all("carol").await;
    let users: std::collections::BTreeSet<String> = answers
        .iter()
        .map(|r| {
            assert_eq!(r.status, 200, "{:?}", r.body);
            r.body["user"]["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(users.len(), 1, "one user: {users:?}");
    assert_eq!(exchanges, 1);
    let sessions: std::collections::BTreeSet<&str> =
        answers.iter().map(|r| token(&r.body)).collect();
    assert_eq!(sessions.len(), 3, "each answer has a session of its own");

    // 100 concurrent phone-number calls over the three, cold token cache:
    // one access-token fetch in all.
    let mut users = Vec::new();
    for n in 0..100 {
        let s = c.login(&lb, &format!("phone{n}")).await;
        users.push((format!("phone{n}"), token(&s).to_owned()));
    }
    let fetches_before = c.calls("stable_token") + c.calls("token");
    assert_eq!(fetches_before, 0, "nothing fetched a WeChat token yet");
    let calls = users.iter().enumerate().map(|(n, (user, t))| {
        let phone_code = c.sim.phone_code(APP1, user, None).unwrap();
        let base = c.instances[n % 3].url.clone();
        let t = t.clone();
        let c = &c;
        async move {
            c.call(
                &base,
                Method::POST,
                "/v1/me/phone",
                Some(&t),
                Some(json!({"code": phone_code})),
            )
            .await
        }
    });
    for r in futures_util::future::join_all(calls).await {
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    assert_eq!(
        c.calls("stable_token") + c.calls("token"),
        1,
        "one WeChat access-token fetch across three instances"
    );

    // WeChat refuses the token (40001) on one instance: it refreshes once,
    // and the other instances use the new token without fetching their own.
    c.sim
        .set_fault(wechat_sim::FaultSpec {
            api: "getuserphonenumber".into(),
            errcode: Some(40001),
            delay_ms: None,
            rate: None,
            count: Some(1),
        })
        .unwrap();
    for (n, (user, t)) in users.iter().take(3).enumerate() {
        let phone_code = c.sim.phone_code(APP1, user, None).unwrap();
        let r = c
            .call(
                &c.instances[n].url,
                Method::POST,
                "/v1/me/phone",
                Some(t),
                Some(json!({"code": phone_code})),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    assert_eq!(
        c.calls("stable_token") + c.calls("token"),
        2,
        "one refresh after the 40001, for all three instances"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_one_bucket() {
    let Some(c) = cluster(100_000).await else {
        return;
    };
    let session = c.login(&c.balancer, "pia").await;
    let t = token(&session).to_owned();
    let [one, two, three] = [0, 1, 2].map(|i| c.instances[i].url.clone());
    // Upload through the first (a PNG, as wx.uploadFile sends it).
    let bytes = crate::files::png(70_000);
    let r = c
        .http
        .post(format!("{one}/v1/files"))
        .bearer_auth(&t)
        .header("content-type", crate::files::MULTIPART)
        .body(crate::files::wx_upload(
            "image",
            None,
            "tmp_photo.png",
            &bytes,
        ))
        .send()
        .await
        .unwrap();
    let r = reply(r).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let url = r.body["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with("/v1/files/"), "{url}");
    // Its bytes are in the shared bucket, nowhere else.
    assert!(c.s3.objects().join(&id).exists());
    // The signed URL one instance made opens on the second, and through
    // the balancer, with no header.
    for base in [&two, &c.balancer] {
        let got = c.http.get(format!("{base}{url}")).send().await.unwrap();
        assert_eq!(got.status(), 200, "{base}");
        assert_eq!(got.bytes().await.unwrap().as_ref(), bytes.as_slice());
    }
    // Deleted through the third: gone for all, bytes included.
    let r = c
        .call(
            &three,
            Method::DELETE,
            &format!("/v1/files/{id}"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    for base in [&one, &two] {
        let got = c.http.get(format!("{base}{url}")).send().await.unwrap();
        assert_eq!(got.status(), 404, "{base}");
    }
    assert!(!c.s3.objects().join(&id).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_address_limit_holds_across_instances() {
    // 5 logins a minute per address: 15 from one address (nginx's, the
    // socket peer of every instance) spread over three instances; 5 pass,
    // not 15.
    let Some(c) = cluster(5).await else {
        return;
    };
    let mut ok = 0;
    let mut limited = 0;
    for n in 0..15 {
        let code = c.sim.login_code(APP1, &format!("rl{n}")).unwrap();
        let r = c
            .call(
                &c.balancer,
                Method::POST,
                "/v1/login",
                None,
                Some(json!({"code": code})),
            )
            .await;
        match r.status.as_u16() {
            200 => ok += 1,
            429 => limited += 1,
            other => panic!("{other}: {:?}", r.body),
        }
    }
    assert_eq!((ok, limited), (5, 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_in_the_middle_of_traffic() {
    let Some(mut c) = cluster(100_000).await else {
        return;
    };
    let lb = c.balancer.clone();
    let keep = c.login(&lb, "dora").await;
    let keep_t = token(&keep).to_owned();
    let gone = c.login(&lb, "eve").await;
    let gone_t = token(&gone).to_owned();

    c.redis.stop();
    // Every instance notices within a couple of health checks.
    let deadline = Instant::now() + Duration::from_secs(5);
    for i in &c.instances {
        while c.get(&i.url, "/readyz", None).await.body["redis"] != "down" {
            assert!(
                Instant::now() < deadline,
                "{} did not notice Redis stopped",
                i.url
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Still serving: logins, reads; no 5xx.
    for n in 0..9 {
        let s = c.login(&lb, &format!("degraded{n}")).await;
        let r = c.get(&lb, "/v1/me", Some(token(&s))).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    // A logout while Redis is down is refused on every instance at once
    // (they check the database meanwhile).
    let r = c
        .call(&lb, Method::POST, "/v1/logout", Some(&gone_t), None)
        .await;
    assert_eq!(r.status, 204);
    for i in &c.instances {
        assert_eq!(
            c.get(&i.url, "/v1/me", Some(&gone_t)).await.status,
            401,
            "{}",
            i.url
        );
        assert_eq!(
            c.get(&i.url, "/v1/me", Some(&keep_t)).await.status,
            200,
            "{}",
            i.url
        );
    }

    // Redis back on the same port: sharing resumes without a restart.
    c.redis = Redis::start(c.redis.port);
    let deadline = Instant::now() + Duration::from_secs(10);
    for i in &c.instances {
        while c.get(&i.url, "/readyz", None).await.body["redis"] != "up" {
            assert!(
                Instant::now() < deadline,
                "{} did not see Redis again",
                i.url
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Give the revocation listeners a moment to re-join the channel.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = c
        .call(&lb, Method::POST, "/v1/logout", Some(&keep_t), None)
        .await;
    assert_eq!(r.status, 204);
    c.refused_everywhere(&keep_t, Duration::from_secs(1)).await;
    let (answers, exchanges) = c.one_code_to_all("frank").await;
    for r in &answers {
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    assert_eq!(exchanges, 1, "codes are shared again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_killed_during_writes_loses_nothing_and_retries_store_once() {
    let Some(mut c) = cluster(100_000).await else {
        return;
    };
    let lb = c.balancer.clone();
    let session = c.login(&lb, "writer").await;
    let t = token(&session).to_owned();
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..6 {
        let (http, lb, t) = (c.http.clone(), lb.clone(), t.clone());
        let (acked, stop) = (acked.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            // (key, answered 201)
            let mut attempts: Vec<(String, bool)> = Vec::new();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let key = format!("w{w}-{n}");
                n += 1;
                let r = http
                    .post(format!("{lb}/v1/data/notes"))
                    .bearer_auth(&t)
                    .header("idempotency-key", &key)
                    .json(&json!({"key": key}))
                    .send()
                    .await;
                let ok = matches!(&r, Ok(r) if r.status() == 201);
                if let Ok(r) = &r {
                    let s = r.status().as_u16();
                    assert!(ok || s == 502 || s == 503 || s == 504, "{key}: {s}");
                }
                if ok {
                    acked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                attempts.push((key, ok));
            }
            attempts
        }));
    }
    let wait_for = |target: usize| {
        let acked = acked.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            while acked.load(std::sync::atomic::Ordering::Relaxed) < target {
                assert!(Instant::now() < deadline, "writes stalled");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    wait_for(150).await;
    let victim = &mut c.instances[0];
    victim.child.kill().unwrap();
    victim.child.wait().unwrap();
    let after_kill = acked.load(std::sync::atomic::Ordering::Relaxed);
    wait_for(after_kill + 150).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut attempts = Vec::new();
    for w in writers {
        attempts.extend(w.await.unwrap());
    }
    // Retry every unanswered write with its key, through the balancer.
    let mut retried = 0;
    for (key, ok) in &attempts {
        if *ok {
            continue;
        }
        retried += 1;
        let r = c
            .http
            .post(format!("{lb}/v1/data/notes"))
            .bearer_auth(&t)
            .header("idempotency-key", key)
            .json(&json!({"key": key}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{key}");
    }
    // Every attempted write is stored exactly once.
    let mut stored = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cur) => format!("/v1/data/notes?limit=100&cursor={cur}"),
            None => "/v1/data/notes?limit=100".to_owned(),
        };
        let page = c.get(&lb, &path, Some(&t)).await;
        assert_eq!(page.status, 200, "{:?}", page.body);
        for item in page.body["items"].as_array().unwrap() {
            stored.push(item["data"]["key"].as_str().unwrap().to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let distinct: std::collections::BTreeSet<&String> = stored.iter().collect();
    assert_eq!(distinct.len(), stored.len(), "a write stored twice");
    let wanted: std::collections::BTreeSet<&String> = attempts.iter().map(|(k, _)| k).collect();
    assert_eq!(distinct, wanted);
    eprintln!(
        "{} writes attempted, {} acknowledged before the retries, {retried} retried",
        attempts.len(),
        attempts.iter().filter(|(_, ok)| *ok).count()
    );
}

/// PostgreSQL without Redis is one instance only: `serve` says so at start.
#[tokio::test]
async fn postgres_without_redis_warns_at_start() {
    let Some(db_url) = crate::db::postgres_schema_url().await else {
        return;
    };
    let dir = crate::db::temp_dir();
    let config = write_cluster_config(&dir.0, &db_url, None, "http://127.0.0.1:9", 60, None);
    let mut cmd = serve_command(&config, "warn");
    cmd.env_remove("WXAUTH_REDIS_URL");
    let log = stop(spawn_serve(cmd));
    assert!(
        log.contains("redis_url is not set") && log.contains("ONE instance"),
        "{log}"
    );
}

/// docs/scale-out.md's one-host recipe, run as written (with free ports):
/// three `serve` processes from one file and nginx in front; a user logs
/// in through nginx and every instance knows the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_one_host_recipe_runs_as_written() {
    use std::os::unix::process::CommandExt;
    for bin in ["redis-server", "nginx"] {
        if !on_path(bin) {
            required(bin);
            return;
        }
    }
    let Some(db_url) = crate::db::postgres_schema_url().await else {
        return;
    };
    let doc = std::fs::read_to_string(crate::docs::repo().join("docs/scale-out.md")).unwrap();
    let script = crate::docs::blocks(&doc, "sh")
        .into_iter()
        .map(|(_, b)| b)
        .find(|b| b.contains("WXAUTH_LISTEN"))
        .expect("docs/scale-out.md has the one-host recipe");
    let (_, nginx) = crate::docs::blocks(&doc, "nginx")
        .into_iter()
        .next()
        .unwrap();
    let (sim, sim_url) = spawn_sim(&OffsetClock::new()).await;
    let redis = Redis::start(free_port());
    let dir = crate::db::temp_dir();
    ConfigFile {
        redis_url: Some(format!("redis://127.0.0.1:{}", redis.port)),
        ..ConfigFile::on(&db_url, &sim_url)
    }
    .write(&dir.0);
    let balancer = free_port();
    let instances = [free_port(), free_port(), free_port()];
    std::fs::write(
        dir.0.join("nginx.conf"),
        with_ports(&nginx, balancer, &instances),
    )
    .unwrap();
    let bin_dir = Path::new(crate::spawn::BIN).parent().unwrap();
    let mut recipe = Command::new("bash")
        .arg("-c")
        .arg(with_ports(&script, balancer, &instances))
        .current_dir(&dir.0)
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin_dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("WXAUTH_LOG", "warn")
        .env_remove("WXAUTH_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let group = recipe.id();
    let http = reqwest::Client::new();
    let url = |port: u16| format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut ready = http
            .get(format!("{}/healthz", url(balancer)))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        for port in instances {
            ready &= match http.get(format!("{}/readyz", url(port))).send().await {
                Ok(r) => r.json::<Value>().await.is_ok_and(|b| b["redis"] == "up"),
                Err(_) => false,
            };
        }
        if ready {
            break;
        }
        if Instant::now() > deadline || recipe.try_wait().unwrap().is_some() {
            stop_group(group, &mut recipe);
            let log = std::fs::read_to_string(dir.0.join("nginx-error.log")).unwrap_or_default();
            panic!("the recipe did not come up: {log}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let login = crate::process::login_user(&http, &url(balancer), &sim, "una").await;
    let token = login["access_token"].as_str().unwrap().to_owned();
    for port in instances {
        let r = http
            .get(format!("{}/v1/me", url(port)))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "instance on {port}");
    }
    // The whole recipe (three instances and nginx) stops together.
    stop_group(group, &mut recipe);
}

/// Stops every process of the group `group` (SIGTERM, then SIGKILL after
/// 15 s) and reaps `leader`. `--` keeps kill(1) from reading `-PGID` as a
/// signal: without it procps' kill sends nothing and still exits 0.
fn stop_group(group: u32, leader: &mut Child) {
    let signal = |name: &str| {
        let _ = Command::new("kill")
            .args(["-s", name, "--", &format!("-{group}")])
            .status();
    };
    signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(15);
    while leader.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            signal("KILL");
            let _ = leader.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every `add` of a `change` message, by title, until `n` arrived.
async fn adds(ws: &mut crate::watch::Ws, n: usize) -> Vec<String> {
    let mut titles = Vec::new();
    while titles.len() < n {
        let m = ws.next().await;
        assert_eq!(m["type"], "change", "{m}");
        for c in m["changes"].as_array().unwrap() {
            assert_eq!(c["op"], "add", "{m}");
            titles.push(c["doc"]["data"]["title"].as_str().unwrap().to_owned());
        }
    }
    titles
}

/// Watches on every instance and through nginx see each write, through
/// whichever instance it went, once and in commit order; with Redis
/// stopped they still do (each instance looks at the change log); a
/// watcher whose instance is killed resumes on another without a loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_see_every_write_from_every_instance_once_in_order() {
    use crate::watch::Ws;
    let Some(mut c) = cluster(100_000).await else {
        return;
    };
    let alice = c.login(&c.balancer, "alice").await;
    let t = token(&alice).to_owned();
    let mut bases: Vec<String> = c.instances.iter().map(|i| i.url.clone()).collect();
    bases.push(c.balancer.clone());
    let mut watchers = Vec::new();
    for base in &bases {
        let mut ws = Ws::open(base, Some(&t)).await;
        let init = ws
            .watch(
                json!({"type": "watch", "id": "w", "collection": "todo", "order_by": "created_at"}),
            )
            .await;
        watchers.push((ws, init["cursor"].as_str().unwrap().to_owned()));
    }
    let urls: Vec<String> = c.instances.iter().map(|i| i.url.clone()).collect();
    let http = c.http.clone();
    let write = |n: usize, through: usize| {
        let url = urls[through].clone();
        let t = t.clone();
        let http = http.clone();
        async move {
            let r = http
                .post(format!("{url}/v1/data/todo"))
                .bearer_auth(&t)
                .json(&json!({"title": format!("t{n}")}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
        }
    };
    for n in 0..30 {
        write(n, n % 3).await;
    }
    let expected: Vec<String> = (0..30).map(|n| format!("t{n}")).collect();
    for (ws, _) in &mut watchers {
        assert_eq!(adds(ws, 30).await, expected);
    }
    for (ws, _) in &mut watchers {
        ws.quiet(Duration::from_millis(200)).await;
    }

    // Redis stopped: the notices are gone, the log still carries it all.
    c.redis.stop();
    for n in 30..36 {
        write(n, n % 3).await;
    }
    let expected: Vec<String> = (30..36).map(|n| format!("t{n}")).collect();
    for (ws, _) in &mut watchers {
        assert_eq!(adds(ws, 6).await, expected);
    }

    // The first instance killed: its watcher reconnects to the second and
    // resumes after the last cursor it saw.
    let (mut first, _) = watchers.remove(0);
    let last = {
        write(36, 1).await;
        let m = first.next().await;
        assert_eq!(m["changes"][0]["doc"]["data"]["title"], "t36");
        for (ws, _) in &mut watchers {
            assert_eq!(adds(ws, 1).await, ["t36"]);
        }
        m["cursor"].as_str().unwrap().to_owned()
    };
    let _ = c.instances[0].child.kill();
    let _ = c.instances[0].child.wait();
    for n in 37..40 {
        write(n, 1 + n % 2).await;
    }
    let mut resumed = Ws::open(&c.instances[1].url, Some(&t)).await;
    resumed
        .send(
            json!({"type": "watch", "id": "w", "collection": "todo", "order_by": "created_at",
            "resume_after": last}),
        )
        .await;
    assert_eq!(adds(&mut resumed, 3).await, ["t37", "t38", "t39"]);
    write(40, 2).await;
    assert_eq!(adds(&mut resumed, 1).await, ["t40"]);
    resumed.quiet(Duration::from_millis(200)).await;
}
