//! The second hardening round (issue 27): each test fails on the code
//! before its fix. The gateway's findings are in `gateway.rs`, the types
//! that could print a secret in `secrets_in_types.rs`.

use serde_json::json;

use crate::app::*;

/// A refresh token of the right shape that was never issued: a real one
/// with its random tail changed.
fn made_up_like(real: &str, n: usize) -> String {
    let keep = real.len() - 6;
    format!("{}{:06}", &real[..keep], n % 1_000_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_refresh_tokens_never_reach_the_writer() {
    let app = spawn_app().await;
    let login = app.login(APP1, "alice").await;
    let real = refresh(&login).to_owned();
    // The same database through the rules, to watch its writer.
    let settings = test_config(&app.database_url, &app.sim_url)
        .resolve()
        .unwrap();
    let services = wxauth::open_services(&settings, wxauth::Deps::default())
        .await
        .unwrap();
    let ip: std::net::IpAddr = "203.0.113.9".parse().unwrap();
    let before = services.store.writer_stats();
    for n in 0..5 {
        let err = services
            .auth
            .refresh(&made_up_like(&real, n), ip)
            .await
            .unwrap_err();
        assert!(matches!(err, wxauth::Error::Unauthorized(_)), "{err:?}");
    }
    let after = services.store.writer_stats();
    assert_eq!(
        (after.commits, after.writes),
        (before.commits, before.writes),
        "a made-up refresh token entered the writer"
    );
    // A real one does (the check above can fail).
    services.auth.refresh(&real, ip).await.unwrap();
    assert!(services.store.writer_stats().writes > after.writes);
    services.store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_failures_are_limited_per_address() {
    let app = spawn_app().await;
    let login = app.login(APP1, "bob").await;
    let real = refresh(&login).to_owned();
    // limits.login_failures_per_ip_per_minute is 10 by default.
    let mut limited = None;
    for n in 0..30 {
        let r = app
            .post(
                "/v1/token/refresh",
                None,
                json!({"refresh_token": made_up_like(&real, n)}),
            )
            .await;
        if r.status == 429 {
            limited = Some((n, r));
            break;
        }
        assert_eq!(r.status, 401, "{:?}", r.body);
    }
    let (n, r) = limited.expect("made-up refresh tokens are limited");
    assert!(n >= 10, "limited after {n} failures");
    assert_eq!(r.error(), "rate_limited");
    assert!(r.header("retry-after").is_some());
    // While limited, even a real token waits (the address is refused
    // before anything is read).
    let r = app
        .post("/v1/token/refresh", None, json!({"refresh_token": real}))
        .await;
    assert_eq!(r.status, 429, "{:?}", r.body);
}
