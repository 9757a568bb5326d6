//! `wxauth import` as a real process over exports shaped like LeanCloud's
//! and CloudBase's (tests/fixtures), into SQLite and PostgreSQL; then each
//! migrated user logs in through the simulator with `wx.login`'s code for
//! their openid and finds exactly their own documents over HTTP. Also:
//! importing twice changes no row, a dry run writes nothing, and an import
//! killed at any point finishes when run again with the same rows as one
//! that never stopped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::Row;

use crate::app::*;
use crate::db::{TempDir, temp_dir};
use crate::spawn::{BIN, ConfigFile};

const ALICE: &str = "oAlice0000000000000000000001";
const BOB: &str = "oBob00000000000000000000002";
const CAROL: &str = "oCarol000000000000000000003";
const DAVE: &str = "oDave00000000000000000000004";

fn fixtures(platform: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(platform)
}

/// The LeanCloud fixtures copied to `dir`, with one line too large to be
/// a document appended to Todo (kept out of the repository).
fn leancloud_export(dir: &Path) -> Vec<PathBuf> {
    let out = dir.join("export");
    std::fs::create_dir_all(&out).unwrap();
    let mut paths = Vec::new();
    // Not in class order: Todo points at Project rows read after it, and
    // the _User file comes last.
    for name in [
        "Todo.jsonl",
        "Comment.jsonl",
        "Project.jsonl",
        "_File.jsonl",
        "订单.jsonl",
        "_User.jsonl",
    ] {
        let to = out.join(name);
        std::fs::copy(fixtures("leancloud").join(name), &to).unwrap();
        paths.push(to);
    }
    let big = json!({
        "objectId": "60c0000000000000000000ff",
        "content": "x".repeat(70_000),
        "ACL": {"60a1b2c3d4e5f60011aa0001": {"read": true, "write": true}},
    });
    let mut todo = std::fs::read_to_string(&paths[0]).unwrap();
    todo.push_str(&format!("{big}\n"));
    std::fs::write(&paths[0], todo).unwrap();
    paths
}

fn import(config: &Path, args: &[&str], paths: &[PathBuf]) -> Output {
    Command::new(BIN)
        .arg("import")
        .args(args)
        .arg("--config")
        .arg(config)
        .args(paths)
        .env_remove("WXAUTH_CONFIG")
        .env("USER", "operator-ann")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Runs an import that must succeed; its `--json` report.
fn import_ok(config: &Path, args: &[&str], paths: &[PathBuf]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = import(config, &all, paths);
    assert!(
        out.status.success(),
        "wxauth import {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Every row an import touches, as text, in a stable order (the audit
/// log, which gains an entry per run, and the sealed session_keys, whose
/// nonces are random, left out).
async fn snapshot(url: &str) -> Vec<String> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let mut out = Vec::new();
    let tables: &[(&str, &str, &[&str], &[&str])] = &[
        (
            "users",
            "id",
            &["id", "appid", "openid", "unionid", "profile"],
            &["created_at", "last_login_at"],
        ),
        (
            "documents",
            "id",
            &["id", "user_id", "appid", "collection", "data"],
            &["version", "created_at", "updated_at", "size"],
        ),
        (
            "collection_counts",
            "user_id, collection",
            &["user_id", "collection"],
            &["documents"],
        ),
        (
            "user_usage",
            "user_id",
            &["user_id"],
            &["collections", "bytes"],
        ),
        (
            "files",
            "id",
            &[
                "id",
                "user_id",
                "appid",
                "purpose",
                "content_type",
                "sha256",
                "filename",
                "status",
            ],
            &["size", "created_at"],
        ),
        (
            "import_user_map",
            "platform, appid, legacy_id",
            &["platform", "appid", "legacy_id", "user_id"],
            &[],
        ),
    ];
    for (table, order, texts, ints) in tables {
        let columns: Vec<&str> = texts.iter().chain(ints.iter()).copied().collect();
        let sql = format!(
            "SELECT {} FROM {table} ORDER BY {order}",
            columns.join(", ")
        );
        for row in sqlx::query(&sql).fetch_all(&pool).await.unwrap() {
            let mut line = format!("{table}:");
            for c in *texts {
                line.push_str(&format!(
                    " {c}={:?}",
                    row.try_get::<Option<String>, _>(*c).unwrap()
                ));
            }
            for c in *ints {
                line.push_str(&format!(" {c}={}", row.try_get::<i64, _>(*c).unwrap()));
            }
            out.push(line);
        }
    }
    pool.close().await;
    out
}

async fn login_as(app: &TestApp, openid: &str) -> Value {
    let code = app.sim.login_code_for_openid(APP1, openid, None).unwrap();
    let r = app
        .post("/v1/login", None, json!({"code": code, "appid": APP1}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body
}

/// The caller's whole collection, oldest first.
async fn documents(app: &TestApp, login: &Value, collection: &str) -> Vec<Value> {
    let r = app
        .get(
            &format!("/v1/data/{collection}?order_by=created_at&limit=100"),
            Some(token(login)),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["items"].as_array().unwrap().clone()
}

fn skipped(report: &Value, class: &str) -> Value {
    let c = report["collections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["class"] == class)
        .unwrap_or_else(|| panic!("no class {class} in {report}"));
    c["skipped"].clone()
}

fn stored(report: &Value, class: &str) -> (u64, u64) {
    let c = report["collections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["class"] == class)
        .unwrap_or_else(|| panic!("no class {class} in {report}"));
    (
        c["stored"].as_u64().unwrap(),
        c["already_present"].as_u64().unwrap(),
    )
}

/// An app on `db`, and a configuration file for the CLI on its database.
async fn app_and_config(db: Db) -> Option<(TestApp, TempDir, PathBuf)> {
    let app = spawn_app_with(Options {
        db,
        ..Options::default()
    })
    .await?;
    let dir = temp_dir();
    let config = ConfigFile {
        tail: "# The operator's own note, kept by --write-config.\n".into(),
        ..ConfigFile::on(&app.database_url, &app.sim_url)
    }
    .write(&dir.0);
    Some((app, dir, config))
}

async fn leancloud_users_find_their_own_data(db: Db) {
    let Some((app, dir, config)) = app_and_config(db).await else {
        return;
    };
    // Dave used the new backend before the import: he stays one user.
    let dave_before = login_as(&app, DAVE).await;
    assert_eq!(dave_before["new_user"], true);
    let paths = leancloud_export(&dir.0);
    let appid = ["leancloud", "--appid", APP1];

    // A dry run reads everything, reports what a run would do, writes nothing.
    let before = snapshot(&app.database_url).await;
    let dry = import_ok(&config, &[&appid[..], &["--dry-run"]].concat(), &paths);
    assert_eq!(snapshot(&app.database_url).await, before);
    assert_eq!(dry["dry_run"], true);

    let report = import_ok(&config, &appid, &paths);
    assert_eq!(report["dry_run"], false);
    assert_eq!(report["limits_applied"], true);
    let users = &report["users"];
    assert_eq!(users["rows"], 7);
    assert_eq!(users["created"], 3, "{users}");
    assert_eq!(users["existing"], 1, "{users}");
    assert_eq!(
        users["skipped"],
        json!({"no_wechat_identity": 2, "invalid_json": 1})
    );
    assert_eq!(stored(&report, "Todo"), (4, 0));
    assert_eq!(
        skipped(&report, "Todo"),
        json!({"no_owner": 2, "not_an_object": 1, "no_object_id": 1, "too_large": 1})
    );
    assert_eq!(stored(&report, "Project"), (2, 0));
    assert_eq!(stored(&report, "Comment"), (2, 0));
    assert_eq!(skipped(&report, "_File"), json!({"system_class": 1}));
    assert_eq!(skipped(&report, "订单"), json!({"bad_class_name": 1}));
    // The dry run said the same.
    for class in ["Todo", "Project", "Comment"] {
        assert_eq!(stored(&dry, class), stored(&report, class), "{class}");
        assert_eq!(skipped(&dry, class), skipped(&report, class), "{class}");
    }
    assert_eq!(dry["users"], report["users"]);
    // Each problem names its file and line, in order.
    let problems: Vec<String> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}:{}:{}",
                Path::new(p["file"].as_str().unwrap())
                    .file_name()
                    .unwrap()
                    .to_string_lossy(),
                p["line"],
                p["code"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        problems,
        [
            // _User is read first, whatever the order given.
            "_User.jsonl:5:no_wechat_identity",
            "_User.jsonl:6:no_wechat_identity",
            "_User.jsonl:7:invalid_json",
            "Todo.jsonl:4:no_owner",
            "Todo.jsonl:5:no_owner",
            "Todo.jsonl:7:not_an_object",
            // Line 8 is blank: passed over, not a problem.
            "Todo.jsonl:9:no_object_id",
            "Todo.jsonl:10:too_large",
            "_File.jsonl:1:system_class",
            "订单.jsonl:1:bad_class_name",
        ]
    );
    assert_eq!(report["values"]["files_as_urls"], 1);
    assert_eq!(report["values"]["bytes_as_base64"], 1);
    assert_eq!(report["values"]["relations_left_out"], 1);
    assert_eq!(report["values"]["pointers_kept"], 1);
    let suggested = &report["suggested_collections"];
    assert!(
        suggested.as_array().unwrap().contains(
            &json!({"name": "project", "access": "public_read", "indexes": [],
                "why": "every row's ACL let everyone read it (\"*\": {\"read\": true})"})
        ),
        "{suggested}"
    );

    // Alice: her todo, project and comment, with their fields and times.
    let alice = login_as(&app, ALICE).await;
    assert_eq!(alice["new_user"], false, "{alice}");
    assert_eq!(alice["user"]["unionid"], "uAliceUnion000000000000000001");
    assert_eq!(alice["user"]["created_at"], "2023-01-05T02:03:04.567Z");
    let me = app.get("/v1/me", Some(token(&alice))).await;
    assert_eq!(me.body["profile"]["nickname"], "Alice", "{:?}", me.body);
    assert_eq!(
        me.body["profile"]["avatar_url"],
        "https://thirdwx.qlogo.cn/mmopen/alice/132"
    );
    let alice_id = alice["user"]["id"].as_str().unwrap().to_owned();
    let projects = documents(&app, &alice, "project").await;
    assert_eq!(projects.len(), 1);
    assert_eq!(projects[0]["data"]["name"], "Home");
    assert_eq!(projects[0]["data"]["owner"], alice_id.as_str());
    let todos = documents(&app, &alice, "todo").await;
    assert_eq!(todos.len(), 1, "{todos:?}");
    let t1 = &todos[0];
    assert_eq!(t1["created_at"], "2023-06-10T08:30:00.123Z");
    assert_eq!(t1["updated_at"], "2023-06-11T09:45:00.456Z");
    assert_eq!(t1["version"], 1);
    assert_eq!(
        t1["data"],
        json!({
            "_legacy_id": "60c000000000000000000001",
            "content": "Buy milk",
            "done": false,
            "priority": 2,
            "project": projects[0]["id"],
            "due": "2023-07-01T18:00:00.000Z",
            "location": {"latitude": 31.2304, "longitude": 121.4737},
            "tags": ["home", "shop"],
            "checklist": [
                {"item": "milk", "done": true, "steps": [[1, 2], [3, {"deep": "yes"}]]},
                {"item": "eggs", "done": false}
            ],
            "attachment": "https://lc-abc123.cn-n1.lcfile.com/list.png",
        })
    );
    let comments = documents(&app, &alice, "comment").await;
    assert_eq!(comments.len(), 1);
    assert_eq!(comments[0]["data"]["text"], "记得买有机的 🥛");
    assert_eq!(comments[0]["data"]["todo"], t1["id"]);
    assert_eq!(comments[0]["data"]["author"], alice_id.as_str());

    // Bob: owned by a pointer (his todo's ACL names no writer).
    let bob = login_as(&app, BOB).await;
    assert_eq!(bob["new_user"], false);
    assert_eq!(bob["user"]["unionid"], "uBobUnion00000000000000000002");
    let me = app.get("/v1/me", Some(token(&bob))).await;
    assert_eq!(me.body["profile"]["nickname"], "张三🍵");
    let carol = login_as(&app, CAROL).await;
    assert_eq!(carol["user"]["unionid"], "uCarolUnion0000000000000003");
    let carol_id = carol["user"]["id"].as_str().unwrap();
    let bob_todos = documents(&app, &bob, "todo").await;
    assert_eq!(bob_todos.len(), 1);
    assert_eq!(bob_todos[0]["data"]["content"], "周报");
    assert_eq!(
        bob_todos[0]["data"]["watchers"],
        json!([alice_id, carol_id])
    );
    let bob_projects = documents(&app, &bob, "project").await;
    assert_eq!(bob_todos[0]["data"]["project"], bob_projects[0]["id"]);
    let bob_comments = documents(&app, &bob, "comment").await;
    assert_eq!(bob_comments[0]["data"]["todo"], bob_todos[0]["id"]);

    // Carol: the todo two users could write goes to its first _User
    // pointer in the line (zeta_user), not the first by name.
    let carol_todos = documents(&app, &carol, "todo").await;
    let contents: Vec<&str> = carol_todos
        .iter()
        .map(|t| t["data"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["Shared chore", "odd values"]);
    let odd = &carol_todos[1]["data"];
    assert_eq!(odd["blob"], "aGVsbG8=");
    assert!(odd.get("likes").is_none(), "{odd}");
    assert_eq!(odd["role"]["className"], "_Role");

    // Dave is who he was, with nothing imported.
    let dave = login_as(&app, DAVE).await;
    assert_eq!(dave["new_user"], false);
    assert_eq!(dave["user"]["id"], dave_before["user"]["id"]);
    assert!(documents(&app, &dave, "todo").await.is_empty());

    // Again: nothing changes (and --write-config adds the suggestions).
    let before = snapshot(&app.database_url).await;
    let again = import_ok(&config, &[&appid[..], &["--write-config"]].concat(), &paths);
    assert_eq!(again["users"]["created"], 0);
    assert_eq!(again["users"]["existing"], 4);
    assert_eq!(stored(&again, "Todo"), (0, 4));
    assert_eq!(stored(&again, "Comment"), (0, 2));
    assert_eq!(snapshot(&app.database_url).await, before);
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("# The operator's own note"), "{text}");
    assert!(
        text.contains("name = \"project\"\naccess = \"public_read\""),
        "{text}"
    );
    assert!(text.contains("name = \"todo\"\naccess = \"private\"\nindexes = [\"project\"]"));
    // Two runs wrote, two audit entries (the dry run wrote none).
    let audit = app
        .admin(
            Some(ADMIN_KEY),
            reqwest::Method::GET,
            &format!("/admin/v1/audit?target=app:{APP1}"),
            None,
        )
        .await;
    let imports: Vec<&Value> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "cli import leancloud")
        .collect();
    assert_eq!(imports.len(), 2, "{:?}", audit.body);
    assert_eq!(imports[0]["actor"], "cli:operator-ann");
    assert_eq!(imports[1]["detail"]["documents_stored"], 8);
}

#[tokio::test]
async fn leancloud_users_find_their_own_data_on_sqlite() {
    leancloud_users_find_their_own_data(Db::Sqlite).await;
}

#[tokio::test]
async fn leancloud_users_find_their_own_data_on_postgres() {
    leancloud_users_find_their_own_data(Db::Postgres).await;
}

async fn cloudbase_rows_go_to_their_openids(db: Db) {
    let Some((app, _dir, config)) = app_and_config(db).await else {
        return;
    };
    let alice_before = login_as(&app, ALICE).await;
    let paths = [fixtures("cloudbase").join("todos.json")];
    let args = ["cloudbase", "--appid", APP1, "--collection", "todos"];
    let report = import_ok(&config, &args, &paths);
    assert_eq!(stored(&report, "todos"), (3, 0));
    assert_eq!(
        skipped(&report, "todos"),
        json!({"no_openid": 1, "invalid_json": 1})
    );
    assert_eq!(report["users"]["created"], 1);
    let again = import_ok(&config, &args, &paths);
    assert_eq!(stored(&again, "todos"), (0, 3));
    assert_eq!(again["users"]["created"], 0);

    let alice = login_as(&app, ALICE).await;
    assert_eq!(alice["user"]["id"], alice_before["user"]["id"]);
    let todos = documents(&app, &alice, "todos").await;
    assert_eq!(todos.len(), 2);
    assert_eq!(todos[0]["created_at"], "2023-06-20T10:00:00.000Z");
    assert_eq!(todos[0]["updated_at"], "2023-06-21T10:00:00.000Z");
    assert_eq!(
        todos[0]["data"],
        json!({
            "_legacy_id": "8f7d2b5c63a0f1d80012ab3c4d5e6f70",
            "content": "从云开发来",
            "done": false,
            "createTime": "2023-06-20T10:00:00.000Z",
            "updateTime": "2023-06-21T10:00:00.000Z",
            "location": {"type": "Point", "coordinates": [121.4737, 31.2304]},
            "steps": [{"at": "2023-06-20T11:00:00.000Z", "what": "start"}],
        })
    );
    assert_eq!(todos[1]["data"]["content"], "second of Alice's");
    let newcomer = login_as(&app, "oNewCloudbase0000000000000009").await;
    assert_eq!(newcomer["new_user"], false);
    let theirs = documents(&app, &newcomer, "todos").await;
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0]["data"]["content"], "a user only CloudBase knew");
}

#[tokio::test]
async fn cloudbase_rows_go_to_their_openids_on_sqlite() {
    cloudbase_rows_go_to_their_openids(Db::Sqlite).await;
}

#[tokio::test]
async fn cloudbase_rows_go_to_their_openids_on_postgres() {
    cloudbase_rows_go_to_their_openids(Db::Postgres).await;
}

#[tokio::test]
async fn bad_arguments_are_refused_before_anything_is_written() {
    let Some((app, dir, config)) = app_and_config(Db::Sqlite).await else {
        return;
    };
    let paths = leancloud_export(&dir.0);
    let before = snapshot(&app.database_url).await;
    for (args, paths, says) in [
        (
            vec!["leancloud", "--appid", "wx_not_configured"],
            paths.clone(),
            "wx_not_configured",
        ),
        (
            vec!["leancloud", "--appid", APP1],
            vec![dir.0.join("missing.jsonl")],
            "missing.jsonl",
        ),
        (
            vec!["cloudbase", "--appid", APP1, "--collection", "Bad Name"],
            paths.clone(),
            "Bad Name",
        ),
    ] {
        let out = import(&config, &args, &paths);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert_eq!(snapshot(&app.database_url).await, before);
}

/// An export big enough for a kill to land in the middle: users, projects
/// owned by pointers, todos owned by ACLs and pointing at projects.
fn generated_export(dir: &Path, users: usize, todos: usize) -> Vec<PathBuf> {
    use std::fmt::Write as _;
    let out = dir.join("generated");
    std::fs::create_dir_all(&out).unwrap();
    let uid = |i: usize| format!("u{i:023}");
    let mut text = String::new();
    for i in 0..users {
        writeln!(
            text,
            r#"{{"objectId":"{}","nickName":"用户{i}","authData":{{"lc_weapp":{{"openid":"oGen{i:024}"}}}},"createdAt":"2023-01-01T00:00:{:02}.000Z","updatedAt":"2023-01-02T00:00:00.000Z"}}"#,
            uid(i),
            i % 60
        )
        .unwrap();
    }
    std::fs::write(out.join("_User.jsonl"), &text).unwrap();
    text.clear();
    for i in 0..users {
        writeln!(
            text,
            r#"{{"objectId":"p{i:023}","name":"project {i}","owner":{{"__type":"Pointer","className":"_User","objectId":"{}"}},"createdAt":"2023-02-01T00:00:00.000Z","updatedAt":"2023-02-01T00:00:00.000Z"}}"#,
            uid(i)
        )
        .unwrap();
    }
    std::fs::write(out.join("Project.jsonl"), &text).unwrap();
    text.clear();
    for i in 0..todos {
        let owner = i % users;
        writeln!(
            text,
            r#"{{"objectId":"t{i:023}","content":"todo {i} ✓","n":{i},"project":{{"__type":"Pointer","className":"Project","objectId":"p{owner:023}"}},"due":{{"__type":"Date","iso":"2023-07-01T00:00:00.000Z"}},"ACL":{{"{}":{{"read":true,"write":true}}}},"createdAt":"2023-03-01T00:{:02}:00.000Z","updatedAt":"2023-03-02T00:00:00.000Z"}}"#,
            uid(owner),
            i % 60
        )
        .unwrap();
    }
    std::fs::write(out.join("Todo.jsonl"), &text).unwrap();
    ["Todo.jsonl", "Project.jsonl", "_User.jsonl"]
        .iter()
        .map(|n| out.join(n))
        .collect()
}

async fn count_documents(url: &str) -> i64 {
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM documents")
        .fetch_one(&pool)
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
    pool.close().await;
    n
}

async fn a_killed_import_finishes_when_run_again(db: Db) {
    let Some((killed, dir, killed_config)) = app_and_config(db).await else {
        return;
    };
    let Some((whole, _dir2, whole_config)) = app_and_config(db).await else {
        return;
    };
    const USERS: usize = 400;
    const TODOS: usize = 20_000;
    let paths = generated_export(&dir.0, USERS, TODOS);
    let args = ["leancloud", "--appid", APP1];
    let report = import_ok(&whole_config, &args, &paths);
    assert_eq!(stored(&report, "Todo"), (TODOS as u64, 0));

    // Kill it three times: first at a random early moment (users or the
    // first batches), then each time just after the documents grew, so
    // the kills land between commits and inside them.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let mut mid_way = 0;
    let total = (TODOS + USERS) as i64;
    let mut last = 0;
    for attempt in 0..3u64 {
        let mut child = Command::new(BIN)
            .arg("import")
            .args(args)
            .arg("--config")
            .arg(&killed_config)
            .args(&paths)
            .env_remove("WXAUTH_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let jitter = Duration::from_millis(seed.wrapping_mul(attempt + 7) % 25);
        if attempt == 0 {
            tokio::time::sleep(Duration::from_millis(seed % 60)).await;
        } else {
            while count_documents(&killed.database_url).await <= last
                && child.try_wait().unwrap().is_none()
            {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            tokio::time::sleep(jitter).await;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        last = count_documents(&killed.database_url).await;
        if last > 0 && last < total {
            mid_way += 1;
        }
        if last >= total {
            break;
        }
    }
    assert!(mid_way >= 1, "no kill landed mid-way through the import");
    let rest = import_ok(&killed_config, &args, &paths);
    let (stored_now, present) = stored(&rest, "Todo");
    assert_eq!(stored_now + present, TODOS as u64);
    assert_eq!(
        snapshot(&killed.database_url).await,
        snapshot(&whole.database_url).await
    );
}

#[tokio::test]
async fn a_killed_import_finishes_when_run_again_on_sqlite() {
    a_killed_import_finishes_when_run_again(Db::Sqlite).await;
}

#[tokio::test]
async fn a_killed_import_finishes_when_run_again_on_postgres() {
    a_killed_import_finishes_when_run_again(Db::Postgres).await;
}

/// A stand-in for LeanCloud's file CDN: serves each path's bytes (404
/// for others) and counts requests per path.
struct FileHost {
    url: String,
    hits: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
}

fn file_host(files: Vec<(&'static str, Vec<u8>)>) -> FileHost {
    use axum::extract::{Path as UrlPath, State};
    type Served = std::sync::Arc<std::collections::HashMap<String, Vec<u8>>>;
    type Hits = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>;
    let hits: Hits = Default::default();
    let files: std::sync::Arc<std::collections::HashMap<String, Vec<u8>>> =
        std::sync::Arc::new(files.into_iter().map(|(k, v)| (k.to_owned(), v)).collect());
    let app =
        axum::Router::new()
            .route(
                "/{name}",
                axum::routing::get(
                    |State((files, hits)): State<(Served, Hits)>,
                     UrlPath(name): UrlPath<String>| async move {
                        *hits.lock().unwrap().entry(name.clone()).or_default() += 1;
                        match files.get(&name) {
                            Some(b) => (axum::http::StatusCode::OK, b.clone()),
                            None => (axum::http::StatusCode::NOT_FOUND, b"no such file".to_vec()),
                        }
                    },
                ),
            )
            .with_state((files, hits.clone()));
    // On a thread of its own: the test waits for the CLI synchronously.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await
            })
    });
    FileHost { url, hits }
}

impl FileHost {
    fn hits(&self, name: &str) -> usize {
        self.hits.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

/// A file URL the server gave (a path, or absolute with `public_url`).
fn absolute(app: &TestApp, url: &str) -> String {
    if url.starts_with('/') {
        format!("{}{url}", app.url)
    } else {
        url.to_owned()
    }
}

const ALICE_LC: &str = "60a1b2c3d4e5f60011aa0001";
const BOB_LC: &str = "60a1b2c3d4e5f60011aa0002";

async fn leancloud_files_are_fetched_into_the_file_store(db: Db) {
    let Some(app) = spawn_app_with(Options {
        db,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let dir = temp_dir();
    // The CLI shares the app's file folder; files past 4 KiB are refused.
    let config = ConfigFile {
        tail: format!(
            "[files]\nurl = \"file://{}\"\nmax_bytes = 4096\n",
            app.files_root.display()
        ),
        ..ConfigFile::on(&app.database_url, &app.sim_url)
    }
    .write(&dir.0);
    let list_png = crate::files::png(600);
    let notes_pdf = b"%PDF-1.4 Alice's notes".to_vec();
    let host = file_host(vec![
        ("list.png", list_png.clone()),
        ("notes.pdf", notes_pdf.clone()),
        ("big.bin", vec![7u8; 8192]),
        ("empty.txt", Vec::new()),
    ]);
    let out = dir.0.join("export");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::copy(
        fixtures("leancloud").join("_User.jsonl"),
        out.join("_User.jsonl"),
    )
    .unwrap();
    let u = &host.url;
    let file_rows = [
        // Public (no ACL), owner in metaData: the fixture's list.png.
        json!({"objectId": "60f000000000000000000001", "name": "list.png",
            "url": format!("{u}/list.png"), "mime_type": "image/png",
            "metaData": {"size": 608, "owner": ALICE_LC},
            "createdAt": "2023-06-10T08:29:00.000Z", "updatedAt": "2023-06-10T08:29:00.000Z"}),
        // Private (ACL without "*"), the owner from the ACL (metaData says unknown).
        json!({"objectId": "60f000000000000000000002", "name": "notes.pdf",
            "url": format!("{u}/notes.pdf?token=secret-signature"),
            "metaData": {"owner": "unknown"},
            "ACL": {ALICE_LC: {"read": true, "write": true}},
            "createdAt": "2023-06-11T00:00:00.000Z"}),
        json!({"objectId": "60f000000000000000000003", "name": "gone.png",
            "url": format!("{u}/gone.png"), "metaData": {"owner": BOB_LC}}),
        json!({"objectId": "60f000000000000000000004", "name": "big.bin",
            "url": format!("{u}/big.bin"), "metaData": {"owner": BOB_LC}}),
        json!({"objectId": "60f000000000000000000005", "name": "orphan.png",
            "url": format!("{u}/list.png"), "metaData": {"owner": "60a1b2c3d4e5f600110000ff"}}),
        json!({"objectId": "60f000000000000000000006", "name": "nowhere"}),
        json!({"objectId": "60f000000000000000000007", "name": "empty.txt",
            "url": format!("{u}/empty.txt"), "metaData": {"owner": BOB_LC}}),
    ];
    let mut text = String::new();
    for r in &file_rows {
        text.push_str(&format!("{r}\n"));
    }
    std::fs::write(out.join("_File.jsonl"), text).unwrap();
    let acl = |who: &str| json!({who: {"read": true, "write": true}});
    let notes = [
        json!({"objectId": "70a000000000000000000001", "title": "shopping",
            "picture": {"__type": "File", "objectId": "60f000000000000000000001",
                "name": "list.png", "url": "https://lc-abc123.cn-n1.lcfile.com/list.png"},
            "pages": [{"__type": "Pointer", "className": "_File", "objectId": "60f000000000000000000002"}],
            "ACL": acl(ALICE_LC)}),
        json!({"objectId": "70a000000000000000000002", "title": "lost",
            "picture": {"__type": "File", "objectId": "60f000000000000000000003",
                "name": "gone.png", "url": format!("{u}/gone.png")},
            "ACL": acl(BOB_LC)}),
    ];
    let mut text = String::new();
    for r in &notes {
        text.push_str(&format!("{r}\n"));
    }
    std::fs::write(out.join("Note.jsonl"), text).unwrap();
    // Given in an order where the notes come before the files.
    let paths = vec![
        out.join("Note.jsonl"),
        out.join("_File.jsonl"),
        out.join("_User.jsonl"),
    ];
    let args = ["leancloud", "--appid", APP1, "--fetch-files"];
    let files_in_folder = || {
        std::fs::read_dir(&app.files_root)
            .map(|d| d.count())
            .unwrap_or(0)
    };

    // A dry run downloads and writes nothing, and says what it would do.
    let before = snapshot(&app.database_url).await;
    let dry = import_ok(&config, &[&args[..], &["--dry-run"]].concat(), &paths);
    assert_eq!(snapshot(&app.database_url).await, before);
    assert_eq!(files_in_folder(), 0);
    assert_eq!(host.hits("list.png"), 0);
    // (Every file with an owner and a URL: a dry run does not download.)
    assert_eq!(dry["downloads"]["fetched"], 5, "{}", dry["downloads"]);
    assert_eq!(dry["values"]["files_fetched"], 3, "{}", dry["values"]);

    let report = import_ok(&config, &args, &paths);
    let d = &report["downloads"];
    assert_eq!(d["rows"], 7, "{d}");
    assert_eq!(d["fetched"], 2, "{d}");
    assert_eq!(d["already_present"], 0, "{d}");
    assert_eq!(
        d["bytes"].as_u64().unwrap(),
        (list_png.len() + notes_pdf.len()) as u64
    );
    assert_eq!(
        d["skipped"],
        json!({"fetch_failed": 1, "too_large": 1, "no_owner": 1, "bad_url": 1, "empty_file": 1}),
        "{}",
        report["problems"]
    );
    let problems: Vec<String> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["file"].as_str().unwrap().ends_with("_File.jsonl"))
        .map(|p| format!("{}:{}", p["line"], p["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        problems,
        [
            "3:fetch_failed",
            "4:too_large",
            "5:no_owner",
            "6:bad_url",
            "7:empty_file"
        ]
    );
    // A URL's query (a private bucket's signature) is never reported.
    assert!(!report.to_string().contains("secret-signature"));
    assert_eq!(report["values"]["files_fetched"], 2);
    assert_eq!(report["values"]["files_as_urls"], 1);
    assert_eq!(stored(&report, "Note"), (2, 0));
    // Only the fetched files' bytes are in the folder (no partial left).
    assert_eq!(files_in_folder(), 2);

    // Alice's note points at her files; the public one opens by its URL.
    let alice = login_as(&app, ALICE).await;
    let alice_id = alice["user"]["id"].as_str().unwrap();
    let note = &documents(&app, &alice, "note").await[0]["data"];
    let picture = &note["picture"];
    let picture_id = picture["id"].as_str().unwrap();
    assert_eq!(
        picture,
        &json!({"id": picture_id, "url": format!("/v1/files/{picture_id}/raw"), "name": "list.png"})
    );
    let raw = app
        .http
        .get(absolute(&app, picture["url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 200);
    assert_eq!(raw.headers()["content-type"], "image/png");
    assert_eq!(raw.bytes().await.unwrap().to_vec(), list_png);
    // The private one: no URL kept (a signed one would expire); its
    // metadata gives a signed URL that serves it.
    let page = &note["pages"][0];
    let pdf_id = page["id"].as_str().unwrap();
    assert_eq!(page, &json!({"id": pdf_id, "name": "notes.pdf"}));
    let meta = app
        .get(&format!("/v1/files/{pdf_id}"), Some(token(&alice)))
        .await;
    assert_eq!(meta.status, 200, "{:?}", meta.body);
    assert_eq!(meta.body["public"], false);
    assert_eq!(meta.body["purpose"], "attachment");
    assert_eq!(meta.body["filename"], "notes.pdf");
    assert_eq!(meta.body["created_at"], "2023-06-11T00:00:00.000Z");
    let signed = app
        .http
        .get(absolute(&app, meta.body["url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 200);
    assert_eq!(signed.bytes().await.unwrap().to_vec(), notes_pdf);
    let unsigned = app
        .http
        .get(format!("{}/v1/files/{pdf_id}/raw", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 403);
    // Both are Alice's, counted in her files.
    let listed = app.get("/v1/files", Some(token(&alice))).await;
    let mut ids: Vec<&str> = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut want = vec![picture_id, pdf_id];
    want.sort();
    assert_eq!(ids, want, "{:?} (alice {alice_id})", listed.body);
    // Bob's file could not be fetched: his note keeps the old URL.
    let bob = login_as(&app, BOB).await;
    let lost = &documents(&app, &bob, "note").await[0]["data"];
    assert_eq!(lost["picture"], format!("{u}/gone.png"));
    assert!(
        app.get("/v1/files", Some(token(&bob))).await.body["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Again: nothing fetched twice, nothing changes.
    let before = snapshot(&app.database_url).await;
    let again = import_ok(&config, &args, &paths);
    assert_eq!(again["downloads"]["fetched"], 0);
    assert_eq!(again["downloads"]["already_present"], 2);
    assert_eq!(host.hits("list.png"), 1);
    assert_eq!(host.hits("notes.pdf"), 1);
    assert_eq!(snapshot(&app.database_url).await, before);
    assert_eq!(files_in_folder(), 2);

    // Without --fetch-files, _File rows are reported and files stay URLs.
    let plain = import_ok(
        &config,
        &["leancloud", "--appid", APP1, "--dry-run"],
        &paths,
    );
    assert!(plain.get("downloads").is_none(), "{plain}");
    assert_eq!(skipped(&plain, "_File"), json!({"system_class": 7}));
}

#[tokio::test]
async fn leancloud_files_are_fetched_into_the_file_store_on_sqlite() {
    leancloud_files_are_fetched_into_the_file_store(Db::Sqlite).await;
}

#[tokio::test]
async fn leancloud_files_are_fetched_into_the_file_store_on_postgres() {
    leancloud_files_are_fetched_into_the_file_store(Db::Postgres).await;
}
