//! Files through the real server: uploads in the multipart shape
//! `wx.uploadFile` sends, types decided from the bytes, limits with
//! nothing left behind, URLs that work with no header (public, signed,
//! expired, tampered, another file's), ranges, deletion with the account,
//! the sweep of bytes without a row, a store that goes down or fills up.
//!
//! Every test runs on each store: the local disk (on SQLite and on
//! PostgreSQL) and a real S3 server (`s3s-fs`, see `s3.rs`).

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::app::*;

/// Each test, with its change to the configuration, on the local disk
/// with SQLite and with PostgreSQL, and on S3 (with SQLite).
macro_rules! on_every_store {
    ($($name:ident: $tweak:ident),* $(,)?) => {
        on_every_store!(@store disk_sqlite, Sqlite, Disk; $($name: $tweak),*);
        on_every_store!(@store disk_postgres, Postgres, Disk; $($name: $tweak),*);
        on_every_store!(@store s3, Sqlite, S3; $($name: $tweak),*);
    };
    (@store $module:ident, $db:ident, $files:ident; $($name:ident: $tweak:ident),*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    // None: PostgreSQL or s3s-fs is missing (the reason printed).
                    let Some(app) = crate::app::spawn_app_with(crate::app::Options {
                        db: crate::app::Db::$db,
                        files: crate::app::FileBackend::$files,
                        tweak: super::$tweak,
                        ..Default::default()
                    }).await else { return };
                    super::$name(app).await;
                }
            )*
        }
    };
}

on_every_store!(
    each_image_type_uploads_as_wx_upload_file_sends_it_and_comes_back: as_is,
    the_type_comes_from_the_bytes_and_attachments_are_downloads: as_is,
    bad_uploads_are_refused_and_leave_nothing: small_files,
    urls_open_only_their_own_file_until_they_expire: as_is,
    deleting_the_account_deletes_the_files: as_is,
    an_upload_that_stops_sending_is_a_408_and_leaves_nothing: quick_body_timeout,
    avatar_file_sets_the_profiles_avatar_url: as_is,
    operators_list_and_delete_a_users_files_with_the_scope_and_a_record: as_is,
    bytes_without_a_row_are_swept_after_the_grace_period: quick_sweep,
);

/// The boundary shape WeChat's clients use (WebKit's).
const BOUNDARY: &str = "----WebKitFormBoundaryWxAuthTest0123";
/// The Content-Type of a body with [`BOUNDARY`].
pub(crate) const MULTIPART: &str =
    "multipart/form-data; boundary=----WebKitFormBoundaryWxAuthTest0123";

/// One part of a multipart body.
struct Part<'a> {
    name: &'a str,
    filename: Option<&'a str>,
    content_type: Option<&'a str>,
    bytes: &'a [u8],
}

/// A body as `wx.uploadFile` sends it: `formData` fields first, then the
/// file part with its temporary file's name.
fn body(parts: &[Part<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        match p.filename {
            Some(f) => out.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{}\"; filename=\"{f}\"\r\n",
                    p.name
                )
                .as_bytes(),
            ),
            None => out.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{}\"\r\n", p.name).as_bytes(),
            ),
        }
        if let Some(t) = p.content_type {
            out.extend_from_slice(format!("Content-Type: {t}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(p.bytes);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    out
}

/// `formData` {purpose, public?} and the file, as `wx.uploadFile` sends them.
pub(crate) fn wx_upload(
    purpose: &str,
    public: Option<&str>,
    filename: &str,
    bytes: &[u8],
) -> Vec<u8> {
    let mut parts = vec![Part {
        name: "purpose",
        filename: None,
        content_type: None,
        bytes: purpose.as_bytes(),
    }];
    if let Some(p) = public {
        parts.push(Part {
            name: "public",
            filename: None,
            content_type: None,
            bytes: p.as_bytes(),
        });
    }
    parts.push(Part {
        name: "file",
        filename: Some(filename),
        content_type: Some("image/jpeg"),
        bytes,
    });
    body(&parts)
}

pub(crate) async fn post_body(app: &TestApp, token: &str, body: Vec<u8>) -> Reply {
    let resp = app
        .http
        .post(format!("{}/v1/files", app.url))
        .bearer_auth(token)
        .header("content-type", MULTIPART)
        .body(body)
        .send()
        .await
        .unwrap();
    reply(resp).await
}

/// GET of a file's URL with no header (as `<image src>` fetches it).
pub(crate) async fn fetch(app: &TestApp, url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let absolute = if url.starts_with('/') {
        format!("{}{url}", app.url)
    } else {
        url.to_owned()
    };
    let mut req = app.http.get(absolute);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

pub(crate) fn png(extra: usize) -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    b.extend((0..extra).map(|i| (i % 251) as u8));
    b
}

/// Entries of the file folder: finished files (`staging` false) or writes
/// in progress or left half-done (the local store's `<id>#<n>` files).
fn in_folder(app: &TestApp, staging: bool) -> usize {
    std::fs::read_dir(&app.files_root)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().contains('#') == staging)
                .count()
        })
        .unwrap_or(0)
}

/// Files the store holds.
fn stored(app: &TestApp) -> usize {
    in_folder(app, false)
}

/// Writes in progress or left half-done: the local store's partial files,
/// or S3 multipart uploads neither completed nor aborted.
fn staged(app: &TestApp) -> usize {
    match &app.s3 {
        Some(s3) => s3.open_uploads(),
        None => in_folder(app, true),
    }
}

async fn each_image_type_uploads_as_wx_upload_file_sends_it_and_comes_back(app: TestApp) {
    let login = app.login(APP1, "fay").await;
    let t = token(&login);
    let images: [(&str, Vec<u8>); 4] = [
        ("image/png", png(300)),
        (
            "image/jpeg",
            b"\xFF\xD8\xFF\xE0\0\x10JFIF\0rest-of-jpeg".to_vec(),
        ),
        ("image/gif", b"GIF89a\x01\0\x01\0\x80\0\0rest".to_vec()),
        (
            "image/webp",
            b"RIFF\x24\0\0\0WEBPVP8 \x18\0\0\0rest".to_vec(),
        ),
    ];
    for (expected, bytes) in &images {
        let r = post_body(&app, t, wx_upload("image", None, "tmp_a1b2.jpg", bytes)).await;
        assert_eq!(r.status, 201, "{expected}: {:?}", r.body);
        let f = &r.body;
        assert_eq!(f["content_type"], *expected);
        assert_eq!(f["size"], bytes.len());
        assert_eq!(f["purpose"], "image");
        assert_eq!(f["public"], false, "images are private by default");
        assert_eq!(f["status"], "ready");
        assert_eq!(f["filename"], "tmp_a1b2.jpg");
        assert_eq!(f["sha256"], hex::encode(sha2::Sha256::digest(bytes)));
        let url = f["url"].as_str().unwrap();
        assert!(url.contains("exp=") && url.contains("sig="), "{url}");
        // No header at all, as <image src> fetches it.
        let resp = fetch(&app, url, &[]).await;
        assert_eq!(resp.status(), 200);
        let h = resp.headers().clone();
        assert_eq!(h["content-type"], *expected);
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["etag"], format!("\"{}\"", f["sha256"].as_str().unwrap()));
        assert!(h["cache-control"].to_str().unwrap().starts_with("private"));
        assert_eq!(h["content-length"], bytes.len().to_string().as_str());
        assert_eq!(resp.bytes().await.unwrap().as_ref(), bytes.as_slice());
    }
    // An avatar is public: a stable URL, cacheable by anyone.
    let r = post_body(&app, t, wx_upload("avatar", None, "tmp_face.png", &png(10))).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["public"], true);
    let url = r.body["url"].as_str().unwrap().to_owned();
    assert!(!url.contains("sig="), "{url}");
    let resp = fetch(&app, &url, &[]).await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["cache-control"]
            .to_str()
            .unwrap()
            .starts_with("public")
    );
    // The caller's list, newest first, a page at a time.
    let page = app
        .call(Method::GET, "/v1/files?limit=3", Some(t), None)
        .await;
    assert_eq!(page.status, 200, "{:?}", page.body);
    assert_eq!(page.body["items"].as_array().unwrap().len(), 3);
    assert_eq!(page.body["items"][0]["purpose"], "avatar");
    let cursor = page.body["next_cursor"].as_str().unwrap();
    let rest = app
        .call(
            Method::GET,
            &format!("/v1/files?limit=3&cursor={cursor}"),
            Some(t),
            None,
        )
        .await;
    assert_eq!(rest.body["items"].as_array().unwrap().len(), 2);
    assert!(rest.body["next_cursor"].is_null());
    assert_eq!(stored(&app), 5);
}

async fn the_type_comes_from_the_bytes_and_attachments_are_downloads(app: TestApp) {
    let login = app.login(APP1, "gil").await;
    let t = token(&login);
    for (what, bytes) in [
        ("html", b"<html><script>alert(1)</script></html>".as_slice()),
        (
            "svg",
            b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script/></svg>".as_slice(),
        ),
    ] {
        for purpose in ["image", "avatar"] {
            let r = post_body(&app, t, wx_upload(purpose, None, "innocent.jpg", bytes)).await;
            assert_eq!(r.status, 415, "{what} as {purpose}: {:?}", r.body);
            assert_eq!(r.body["error"], "unsupported_media_type");
        }
    }
    assert_eq!(stored(&app) + staged(&app), 0, "nothing of them stays");
    // An executable as an attachment: stored, and only ever a download.
    let elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0binary".to_vec();
    let r = post_body(
        &app,
        t,
        wx_upload("attachment", None, "../../etc/passwd", &elf),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["content_type"], "application/octet-stream");
    assert_eq!(r.body["filename"], "passwd", "a display name, never a path");
    let resp = fetch(&app, r.body["url"].as_str().unwrap(), &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/octet-stream");
    assert_eq!(
        resp.headers()["content-disposition"],
        "attachment; filename=\"passwd\""
    );
    assert!(
        !app.files_root.join("passwd").exists() && !std::path::Path::new("/etc/passwd.wx").exists()
    );
    // Even an image uploaded as an attachment is served as a download.
    let r = post_body(&app, t, wx_upload("attachment", None, "x.png", &png(5))).await;
    let resp = fetch(&app, r.body["url"].as_str().unwrap(), &[]).await;
    assert_eq!(resp.headers()["content-type"], "application/octet-stream");
}

fn as_is(_: &mut wxauth::config::Config) {}

fn small_files(c: &mut wxauth::config::Config) {
    c.files.max_bytes = 1000;
    c.files.bytes_per_user = 2500;
}

async fn bad_uploads_are_refused_and_leave_nothing(app: TestApp) {
    let login = app.login(APP1, "hal").await;
    let t = token(&login);
    let refused = |r: &Reply, status: u16, code: &str| {
        assert_eq!(
            (r.status.as_u16(), r.body["error"].as_str().unwrap_or("")),
            (status, code),
            "{:?}",
            r.body
        );
    };
    // Zero bytes.
    let r = post_body(&app, t, wx_upload("attachment", None, "empty.txt", b"")).await;
    refused(&r, 400, "invalid_request");
    assert!(r.body["message"].as_str().unwrap().contains("empty"));
    // No file part; a part without a filename that is not `file` is a field.
    let no_file = body(&[Part {
        name: "photo",
        filename: None,
        content_type: None,
        bytes: &png(5),
    }]);
    let r = post_body(&app, t, no_file).await;
    refused(&r, 400, "invalid_request");
    assert!(r.body["message"].as_str().unwrap().contains("no file part"));
    // A file part named `file` without a filename is the file.
    let unnamed = body(&[Part {
        name: "file",
        filename: None,
        content_type: None,
        bytes: &png(5),
    }]);
    let r = post_body(&app, t, unnamed).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["filename"], "file");
    // Two file parts.
    let two = body(&[
        Part {
            name: "file",
            filename: Some("a.png"),
            content_type: None,
            bytes: &png(5),
        },
        Part {
            name: "other",
            filename: Some("b.png"),
            content_type: None,
            bytes: &png(5),
        },
    ]);
    let r = post_body(&app, t, two).await;
    refused(&r, 400, "invalid_request");
    // A body cut short.
    let mut cut = wx_upload("image", None, "a.png", &png(200));
    cut.truncate(cut.len() - 60);
    let r = post_body(&app, t, cut).await;
    refused(&r, 400, "invalid_request");
    // Not multipart at all; a bad purpose; a bad public.
    let r = app.post("/v1/files", Some(t), json!({"file": "x"})).await;
    refused(&r, 400, "invalid_request");
    let r = post_body(&app, t, wx_upload("wallpaper", None, "a.png", &png(5))).await;
    refused(&r, 400, "invalid_request");
    let r = post_body(&app, t, wx_upload("image", Some("maybe"), "a.png", &png(5))).await;
    refused(&r, 400, "invalid_request");
    // One byte over files.max_bytes.
    let r = post_body(
        &app,
        t,
        wx_upload("image", None, "big.png", &png(1001 - 16)),
    )
    .await;
    refused(&r, 413, "payload_too_large");
    // The per-user quota: 2500 bytes hold two files of 1000 (and the 21
    // bytes above), not a third.
    for _ in 0..2 {
        let r = post_body(&app, t, wx_upload("image", None, "q.png", &png(1000 - 16))).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    let r = post_body(&app, t, wx_upload("image", None, "q.png", &png(1000 - 16))).await;
    refused(&r, 409, "limit_exceeded");
    // What was refused left no bytes and no half-written file.
    assert_eq!(stored(&app), 3, "the unnamed file and the two in the quota");
    let metrics = app.metrics().await;
    for line in [
        "wxauth_file_upload_refusals_total{reason=\"payload_too_large\"}",
        "wxauth_file_upload_refusals_total{reason=\"limit_exceeded\"}",
        "wxauth_file_uploads_total",
    ] {
        assert!(metrics.contains(line), "{line} in /metrics");
    }
    assert_eq!(staged(&app), 0);
    let list = app.call(Method::GET, "/v1/files", Some(t), None).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 3);
    // Deleting one gives its bytes back.
    let id = list.body["items"][0]["id"].as_str().unwrap().to_owned();
    let r = app
        .call(Method::DELETE, &format!("/v1/files/{id}"), Some(t), None)
        .await;
    assert_eq!(r.status, 204);
    let r = post_body(&app, t, wx_upload("image", None, "q.png", &png(1000 - 16))).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}

async fn urls_open_only_their_own_file_until_they_expire(app: TestApp) {
    let ann = app.login(APP1, "ann").await;
    let bob = app.login(APP1, "bob").await;
    let up = |login: &Value, purpose: &'static str| {
        let t = token(login).to_owned();
        let app = &app;
        async move {
            let r = post_body(app, &t, wx_upload(purpose, None, "p.png", &png(64))).await;
            assert_eq!(r.status, 201, "{:?}", r.body);
            r.body
        }
    };
    let mine = up(&ann, "image").await;
    let other = up(&ann, "image").await;
    let face = up(&ann, "avatar").await;
    let url = mine["url"].as_str().unwrap();
    assert_eq!(fetch(&app, url, &[]).await.status(), 200);
    // Without its signature, tampered, or another file's.
    let bare = url.split('?').next().unwrap();
    assert_eq!(fetch(&app, bare, &[]).await.status(), 403);
    let last = if url.ends_with('x') { "y" } else { "x" };
    let tampered = format!("{}{last}", &url[..url.len() - 1]);
    assert_eq!(fetch(&app, &tampered, &[]).await.status(), 403);
    let other_query = other["url"].as_str().unwrap().split('?').nth(1).unwrap();
    let swapped = format!("{bare}?{other_query}");
    assert_eq!(fetch(&app, &swapped, &[]).await.status(), 403);
    let later = url.replace("exp=", "exp=9");
    assert_eq!(
        fetch(&app, &later, &[]).await.status(),
        403,
        "exp is signed"
    );
    // Another user: the metadata of a private file is not found; a public
    // one of the same app is visible.
    let id = mine["id"].as_str().unwrap();
    let r = app
        .call(
            Method::GET,
            &format!("/v1/files/{id}"),
            Some(token(&bob)),
            None,
        )
        .await;
    assert_eq!(r.status, 404);
    let face_id = face["id"].as_str().unwrap();
    let r = app
        .call(
            Method::GET,
            &format!("/v1/files/{face_id}"),
            Some(token(&bob)),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = app
        .call(
            Method::DELETE,
            &format!("/v1/files/{id}"),
            Some(token(&bob)),
            None,
        )
        .await;
    assert_eq!(r.status, 404, "nobody else deletes it");
    // Ranges and revalidation.
    let resp = fetch(&app, url, &[("range", "bytes=0-7")]).await;
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.headers()["content-range"], "bytes 0-7/80");
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &png(64)[..8]);
    let resp = fetch(&app, url, &[("range", "bytes=-4")]).await;
    assert_eq!(resp.headers()["content-range"], "bytes 76-79/80");
    let resp = fetch(&app, url, &[("range", "bytes=500-")]).await;
    assert_eq!(resp.status(), 416);
    let etag = format!("\"{}\"", mine["sha256"].as_str().unwrap());
    let resp = fetch(&app, url, &[("if-none-match", &etag)]).await;
    assert_eq!(resp.status(), 304);
    // An hour on (files.url_ttl_secs), the URL has expired; a fresh one
    // from the metadata works.
    app.advance(Duration::from_secs(3601));
    assert_eq!(fetch(&app, url, &[]).await.status(), 403);
    let ann = app.login(APP1, "ann").await;
    let fresh = app
        .call(
            Method::GET,
            &format!("/v1/files/{id}"),
            Some(token(&ann)),
            None,
        )
        .await;
    assert_eq!(
        fetch(&app, fresh.body["url"].as_str().unwrap(), &[])
            .await
            .status(),
        200
    );
    // Deleted: 404 for every URL it had.
    let r = app
        .call(
            Method::DELETE,
            &format!("/v1/files/{id}"),
            Some(token(&ann)),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        fetch(&app, fresh.body["url"].as_str().unwrap(), &[])
            .await
            .status(),
        404
    );
}

async fn deleting_the_account_deletes_the_files(app: TestApp) {
    let login = app.login(APP1, "ivy").await;
    let t = token(&login);
    let r = post_body(&app, t, wx_upload("avatar", None, "me.png", &png(32))).await;
    let url = r.body["url"].as_str().unwrap().to_owned();
    post_body(
        &app,
        t,
        wx_upload("attachment", None, "cv.pdf", b"%PDF-1.4 ..."),
    )
    .await;
    assert_eq!(stored(&app), 2);
    // The self-service export lists them, with their URLs.
    let export = app.call(Method::GET, "/v1/me/export", Some(t), None).await;
    assert_eq!(export.status, 200);
    let listed = export.body["files"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{:?}", export.body["files"]);
    assert!(listed.iter().any(|f| f["url"] == url.as_str()));
    let r = app
        .call(
            Method::DELETE,
            "/v1/me",
            Some(t),
            Some(json!({"confirm": "delete my account"})),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_eq!(stored(&app), 0, "the bytes went with the account");
    assert_eq!(fetch(&app, &url, &[]).await.status(), 404);
}

fn quick_body_timeout(c: &mut wxauth::config::Config) {
    c.http.body_timeout_ms = 300;
}

async fn an_upload_that_stops_sending_is_a_408_and_leaves_nothing(app: TestApp) {
    let login = app.login(APP1, "jon").await;
    let full = wx_upload("image", None, "slow.png", &png(5000));
    let address = app.url.trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /v1/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {}\r\n\r\n",
        token(&login),
        full.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&full[..full.len() / 2]).await.unwrap();
    // Then nothing: the server gives up after http.body_timeout_ms.
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server did not give up");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
    assert_eq!(stored(&app) + staged(&app), 0);
}

async fn avatar_file_sets_the_profiles_avatar_url(app: TestApp) {
    let kit = app.login(APP1, "kit").await;
    let t = token(&kit);
    let up = |purpose: &'static str, public: Option<&'static str>| {
        let app = &app;
        async move {
            let r = post_body(app, t, wx_upload(purpose, public, "f.png", &png(8))).await;
            assert_eq!(r.status, 201, "{:?}", r.body);
            r.body
        }
    };
    let avatar = up("avatar", None).await;
    let patch = |value: Value| {
        let app = &app;
        async move {
            app.call(
                Method::PATCH,
                "/v1/me",
                Some(t),
                Some(json!({"profile": {"avatar_file": value, "nickname": "Kit"}})),
            )
            .await
        }
    };
    let r = patch(avatar["id"].clone()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["profile"]["avatar_url"], avatar["url"]);
    assert_eq!(r.body["profile"]["nickname"], "Kit");
    assert!(r.body["profile"].get("avatar_file").is_none());
    // Private images, attachments and other users' files are refused.
    let private = up("image", None).await;
    let r = patch(private["id"].clone()).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(r.body["message"].as_str().unwrap().contains("public"));
    let attachment = up("attachment", Some("true")).await;
    assert_eq!(patch(attachment["id"].clone()).await.status, 400);
    let lee = app.login(APP1, "lee").await;
    let r = post_body(
        &app,
        token(&lee),
        wx_upload("avatar", None, "l.png", &png(8)),
    )
    .await;
    assert_eq!(patch(r.body["id"].clone()).await.status, 404);
    assert_eq!(patch(json!(42)).await.status, 400);
    // The profile kept the first avatar.
    let me = app.call(Method::GET, "/v1/me", Some(t), None).await;
    assert_eq!(me.body["profile"]["avatar_url"], avatar["url"]);
}

async fn operators_list_and_delete_a_users_files_with_the_scope_and_a_record(app: TestApp) {
    let mia = app.login(APP1, "mia").await;
    let id = mia["user"]["id"].as_str().unwrap().to_owned();
    let r = post_body(
        &app,
        token(&mia),
        wx_upload("image", None, "m.png", &png(8)),
    )
    .await;
    let file = r.body["id"].as_str().unwrap().to_owned();
    let url = r.body["url"].as_str().unwrap().to_owned();
    let path = format!("/admin/v1/users/{id}/files");
    let r = app.admin(Some(READER_KEY), Method::GET, &path, None).await;
    assert_eq!(r.status, 403, "users:read is not files:read");
    let r = app.admin(Some(ADMIN_KEY), Method::GET, &path, None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["items"][0]["id"], file.as_str());
    let r = app
        .admin(
            Some(ADMIN_KEY),
            Method::DELETE,
            &format!("{path}/{file}"),
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_eq!(fetch(&app, &url, &[]).await.status(), 404);
    assert_eq!(stored(&app), 0);
    let r = app
        .admin(
            Some(ADMIN_KEY),
            Method::DELETE,
            &format!("{path}/{file}"),
            None,
        )
        .await;
    assert_eq!(r.status, 404);
    let audit = app
        .admin(
            Some(ADMIN_KEY),
            Method::GET,
            &format!("/admin/v1/audit?target=file:{file}"),
            None,
        )
        .await;
    assert_eq!(
        audit.body["items"][0]["action"], "DELETE /admin/v1/users/{id}/files/{file_id}",
        "{:?}",
        audit.body
    );
}

fn quick_sweep(c: &mut wxauth::config::Config) {
    c.files.upload_timeout_ms = 500;
    c.files.orphan_grace_secs = 1;
}

/// Waits (at most 15 s) until `done` holds.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn bytes_without_a_row_are_swept_after_the_grace_period(app: TestApp) {
    let login = app.login(APP1, "ned").await;
    let kept = post_body(
        &app,
        token(&login),
        wx_upload("image", None, "k.png", &png(40)),
    )
    .await;
    assert_eq!(kept.status, 201, "{:?}", kept.body);
    // Bytes a crashed upload left: stored under a file id with no row (in
    // the S3 case, put into the bucket's folder behind the server's back).
    let orphan = uuid::Uuid::now_v7().to_string();
    std::fs::create_dir_all(&app.files_root).unwrap();
    std::fs::write(app.files_root.join(&orphan), png(10)).unwrap();
    // Something else under the prefix that is not wxauth's: left alone.
    std::fs::write(app.files_root.join("notes.txt"), b"not a file id").unwrap();
    // The local store's half-written file of an upload that never ended.
    let partial = app.files_root.join(format!("{orphan}#7"));
    if app.s3.is_none() {
        std::fs::write(&partial, b"half").unwrap();
    }
    eventually("the orphan was not swept", || {
        !app.files_root.join(&orphan).exists() && !partial.exists()
    })
    .await;
    assert!(app.files_root.join("notes.txt").exists());
    let resp = fetch(&app, kept.body["url"].as_str().unwrap(), &[]).await;
    assert_eq!(resp.status(), 200, "a file with its row stays");
    assert!(
        app.metrics()
            .await
            .contains("wxauth_file_orphans_removed_total")
    );
}

/// A body in two halves over a raw connection, with `between` run after
/// the first half (the store stopping, say).
async fn upload_in_two_halves(
    app: &TestApp,
    token: &str,
    body: &[u8],
    between: impl std::future::Future<Output = ()>,
) -> String {
    let address = app.url.trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /v1/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body[..body.len() / 2]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    between.await;
    let _ = s.write_all(&body[body.len() / 2..]).await;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut answer))
        .await
        .expect("no answer")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_store_that_stops_mid_upload_is_a_503_and_records_nothing() {
    let Some(mut app) = spawn_app_with(Options {
        files: FileBackend::S3,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let login = app.login(APP1, "oli").await;
    let t = token(&login).to_owned();
    let before = post_body(&app, &t, wx_upload("image", None, "a.png", &png(64))).await;
    assert_eq!(before.status, 201, "{:?}", before.body);
    // 6 MiB: the store has been asked to begin the upload (and been sent
    // a first part) before it stops.
    let body = wx_upload("attachment", None, "big.bin", &vec![7u8; 6 << 20]);
    let mut s3 = app.s3.take().unwrap();
    let answer = upload_in_two_halves(&app, &t, &body, async { s3.stop() }).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("storage_unavailable"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    // A download meanwhile is a 503 too, not a 404 or a 500.
    let resp = fetch(&app, before.body["url"].as_str().unwrap(), &[]).await;
    assert_eq!(resp.status(), 503);
    // Back up: nothing of the failed upload is visible, the earlier file is.
    s3.restart();
    app.s3 = Some(s3);
    let list = app.call(Method::GET, "/v1/files", Some(&t), None).await;
    assert_eq!(
        list.body["items"].as_array().unwrap().len(),
        1,
        "{:?}",
        list.body
    );
    assert_eq!(stored(&app), 1);
    let resp = fetch(&app, before.body["url"].as_str().unwrap(), &[]).await;
    assert_eq!(resp.status(), 200);
    let r = post_body(&app, &t, wx_upload("image", None, "b.png", &png(64))).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}

/// A tmpfs of `bytes` mounted on a new folder (unmounted when dropped), or
/// None when this process may not mount (not root).
struct TinyDisk {
    dir: crate::db::TempDir,
}

impl TinyDisk {
    fn mount(bytes: usize) -> Option<Self> {
        let dir = crate::db::temp_dir();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(&dir.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            crate::spawn::skipped("permission to mount a tmpfs (the full-disk test runs as root)");
            return None;
        }
        Some(Self { dir })
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(&self.dir.0)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_a_503_and_records_nothing() {
    let Some(disk) = TinyDisk::mount(256 * 1024) else {
        return;
    };
    let root = disk.dir.0.join("files");
    let url = format!("file://{}", root.display());
    let app = spawn_app_with(Options {
        edit: Some(Box::new(move |c| c.files.url = url)),
        ..Options::default()
    })
    .await
    .unwrap();
    let login = app.login(APP1, "pat").await;
    let t = token(&login);
    let small = post_body(&app, t, wx_upload("image", None, "s.png", &png(1000))).await;
    assert_eq!(small.status, 201, "{:?}", small.body);
    let r = post_body(
        &app,
        t,
        wx_upload("attachment", None, "big.bin", &vec![1u8; 512 * 1024]),
    )
    .await;
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert_eq!(r.body["error"], "storage_unavailable");
    assert_eq!(r.headers["retry-after"], "1");
    let list = app.call(Method::GET, "/v1/files", Some(t), None).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    let left: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec![small.body["id"].as_str().unwrap().to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upload_is_answered_whether_the_client_sends_or_waits_to_send() {
    let app = spawn_app().await;
    let body = wx_upload("image", None, "a.png", &png(200_000));
    let address = app.url.trim_start_matches("http://").to_owned();
    // Still sending when refused: the rest is read, the 401 arrives.
    let answer = upload_in_two_halves(&app, "not-a-token", &body, async {}).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    // Waiting for 100 Continue: refused at once, no invitation to send.
    let mut s = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /v1/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer not-a-token\r\nExpect: 100-continue\r\n\
         Content-Type: {MULTIPART}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut first = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut first))
        .await
        .expect("no answer while the client waits to send")
        .unwrap();
    let text = String::from_utf8_lossy(&first[..n]);
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
}
