use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wechat_miniapp::{ClientConfig, Error, LoginCode, WechatClient};

use crate::common::*;

/// A server that answers every connection with `response`, counting them.
async fn canned(response: &'static str) -> (String, std::sync::Arc<std::sync::atomic::AtomicU32>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let _ = sock.write_all(response.as_bytes()).await;
        }
    });
    (url, hits)
}

#[tokio::test]
async fn non_json_answer_is_malformed() {
    let (url, _) = canned("HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=gbk\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
    let err = client_for(&url, Duration::from_secs(2))
        .code2session(APP1, &secret1(), &LoginCode::new("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::MalformedAnswer(_)), "{err:?}");
}

#[tokio::test]
async fn errcode_as_string_under_text_plain() {
    let body = r#"{"errcode":"40029","errmsg":"invalid code"}"#;
    let resp: &'static str = Box::leak(
        format!("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
            .into_boxed_str(),
    );
    let (url, _) = canned(resp).await;
    let err = client_for(&url, Duration::from_secs(2))
        .code2session(APP1, &secret1(), &LoginCode::new("x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidCode { errcode: 40029 }),
        "{err:?}"
    );
}

#[tokio::test]
async fn gateway_error_is_temporary_and_not_repeated_for_codes() {
    let (url, hits) =
        canned("HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
    let c = client_for(&url, Duration::from_secs(2));
    let err = c
        .code2session(APP1, &secret1(), &LoginCode::new("x"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport {
                not_sent: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_temporary());
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    // A token read is repeated.
    let _ = c
        .get_stable_access_token(APP1, &secret1(), false)
        .await
        .unwrap_err();
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 4);
}

#[tokio::test]
async fn connection_refused_is_retried_and_reports_no_url() {
    // Bind then drop, so the port is (almost certainly) closed.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let c = client_for(&format!("http://127.0.0.1:{port}"), Duration::from_secs(2));
    let err = c
        .code2session(APP1, &secret1(), &LoginCode::new("SECRETCODE123"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Transport { not_sent: true, .. }),
        "{err:?}"
    );
    let shown = format!("{err} {err:?}");
    assert!(
        !shown.contains(SECRET1) && !shown.contains("SECRETCODE123"),
        "{shown}"
    );
}

#[test]
fn bad_base_url_is_a_config_error() {
    for url in ["not a url", "ftp://example.com"] {
        let err = WechatClient::new(ClientConfig {
            base_url: url.into(),
            ..ClientConfig::default()
        })
        .unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err:?}");
    }
}

/// A redirect is an error, never followed: it would carry the app secret
/// in its query to wherever it points.
#[tokio::test]
async fn a_redirect_is_not_followed() {
    let (elsewhere, followed) =
        canned("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}").await;
    let redirect: &'static str = Box::leak(
        format!(
            "HTTP/1.1 302 Found\r\nlocation: {elsewhere}/steal\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        )
        .into_boxed_str(),
    );
    let (url, hits) = canned(redirect).await;
    let err = client_for(&url, Duration::from_secs(2))
        .code2session(APP1, &secret1(), &LoginCode::new("x"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Transport { message, .. } if message.contains("302")),
        "{err:?}"
    );
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(followed.load(std::sync::atomic::Ordering::SeqCst), 0);
}
