//! The store suite, written once, run on SQLite and PostgreSQL.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use wxauth::store::{LoggedIn, LoginWrite, RefreshOutcome, Store};

use crate::db::both_backends;

both_backends!(
    login_creates_then_updates_the_user,
    refresh_rotation_and_reuse_detection,
    expired_and_unknown_refresh_tokens,
    revocation,
    profile_versions,
    phone,
    concurrent_logins_share_commits,
    a_failing_write_does_not_sink_its_batch,
    creates_queued_together_keep_every_limit,
    logins_queued_together,
    reads_arriving_together_stay_in_their_scope,
);

/// Two instances (two stores on one database) patching one profile at once:
/// every field survives.
async fn concurrent_profile_changes_from_two_instances(url: &str) {
    let one = Store::open(url).await.unwrap();
    let two = Store::open(url).await.unwrap();
    let LoggedIn {
        user: u,
        new_user: _,
    } = one
        .login(login("wxa", "o-two-instances", None, b"k", "r-ti", 1000))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = if i % 2 == 0 { one.clone() } else { two.clone() };
        let id = u.id.clone();
        tasks.push(tokio::spawn(async move {
            let change: wxauth::store::ProfileChange = Box::new(move |cur: &str| {
                let mut v: serde_json::Value = serde_json::from_str(cur).unwrap();
                v[format!("f{i}")] = serde_json::json!(i);
                Ok(v.to_string())
            });
            store.modify_profile(&id, change).await.unwrap().unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let profile: serde_json::Value =
        serde_json::from_str(&one.user(&u.id).await.unwrap().unwrap().profile).unwrap();
    assert_eq!(profile.as_object().unwrap().len(), 20, "{profile}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sqlite() {
    let db = crate::db::sqlite().await;
    concurrent_profile_changes_from_two_instances(&db.url).await;
    one_idempotency_key_on_two_instances(&db.url).await;
}

/// Two instances whose group commits lock the same rows in opposite orders
/// (a batch of changes to users A then B on one, B then A on the other):
/// PostgreSQL breaks each deadlock by failing one transaction, and the
/// writer runs that batch again, so no write fails.
async fn crossed_batches_from_two_instances_all_succeed(url: &str) {
    let one = Store::open(url).await.unwrap();
    let two = Store::open(url).await.unwrap();
    let LoggedIn {
        user: a,
        new_user: _,
    } = one
        .login(login("wxa", "o-cross-a", None, b"k", "r-cross-a", 1000))
        .await
        .unwrap();
    let LoggedIn {
        user: b,
        new_user: _,
    } = one
        .login(login("wxa", "o-cross-b", None, b"k", "r-cross-b", 1000))
        .await
        .unwrap();
    // Each change holds its row lock a little, so the batches overlap.
    let change = |field: String| -> wxauth::store::ProfileChange {
        Box::new(move |cur: &str| {
            std::thread::sleep(std::time::Duration::from_millis(5));
            let mut v: serde_json::Value = serde_json::from_str(cur).unwrap();
            v[field.as_str()] = serde_json::json!(true);
            Ok(v.to_string())
        })
    };
    let before = one.writer_stats().commits + two.writer_stats().commits;
    for round in 0..15 {
        let (first, second) = tokio::join!(
            async {
                tokio::join!(
                    one.modify_profile(&a.id, change(format!("one-a{round}"))),
                    one.modify_profile(&b.id, change(format!("one-b{round}"))),
                )
            },
            async {
                tokio::join!(
                    two.modify_profile(&b.id, change(format!("two-b{round}"))),
                    two.modify_profile(&a.id, change(format!("two-a{round}"))),
                )
            },
        );
        for r in [first.0, first.1, second.0, second.1] {
            assert!(matches!(r, Ok(Some(_))), "round {round}: {:?}", r.err());
        }
    }
    for u in [&a, &b] {
        let profile: serde_json::Value =
            serde_json::from_str(&one.user(&u.id).await.unwrap().unwrap().profile).unwrap();
        assert_eq!(profile.as_object().unwrap().len(), 30, "{profile}");
    }
    assert!(one.writer_stats().commits + two.writer_stats().commits > before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_postgres() {
    let Some(db) = crate::db::postgres().await else {
        return;
    };
    concurrent_profile_changes_from_two_instances(&db.url).await;
    one_idempotency_key_on_two_instances(&db.url).await;
    // Deadlocks are found after deadlock_timeout (1 s by default): shorter here.
    crossed_batches_from_two_instances_all_succeed(&format!(
        "{}%20-c%20deadlock_timeout%3D20ms",
        db.url
    ))
    .await;
}

fn id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn hash(s: &str) -> Vec<u8> {
    Sha256::digest(s.as_bytes()).to_vec()
}

fn login(
    appid: &str,
    openid: &str,
    unionid: Option<&str>,
    key: &[u8],
    refresh: &str,
    now: i64,
) -> LoginWrite {
    LoginWrite {
        new_user_id: id(),
        appid: appid.into(),
        openid: openid.into(),
        unionid: unionid.map(Into::into),
        session_key_enc: key.to_vec(),
        session_id: id(),
        refresh_hash: hash(refresh),
        refresh_expires_at: now + 1_000_000,
        now,
    }
}

async fn login_creates_then_updates_the_user(store: &Store) {
    let w1 = login("wxa", "o-alice", Some("u-alice"), b"k1", "r1", 1000);
    let LoggedIn {
        user: u1,
        new_user: new1,
    } = store.login(w1.clone()).await.unwrap();
    assert!(new1);
    assert_eq!(u1.id, w1.new_user_id);
    assert_eq!((u1.created_at, u1.last_login_at), (1000, 1000));
    assert_eq!(u1.profile, "{}");

    // Same (appid, openid): same user, new key, unionid kept when absent.
    let w2 = login("wxa", "o-alice", None, b"k2", "r2", 2000);
    let LoggedIn {
        user: u2,
        new_user: new2,
    } = store.login(w2).await.unwrap();
    assert!(!new2);
    assert_eq!(u2.id, u1.id);
    assert_eq!(u2.session_key_enc, b"k2");
    assert_eq!(u2.unionid.as_deref(), Some("u-alice"));
    assert_eq!((u2.created_at, u2.last_login_at), (1000, 2000));

    // Same openid in another app: another user.
    let LoggedIn {
        user: u3,
        new_user: new3,
    } = store
        .login(login("wxb", "o-alice", None, b"k3", "r3", 3000))
        .await
        .unwrap();
    assert!(new3);
    assert_ne!(u3.id, u1.id);

    assert_eq!(
        store.user(&u1.id).await.unwrap().unwrap().session_key_enc,
        b"k2"
    );
    assert!(store.user("nope").await.unwrap().is_none());
    let s = store.session(&w1.session_id).await.unwrap().unwrap();
    assert_eq!(
        (s.user_id.as_str(), s.appid.as_str(), s.revoked_at),
        (u1.id.as_str(), "wxa", None)
    );
}

async fn refresh_rotation_and_reuse_detection(store: &Store) {
    let w = login("wxa", "o-bob", None, b"k", "r1", 1000);
    let LoggedIn { user, new_user: _ } = store.login(w.clone()).await.unwrap();
    let out = store
        .rotate_refresh(hash("r1"), hash("r2"), 5000, 1100)
        .await
        .unwrap();
    assert_eq!(
        out,
        RefreshOutcome::Rotated {
            session_id: w.session_id.clone(),
            user_id: user.id.clone(),
            appid: "wxa".into()
        }
    );
    let out = store
        .rotate_refresh(hash("r2"), hash("r3"), 5000, 1200)
        .await
        .unwrap();
    assert!(matches!(out, RefreshOutcome::Rotated { .. }));
    // r1 again: reuse. The whole session is revoked, so r3 is dead too.
    let out = store
        .rotate_refresh(hash("r1"), hash("rX"), 5000, 1300)
        .await
        .unwrap();
    assert_eq!(
        out,
        RefreshOutcome::Reused {
            session_id: w.session_id.clone()
        }
    );
    assert_eq!(
        store
            .session(&w.session_id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(1300)
    );
    let out = store
        .rotate_refresh(hash("r3"), hash("r4"), 5000, 1400)
        .await
        .unwrap();
    assert_eq!(out, RefreshOutcome::Invalid);
}

async fn expired_and_unknown_refresh_tokens(store: &Store) {
    let mut w = login("wxa", "o-carol", None, b"k", "r1", 1000);
    w.refresh_expires_at = 2000;
    store.login(w).await.unwrap();
    assert_eq!(
        store
            .rotate_refresh(hash("r1"), hash("r2"), 9000, 2000)
            .await
            .unwrap(),
        RefreshOutcome::Invalid
    );
    assert_eq!(
        store
            .rotate_refresh(hash("never"), hash("r2"), 9000, 1500)
            .await
            .unwrap(),
        RefreshOutcome::Invalid
    );
}

async fn revocation(store: &Store) {
    let w = login("wxa", "o-dave", None, b"k", "r1", 1000);
    store.login(w.clone()).await.unwrap();
    assert!(
        store
            .revoke_session(&w.session_id, wxauth::vocab::RevokeReason::Logout, 1500)
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_session(&w.session_id, wxauth::vocab::RevokeReason::Logout, 1600)
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_session("no-such-session", wxauth::vocab::RevokeReason::Logout, 1600)
            .await
            .unwrap()
    );
    let revoked = store.revoked_since(1400).await.unwrap();
    assert!(
        revoked.contains(&(w.session_id.clone(), 1500)),
        "{revoked:?}"
    );
    assert!(
        !store
            .revoked_since(1501)
            .await
            .unwrap()
            .iter()
            .any(|(s, _)| *s == w.session_id)
    );
    assert_eq!(
        store
            .rotate_refresh(hash("r1"), hash("r2"), 9000, 1700)
            .await
            .unwrap(),
        RefreshOutcome::Invalid
    );
}

async fn profile_versions(store: &Store) {
    let LoggedIn {
        user: u,
        new_user: _,
    } = store
        .login(login("wxa", "o-erin", None, b"k", "r1", 1000))
        .await
        .unwrap();
    assert_eq!(u.profile_version, 0);
    let updated = store
        .modify_profile(
            &u.id,
            Box::new(|cur: &str| Ok(format!("{{\"was\":{cur}}}"))),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (updated.profile.as_str(), updated.profile_version),
        (r#"{"was":{}}"#, 1)
    );
    // A refused change leaves the profile as it was.
    let refused = store
        .modify_profile(
            &u.id,
            Box::new(|_| Err(wxauth::Error::InvalidRequest("no".into()))),
        )
        .await;
    assert!(refused.is_err());
    let u = store.user(&u.id).await.unwrap().unwrap();
    assert_eq!(
        (u.profile.as_str(), u.profile_version),
        (r#"{"was":{}}"#, 1)
    );
    assert!(
        store
            .modify_profile("nobody", Box::new(|c| Ok(c.to_owned())))
            .await
            .unwrap()
            .is_none()
    );
}

async fn phone(store: &Store) {
    let LoggedIn {
        user: u,
        new_user: _,
    } = store
        .login(login("wxa", "o-frank", None, b"k", "r1", 1000))
        .await
        .unwrap();
    assert!(u.phone_enc.is_none());
    assert!(
        store
            .set_phone(&u.id, vec![1, 2, 3], vec![9; 17])
            .await
            .unwrap()
    );
    assert_eq!(
        store.user(&u.id).await.unwrap().unwrap().phone_enc,
        Some(vec![1, 2, 3])
    );
    assert!(
        !store
            .set_phone("nobody", vec![1], vec![9; 17])
            .await
            .unwrap()
    );
}

async fn concurrent_logins_share_commits(store: &Store) {
    let store = Arc::new(store.clone());
    let before = store.writer_stats();
    let mut tasks = Vec::new();
    for i in 0..64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .login(login(
                    "wxa",
                    &format!("o-{i}"),
                    None,
                    b"k",
                    &format!("r-{i}"),
                    1000,
                ))
                .await
                .unwrap()
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let LoggedIn { user: u, new_user } = t.await.unwrap();
        assert!(new_user);
        ids.insert(u.id);
    }
    assert_eq!(ids.len(), 64);
    let after = store.writer_stats();
    assert_eq!(after.writes - before.writes, 64);
    assert!(
        after.commits - before.commits < 64,
        "{before:?} → {after:?}: no batching at all"
    );
}

async fn a_failing_write_does_not_sink_its_batch(store: &Store) {
    let store = Arc::new(store.clone());
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            if i % 4 == 0 {
                // A session for a user that does not exist: refused.
                store
                    .new_session(wxauth::store::NewSession {
                        user_id: "no-such-user".into(),
                        appid: "wxa".into(),
                        session_id: id(),
                        refresh_hash: hash(&format!("x{i}")),
                        refresh_expires_at: 9000,
                        now: 1000,
                    })
                    .await
                    .map(|_| ())
            } else {
                store
                    .login(login(
                        "wxa",
                        &format!("o-f{i}"),
                        None,
                        b"k",
                        &format!("f-{i}"),
                        1000,
                    ))
                    .await
                    .map(|_| ())
            }
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let result = t.await.unwrap();
        assert_eq!(result.is_err(), i % 4 == 0, "write {i}: {result:?}");
    }
    for i in (0..16).filter(|i| i % 4 != 0) {
        let out = store
            .rotate_refresh(hash(&format!("f-{i}")), hash(&format!("g-{i}")), 9000, 1100)
            .await
            .unwrap();
        assert!(
            matches!(out, RefreshOutcome::Rotated { .. }),
            "login {i} was not kept: {out:?}"
        );
    }
}

/// The same Idempotency-Key arriving at two instances at once: one document,
/// and both answers are the first one.
async fn one_idempotency_key_on_two_instances(url: &str) {
    use wxauth::store::{CreateOutcome, Idempotency, NewDocument};
    let one = Store::open(url).await.unwrap();
    let two = Store::open(url).await.unwrap();
    let LoggedIn {
        user: u,
        new_user: _,
    } = one
        .login(login("wxa", "o-idem", None, b"k", "r-idem", 1000))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..10 {
        let store = if i % 2 == 0 { one.clone() } else { two.clone() };
        let user_id = u.id.clone();
        tasks.push(tokio::spawn(async move {
            store
                .create_document(NewDocument {
                    id: id(),
                    user_id,
                    appid: "wxa".into(),
                    collection: "notes".into(),
                    data: "{}".into(),
                    now: 2000,
                    max_documents: 100,
                    quota: wxauth::store::UserQuota {
                        max_collections: 100,
                        max_bytes: 1 << 20,
                    },
                    idempotency: Some(Idempotency {
                        key: "same-key".into(),
                        request_hash: vec![1; 32],
                    }),
                })
                .await
                .unwrap()
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        match t.await.unwrap() {
            CreateOutcome::Created(doc) => ids.insert(doc.id),
            CreateOutcome::Replayed(first) => ids.insert(first.document_id),
            other => panic!("{other:?}"),
        };
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(
        one.count_documents(
            &wxauth::store::Scope::Owner {
                user_id: u.id.clone(),
                collection: "notes".into()
            },
            &wxauth::store::Filter::All(Vec::new())
        )
        .await
        .unwrap(),
        1
    );
}

/// Holds the writer for `ms` (a profile change runs inside the writer's
/// transaction), so every write submitted meanwhile lands in the next batch.
/// Logs in one user per (appid, name) (openid `o-{tag}-{name}`); their ids.
pub(crate) async fn log_in(store: &Store, tag: &str, who: &[(&str, &str)]) -> Vec<String> {
    let mut users = Vec::new();
    for (app, name) in who {
        let LoggedIn { user, .. } = store
            .login(login(
                app,
                &format!("o-{tag}-{name}"),
                None,
                b"k",
                &format!("r-{tag}-{name}"),
                1000,
            ))
            .await
            .unwrap();
        users.push(user.id);
    }
    users
}

fn hold_writer(store: &Store, user_id: &str, ms: u64) -> tokio::task::JoinHandle<()> {
    let store = store.clone();
    let user_id = user_id.to_string();
    tokio::spawn(async move {
        store
            .modify_profile(
                &user_id,
                Box::new(move |cur: &str| {
                    std::thread::sleep(std::time::Duration::from_millis(ms));
                    Ok(cur.to_string())
                }),
            )
            .await
            .unwrap();
    })
}

/// Creates queued together (on PostgreSQL one statement for creates of
/// different users: `Write::apply_together`) come out as they would one by
/// one: the collection limit, the byte and collection quotas with the
/// count taken back, a user with two creates in the batch, an idempotency
/// key, and a create for a missing user that fails alone.
async fn creates_queued_together_keep_every_limit(store: &Store) {
    use wxauth::store::{CreateOutcome, Idempotency, NewDocument, Scope, UserLimit, UserQuota};
    // Each document is charged its JSON and 512 bytes of overhead.
    let quota = UserQuota {
        max_collections: 2,
        max_bytes: 2000,
    };
    let doc = |user: &str, collection: &str, bytes: usize| NewDocument {
        id: id(),
        user_id: user.to_string(),
        appid: "wxa".into(),
        collection: collection.into(),
        data: format!("{{\"s\":\"{}\"}}", "x".repeat(bytes.saturating_sub(8))),
        now: 1000,
        max_documents: 3,
        quota,
        idempotency: None,
    };
    let names = [
        "full", "bytes", "colls", "n1", "n2", "n3", "twice", "idem", "holder",
    ];
    let users = log_in(store, "g", &names.map(|name| ("wxa", name))).await;
    let [full, bytes, colls, n1, n2, n3, twice, idem, holder] = users.try_into().unwrap();
    let created = |o: &CreateOutcome| matches!(o, CreateOutcome::Created(_));
    // Before: `full` has 3 of 3 documents in c; `bytes` 662 of 2000 bytes;
    // `colls` documents in 2 of 2 collections.
    for _ in 0..3 {
        assert!(created(
            &store.create_document(doc(&full, "c", 10)).await.unwrap()
        ));
    }
    assert!(created(
        &store.create_document(doc(&bytes, "c", 150)).await.unwrap()
    ));
    assert!(created(
        &store.create_document(doc(&colls, "c", 10)).await.unwrap()
    ));
    assert!(created(
        &store.create_document(doc(&colls, "d", 10)).await.unwrap()
    ));

    let before = store.writer_stats();
    let held = hold_writer(store, &holder, 150);
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let mut idem_doc = doc(&idem, "c", 10);
    idem_doc.idempotency = Some(Idempotency {
        key: "k-1".into(),
        request_hash: hash("k-1"),
    });
    let writes = vec![
        doc(&full, "c", 10),
        doc(&bytes, "c", 1200),
        doc(&colls, "e", 10),
        doc(&n1, "c", 10),
        doc(&n2, "c", 10),
        doc(&n3, "c", 10),
        doc(&twice, "c", 10),
        doc(&twice, "c", 10),
        idem_doc,
    ];
    let ids: Vec<String> = writes.iter().map(|w| w.id.clone()).collect();
    let tasks: Vec<_> = writes
        .into_iter()
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move { store.create_document(w).await.unwrap() })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    held.await.unwrap();
    assert_eq!(outcomes[0], CreateOutcome::LimitReached);
    assert_eq!(
        outcomes[1],
        CreateOutcome::UserLimitReached(UserLimit::Bytes)
    );
    assert_eq!(
        outcomes[2],
        CreateOutcome::UserLimitReached(UserLimit::Collections)
    );
    for (i, (outcome, user)) in outcomes[3..]
        .iter()
        .zip([&n1, &n2, &n3, &twice, &twice, &idem])
        .enumerate()
    {
        let CreateOutcome::Created(d) = outcome else {
            panic!("create {}: {outcome:?}", i + 3)
        };
        assert_eq!(
            (&d.owner, d.id.as_str(), d.version),
            (user, ids[i + 3].as_str(), 1)
        );
        let scope = Scope::Owner {
            user_id: user.to_string(),
            collection: "c".into(),
        };
        assert_eq!(
            store.document(&scope, &d.id).await.unwrap().as_ref(),
            Some(d)
        );
    }
    let after = store.writer_stats();
    if store.backend() == wxauth::store::Backend::Postgres {
        // At least the five creates of different users went as one group.
        assert!(
            after.grouped - before.grouped >= 5,
            "{before:?} → {after:?}"
        );
    } else {
        assert_eq!(after.grouped, 0);
    }

    // The refused creates left no count behind: `bytes` still has room
    // for 2 more documents in c (3 in all), `colls` still no third
    // collection, `twice` 1 more.
    assert!(created(
        &store.create_document(doc(&bytes, "c", 10)).await.unwrap()
    ));
    assert!(created(
        &store.create_document(doc(&bytes, "c", 10)).await.unwrap()
    ));
    assert_eq!(
        store.create_document(doc(&bytes, "c", 10)).await.unwrap(),
        CreateOutcome::LimitReached
    );
    assert_eq!(
        store.create_document(doc(&colls, "e", 10)).await.unwrap(),
        CreateOutcome::UserLimitReached(UserLimit::Collections)
    );
    assert!(created(
        &store.create_document(doc(&twice, "c", 10)).await.unwrap()
    ));
    assert_eq!(
        store.create_document(doc(&twice, "c", 10)).await.unwrap(),
        CreateOutcome::LimitReached
    );
    // A replay of the idempotent create answers the first one.
    let mut replay = doc(&idem, "c", 10);
    replay.idempotency = Some(Idempotency {
        key: "k-1".into(),
        request_hash: hash("k-1"),
    });
    assert!(matches!(
        store.create_document(replay).await.unwrap(),
        CreateOutcome::Replayed(first) if first.document_id == ids[8]
    ));

    // A create for a user that does not exist fails alone; the creates
    // queued with it are kept.
    let held = hold_writer(store, &holder, 150);
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let tasks: Vec<_> = [
        doc("no-such-user", "c", 10),
        doc(&n1, "c", 10),
        doc(&n2, "c", 10),
        doc(&n3, "c", 10),
    ]
    .into_iter()
    .map(|w| {
        let store = store.clone();
        tokio::spawn(async move { store.create_document(w).await })
    })
    .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    held.await.unwrap();
    assert!(results[0].is_err(), "{:?}", results[0]);
    for r in &results[1..] {
        assert!(matches!(r, Ok(CreateOutcome::Created(_))), "{r:?}");
    }
}

/// Logins queued together (on PostgreSQL one statement for logins of
/// different users) come out as they would one by one: new and returning
/// users, a kept unionid, the same user twice in one batch, and every
/// session's refresh token usable.
async fn logins_queued_together(store: &Store) {
    let LoggedIn { user: holder, .. } = store
        .login(login("wxa", "o-q-holder", None, b"k", "r-q-holder", 1000))
        .await
        .unwrap();
    let LoggedIn { user: back, .. } = store
        .login(login(
            "wxa",
            "o-q-back",
            Some("u-back"),
            b"k0",
            "r-q-back0",
            1000,
        ))
        .await
        .unwrap();
    let before = store.writer_stats();
    let held = hold_writer(store, &holder.id, 150);
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let writes = vec![
        login("wxa", "o-q-new1", Some("u-new1"), b"k1", "r-q-1", 2000),
        login("wxa", "o-q-back", None, b"k2", "r-q-2", 2000),
        login("wxa", "o-q-twice", None, b"k3", "r-q-3", 2000),
        login("wxa", "o-q-twice", None, b"k4", "r-q-4", 2000),
        login("wxb", "o-q-new1", None, b"k5", "r-q-5", 2000),
    ];
    let tasks: Vec<_> = writes
        .into_iter()
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move { store.login(w).await.unwrap() })
        })
        .collect();
    let mut done = Vec::new();
    for t in tasks {
        done.push(t.await.unwrap());
    }
    held.await.unwrap();
    assert!(done[0].new_user);
    assert_eq!(done[0].user.unionid.as_deref(), Some("u-new1"));
    assert!(!done[1].new_user);
    assert_eq!(done[1].user.id, back.id);
    assert_eq!(
        done[1].user.unionid.as_deref(),
        Some("u-back"),
        "an absent unionid keeps the stored one"
    );
    assert_eq!(done[1].user.session_key_enc, b"k2");
    assert_eq!(done[2].user.id, done[3].user.id);
    assert_eq!(
        [done[2].new_user, done[3].new_user]
            .iter()
            .filter(|n| **n)
            .count(),
        1,
        "one of the two logins made the user"
    );
    assert_ne!(
        done[4].user.id, done[0].user.id,
        "another app, another user"
    );
    assert!(done[4].new_user);
    let stored = store.user(&done[2].user.id).await.unwrap().unwrap();
    assert_eq!(stored.last_login_at, 2000);
    for i in 1..=5 {
        let out = store
            .rotate_refresh(
                hash(&format!("r-q-{i}")),
                hash(&format!("r-q-{i}b")),
                9000,
                2100,
            )
            .await
            .unwrap();
        assert!(
            matches!(out, RefreshOutcome::Rotated { .. }),
            "login {i}: {out:?}"
        );
    }
    let after = store.writer_stats();
    if store.backend() == wxauth::store::Backend::Postgres {
        assert!(
            after.grouped - before.grouped >= 4,
            "{before:?} → {after:?}"
        );
    } else {
        assert_eq!(after.grouped, 0);
    }
}

/// A pooled PostgreSQL connection the server cut while it was idle (a
/// restart, a proxy's idle timeout) is noticed before use and replaced:
/// the next read succeeds. (Busy connections are not pinged per read.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_postgres_connections_cut_by_the_server_are_replaced() {
    let Some(db) = crate::db::postgres().await else {
        return;
    };
    let name = format!("wxauth_idle_{}", uuid::Uuid::now_v7().simple());
    let store = Store::open(&format!("{}%20-c%20application_name%3D{name}", db.url))
        .await
        .unwrap();
    let LoggedIn { user, .. } = store
        .login(login("wxa", "o-idle", None, b"k", "r-idle", 1000))
        .await
        .unwrap();
    let reads: Vec<_> = (0..4).map(|_| store.user(&user.id)).collect();
    for r in futures_util::future::join_all(reads).await {
        assert!(r.unwrap().is_some());
    }
    use sqlx::{Connection, Row};
    let mut admin = sqlx::AnyConnection::connect(&db.url).await.unwrap();
    let cut: i64 = sqlx::query(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) AS cut FROM pg_stat_activity \
         WHERE application_name = $1) t WHERE cut",
    )
    .bind(&name)
    .fetch_one(&mut admin)
    .await
    .unwrap()
    .get(0);
    assert!(cut >= 2, "only {cut} connections cut");
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    for _ in 0..4 {
        let read = store.user(&user.id).await;
        assert!(matches!(read, Ok(Some(_))), "{read:?}");
    }
}

/// Reads of one document or user made at once (on PostgreSQL grouped into
/// one query by id: `grouped_reads`) answer exactly as each alone would: a
/// document of another user, another collection or another app is not
/// found, even when the same query fetched it for someone else.
async fn reads_arriving_together_stay_in_their_scope(store: &Store) {
    use wxauth::store::{CreateOutcome, NewDocument, Scope, UserQuota};
    let users = log_in(
        store,
        "r",
        &[("wxa", "ann"), ("wxa", "bob"), ("wxb", "cat")],
    )
    .await;
    let [ann, bob, cat] = users.try_into().unwrap();
    let create = |user: &str, appid: &str, collection: &str| {
        let doc = NewDocument {
            id: id(),
            user_id: user.to_string(),
            appid: appid.into(),
            collection: collection.into(),
            data: format!("{{\"by\":\"{user}\"}}"),
            now: 1000,
            max_documents: 10,
            quota: UserQuota {
                max_collections: 10,
                max_bytes: 10_000,
            },
            idempotency: None,
        };
        async move {
            match store.create_document(doc).await.unwrap() {
                CreateOutcome::Created(record) => record,
                _ => panic!("not created"),
            }
        }
    };
    let ann_note = create(&ann, "wxa", "notes").await;
    let bob_note = create(&bob, "wxa", "notes").await;
    let ann_post = create(&ann, "wxa", "board").await;
    let cat_post = create(&cat, "wxb", "board").await;
    let owner = |user: &str, collection: &str| Scope::Owner {
        user_id: user.into(),
        collection: collection.into(),
    };
    let app = |appid: &str, collection: &str| Scope::App {
        appid: appid.into(),
        collection: collection.into(),
    };
    let missing = id();
    // (scope, id, the document it finds)
    let cases = [
        (owner(&ann, "notes"), &ann_note.id, Some(&ann_note)),
        (owner(&bob, "notes"), &ann_note.id, None),
        (owner(&bob, "notes"), &bob_note.id, Some(&bob_note)),
        (owner(&ann, "board"), &ann_note.id, None),
        (owner(&ann, "board"), &ann_post.id, Some(&ann_post)),
        (app("wxa", "board"), &ann_post.id, Some(&ann_post)),
        (app("wxb", "board"), &ann_post.id, None),
        (app("wxb", "board"), &cat_post.id, Some(&cat_post)),
        (app("wxa", "board"), &cat_post.id, None),
        (app("wxa", "notes"), &bob_note.id, Some(&bob_note)),
        (owner(&cat, "board"), &missing, None),
    ];
    for _ in 0..5 {
        let answers = futures_util::future::join_all(
            cases
                .iter()
                .chain(cases.iter())
                .map(|(scope, id, _)| store.document(scope, id)),
        )
        .await;
        for (answer, (scope, id, expected)) in
            answers.into_iter().zip(cases.iter().chain(cases.iter()))
        {
            assert_eq!(answer.unwrap().as_ref(), *expected, "{scope:?} {id}");
        }
    }
    let documents_grouped = store.grouped_reads();
    // Users by id, likewise (each answer is its own user, or none).
    let ids = [ann.clone(), bob.clone(), cat.clone(), missing.clone()];
    for _ in 0..5 {
        let answers = futures_util::future::join_all(
            ids.iter()
                .chain(ids.iter())
                .map(|id| store.user_uncached(id)),
        )
        .await;
        for (answer, id) in answers.into_iter().zip(ids.iter().chain(ids.iter())) {
            let found = answer.unwrap().map(|u| u.id);
            let expected = (*id != missing).then(|| id.clone());
            assert_eq!(found, expected);
        }
    }
    match store.backend() {
        wxauth::store::Backend::Postgres => {
            assert!(documents_grouped > 0, "no document reads were grouped");
            assert!(
                store.grouped_reads() > documents_grouped,
                "no user reads were grouped"
            );
        }
        wxauth::store::Backend::Sqlite => assert_eq!(store.grouped_reads(), 0),
    }
}

/// The change log from two instances writing the same collections at
/// once: positions per collection are 1..=n without a gap, each change is
/// a committed write, each document's changes come in version order, and
/// a reader that follows the log while the writes go on (reading after
/// the last position it saw) sees every change exactly once.
async fn the_change_log_from_two_instances_is_gapless_and_ordered(url: &str) {
    use std::collections::{HashMap, HashSet};
    let one = Store::open(url).await.unwrap();
    let two = Store::open(url).await.unwrap();
    let users = log_in(&one, "log", &[("wxa", "a"), ("wxa", "b"), ("wxa", "c")]).await;
    let quota = wxauth::store::UserQuota {
        max_collections: 100,
        max_bytes: 1 << 24,
    };
    // A follower reading the log of `todo` as the writes happen.
    let follower = {
        let store = one.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut at = 0;
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
            while seen.len() < 204 && tokio::time::Instant::now() < deadline {
                let got = store.changes_after("wxa", "todo", at, 1000).await.unwrap();
                for c in got {
                    assert_eq!(c.position, at + 1, "a gap or a repeat after {at}");
                    at = c.position;
                    seen.push(c);
                }
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            seen
        })
    };
    let write = |store: Store, user: String, n: usize, tag: &'static str| async move {
        for i in 0..n {
            let collection = if i % 3 == 0 { "notes" } else { "todo" };
            let created = store
                .create_document(wxauth::store::NewDocument {
                    id: id(),
                    user_id: user.clone(),
                    appid: "wxa".into(),
                    collection: collection.into(),
                    data: format!("{{\"n\":{i},\"by\":\"{tag}\"}}"),
                    now: 1000 + i as i64,
                    max_documents: 10_000,
                    quota,
                    idempotency: None,
                })
                .await
                .unwrap();
            let wxauth::store::CreateOutcome::Created(doc) = created else {
                panic!("not created")
            };
            if i % 2 == 0 {
                let replaced = store
                    .replace_document(wxauth::store::Replacement {
                        user_id: user.clone(),
                        collection: collection.into(),
                        id: doc.id.clone(),
                        data: format!("{{\"n\":{i},\"edited\":true}}"),
                        if_version: None,
                        now: 2000,
                        quota,
                    })
                    .await
                    .unwrap();
                assert!(matches!(
                    replaced,
                    wxauth::store::ReplaceOutcome::Replaced(_)
                ));
            }
            if i % 5 == 0 {
                assert!(
                    store
                        .delete_document(&user, collection, &doc.id)
                        .await
                        .unwrap()
                );
            }
        }
    };
    // 3 writers x 60 creates: 40 todo creates each, 20 of them replaced,
    // 8 deleted, over two instances at once.
    tokio::join!(
        write(one.clone(), users[0].clone(), 60, "one-a"),
        write(two.clone(), users[1].clone(), 60, "two-b"),
        write(two.clone(), users[2].clone(), 60, "two-c"),
    );
    let all = one.changes_after("wxa", "todo", 0, 10_000).await.unwrap();
    let positions: Vec<i64> = all.iter().map(|c| c.position).collect();
    assert_eq!(positions, (1..=all.len() as i64).collect::<Vec<_>>());
    let last = one
        .change_positions(&[
            ("wxa".into(), "todo".into()),
            ("wxa".into(), "notes".into()),
        ])
        .await
        .unwrap();
    assert_eq!(last[0].position, all.len() as i64);
    let notes = one.changes_after("wxa", "notes", 0, 10_000).await.unwrap();
    assert_eq!(last[1].position, notes.len() as i64);
    // 3 x (40 creates + 20 replaces + 8 deletes) in todo.
    let count = |op| all.iter().filter(|c| c.change.op == op).count();
    use wxauth::store::ChangeOp;
    assert_eq!(
        (
            count(ChangeOp::Create),
            count(ChangeOp::Replace),
            count(ChangeOp::Delete)
        ),
        (120, 60, 24)
    );
    // Each document's changes in version order, and its last one says
    // what the table holds.
    let mut versions: HashMap<&str, i64> = HashMap::new();
    let mut deleted = HashSet::new();
    for c in &all {
        let v = versions.entry(&c.change.doc_id).or_insert(0);
        match c.change.op {
            ChangeOp::Delete => {
                assert_eq!(c.change.version, *v);
                deleted.insert(c.change.doc_id.as_str());
            }
            _ => {
                assert_eq!(c.change.version, *v + 1, "{c:?}");
                *v = c.change.version;
            }
        }
        if c.change.op == ChangeOp::Replace {
            assert_eq!(c.change.updated, ["edited"]);
            assert!(c.change.removed.contains(&"by".to_owned()), "{c:?}");
        }
    }
    for (doc, version) in versions {
        let scope = wxauth::store::Scope::App {
            appid: "wxa".into(),
            collection: "todo".into(),
        };
        let stored = one.document(&scope, doc).await.unwrap();
        match stored {
            Some(d) => {
                assert!(!deleted.contains(doc));
                assert_eq!(d.version, version);
            }
            None => assert!(deleted.contains(doc)),
        }
    }
    let followed = follower.await.unwrap();
    assert_eq!(followed.len(), all.len(), "the follower missed changes");
    assert_eq!(followed, all);
    if url.starts_with("postgres") {
        // Grouped creates logged their own changes (in their statement).
        let grouped = one.writer_stats().grouped + two.writer_stats().grouped;
        assert!(
            grouped > 0,
            "no creates were grouped: the test shows nothing"
        );
    }
}

/// The change log has no index but its key: trimming walks each
/// collection's positions and keeps everything committed since the cut; a
/// deleted account's past changes are scrubbed (data and user id emptied,
/// positions kept); a commit of more changes than one statement carries
/// (an account of 70 documents deleted) stays gapless.
async fn the_change_log_is_trimmed_and_scrubbed(url: &str) {
    use wxauth::store::ChangeOp;
    let store = Store::open(url).await.unwrap();
    let users = log_in(&store, "trim", &[("wxa", "a"), ("wxa", "b")]).await;
    let quota = wxauth::store::UserQuota {
        max_collections: 100,
        max_bytes: 1 << 24,
    };
    let create = |user: String, collection: &'static str, n: usize| {
        let store = store.clone();
        async move {
            for i in 0..n {
                store
                    .create_document(wxauth::store::NewDocument {
                        id: id(),
                        user_id: user.clone(),
                        appid: "wxa".into(),
                        collection: collection.into(),
                        // One holds a PostgreSQL dollar-quote tag: values
                        // travel as parameters, never in a statement's
                        // text, and come back as written.
                        data: format!(
                            "{{\"n\":{i},\"secret\":\"of {user}\",\"note\":\"{}\"}}",
                            if i == 3 { "$wxauth_change$" } else { "" }
                        ),
                        now: 1000,
                        max_documents: 10_000,
                        quota,
                        idempotency: None,
                    })
                    .await
                    .unwrap();
            }
        }
    };
    create(users[0].clone(), "todo", 5).await;
    create(users[1].clone(), "todo", 5).await;
    create(users[0].clone(), "notes", 3).await;
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let cut = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    create(users[1].clone(), "todo", 65).await;
    create(users[0].clone(), "todo", 2).await;

    assert_eq!(store.trim_changes(cut).await.unwrap(), 13);
    let tagged = store.changes_after("wxa", "todo", 0, 10_000).await.unwrap();
    let tagged: Vec<_> = tagged
        .iter()
        .filter(|c| {
            c.change
                .data
                .as_deref()
                .is_some_and(|d| d.contains("$wxauth_change$"))
        })
        .collect();
    assert_eq!(
        tagged.len(),
        1,
        "B's fourth document since the cut: {tagged:#?}"
    );
    let todo = store.changes_after("wxa", "todo", 0, 10_000).await.unwrap();
    let positions: Vec<i64> = todo.iter().map(|c| c.position).collect();
    assert_eq!(positions, (11..=77).collect::<Vec<_>>());
    assert!(
        store
            .changes_after("wxa", "notes", 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.oldest_change("wxa", "todo").await.unwrap(), Some(11));
    assert_eq!(store.trim_changes(cut).await.unwrap(), 0);

    // B (70 documents in todo) is deleted: 70 deletes in one commit.
    let audit = wxauth::store::NewAuditEntry {
        at: 5000,
        actor: "test".into(),
        action: "delete".into(),
        target: None,
        status: 204,
        detail: "{}".into(),
    };
    store
        .delete_user(&users[1], 5000, 0, audit)
        .await
        .unwrap()
        .unwrap();
    let todo = store.changes_after("wxa", "todo", 0, 10_000).await.unwrap();
    let positions: Vec<i64> = todo.iter().map(|c| c.position).collect();
    assert_eq!(positions, (11..=147).collect::<Vec<_>>());
    let deletes = todo.iter().filter(|c| c.change.op == ChangeOp::Delete);
    assert_eq!(deletes.clone().count(), 70);
    assert!(deletes.clone().all(|c| c.change.user_id.is_empty()));
    // Before the scrub their past changes still hold their data.
    let of_b = |log: &[wxauth::store::LoggedChange]| {
        log.iter()
            .filter(|c| {
                c.change.user_id == users[1]
                    || c.change
                        .data
                        .as_deref()
                        .is_some_and(|d| d.contains(&users[1]))
            })
            .count()
    };
    assert_eq!(of_b(&todo), 65);
    assert_eq!(store.scrub_changes().await.unwrap(), 1);
    assert_eq!(
        store.scrub_changes().await.unwrap(),
        0,
        "scrubs are forgotten"
    );
    let after = store.changes_after("wxa", "todo", 0, 10_000).await.unwrap();
    assert_eq!(of_b(&after), 0);
    assert_eq!(after.len(), todo.len(), "scrubbing keeps every position");
    let scrubbed = after
        .iter()
        .filter(|c| c.change.op == ChangeOp::Create && c.change.user_id.is_empty())
        .collect::<Vec<_>>();
    assert_eq!(scrubbed.len(), 65);
    assert!(scrubbed.iter().all(|c| c.change.data.is_none()));
    // A's changes are untouched.
    let of_a = after
        .iter()
        .filter(|c| c.change.user_id == users[0])
        .count();
    assert_eq!(of_a, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_log_trim_and_scrub_sqlite() {
    let db = crate::db::sqlite().await;
    the_change_log_is_trimmed_and_scrubbed(&db.url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_log_trim_and_scrub_postgres() {
    let Some(db) = crate::db::postgres().await else {
        return;
    };
    the_change_log_is_trimmed_and_scrubbed(&db.url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_log_sqlite() {
    let db = crate::db::sqlite().await;
    the_change_log_from_two_instances_is_gapless_and_ordered(&db.url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_log_postgres() {
    let Some(db) = crate::db::postgres().await else {
        return;
    };
    the_change_log_from_two_instances_is_gapless_and_ordered(&db.url).await;
}
