//! Declared indexes are expression indexes the databases use: a filtered
//! or sorted query on a large shared collection reads the index, not the
//! table (shown with EXPLAIN on each backend).

use sqlx::Executor;
use wxauth::store::{Field, Filter, IndexSpec, LoggedIn, LoginWrite, Op, Scalar, Scope, Store};

const DOCS: i64 = 20_000;

async fn fill(store: &Store, url: &str, sqlite: bool) -> String {
    let LoggedIn { user, .. } = store
        .login(LoginWrite {
            new_user_id: uuid::Uuid::now_v7().to_string(),
            appid: "wxplan".into(),
            openid: "o-plan".into(),
            unionid: None,
            session_key_enc: b"k".to_vec(),
            session_id: uuid::Uuid::now_v7().to_string(),
            refresh_hash: vec![1; 32],
            refresh_expires_at: 1 << 40,
            now: 1000,
        })
        .await
        .unwrap();
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let series = if sqlite {
        "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < $2) SELECT i FROM s"
    } else {
        "SELECT generate_series(1, $2::bigint) AS i"
    };
    let concat = |parts: &[&str]| parts.join(" || ");
    let data = concat(&[
        "'{\"status\":\"s'",
        "CAST(i % 50 AS TEXT)",
        "'\",\"score\":'",
        "CAST(i % 997 AS TEXT)",
        "'}'",
    ]);
    let sql = format!(
        "INSERT INTO documents (id, user_id, collection, data, version, created_at, updated_at, size, appid) \
         SELECT 'doc-' || CAST(i AS TEXT), $1, CASE WHEN i % 4 = 0 THEN 'other' ELSE 'posts' END, {data}, 1, i, i, 40, 'wxplan' \
         FROM ({series}) AS g"
    );
    sqlx::query(&sql)
        .bind(&user.id)
        .bind(DOCS)
        .execute(&pool)
        .await
        .unwrap();
    pool.execute("ANALYZE").await.unwrap();
    pool.close().await;
    user.id
}

async fn plans(store: &Store, url: &str, sqlite: bool) {
    fill(store, url, sqlite).await;
    let specs: Vec<IndexSpec> = [("status", false), ("score", true)]
        .iter()
        .map(|(f, d)| IndexSpec {
            collection: "posts".into(),
            path: vec![(*f).into()],
            descending: *d,
            shared: true,
        })
        .collect();
    store
        .ensure_indexes(&specs, &["posts".into()])
        .await
        .unwrap();
    // Twice: creating an index that exists is a no-op.
    store
        .ensure_indexes(&specs, &["posts".into()])
        .await
        .unwrap();
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    pool.execute("ANALYZE").await.unwrap();
    pool.close().await;
    let scope = Scope::App {
        appid: "wxplan".into(),
        collection: "posts".into(),
    };
    let by_status = Filter::Compare(
        Field::Data(vec!["status".into()]),
        Op::Eq,
        Scalar::Text("s7".into()),
    );
    let newest = wxauth::data::query::parse_order_by(None).unwrap();
    let q = wxauth::store::DocumentQuery {
        scope: &scope,
        filter: &by_status,
        order: &newest,
        after: None,
        limit: 21,
    };
    let plan = store.explain_documents(&q).await.unwrap();
    // The status index, entered at the value: `<expr>=?` (SQLite), an
    // index condition on the path (PostgreSQL); read in order, no sort.
    if sqlite {
        assert!(
            plan.contains("<expr>=?"),
            "where status = … should use its index:\n{plan}"
        );
    } else {
        assert!(
            plan.contains("Index Cond") && plan.contains("'{status}'"),
            "{plan}"
        );
    }
    assert!(
        !plan.contains("Seq Scan") && !plan.contains("SCAN documents"),
        "{plan}"
    );
    // Both read the matches in creation order from the index: no sort.
    assert!(
        !plan.contains("TEMP B-TREE") && !plan.contains("Sort"),
        "no sort step:\n{plan}"
    );
    let found = store.query_documents(&q).await.unwrap();
    assert_eq!(found.len(), 21);
    assert!(found.iter().all(|d| d.data.contains("\"s7\"")));
    assert!(found.windows(2).all(|w| w[0].created_at >= w[1].created_at));
    // i % 50 == 7 is odd, so never one of the `other` rows (i % 4 == 0).
    assert_eq!(
        store.count_documents(&scope, &by_status).await.unwrap(),
        400
    );

    let by_score = wxauth::data::query::parse_order_by(Some("-score")).unwrap();
    let everything = Filter::All(Vec::new());
    let q = wxauth::store::DocumentQuery {
        scope: &scope,
        filter: &everything,
        order: &by_score,
        after: None,
        limit: 21,
    };
    let plan = store.explain_documents(&q).await.unwrap();
    assert!(
        plan.contains("wxq3_") || plan.contains("wxq4_"),
        "order_by -score should read its index:\n{plan}"
    );
    assert!(
        !plan.contains("Sort") && !plan.contains("TEMP B-TREE"),
        "no sort step:\n{plan}"
    );
    let top = store.query_documents(&q).await.unwrap();
    assert!(top[0].data.contains("\"score\":996"), "{:?}", top[0]);

    // A range on the score uses the index too.
    let high = Filter::Compare(
        Field::Data(vec!["score".into()]),
        Op::Gt,
        Scalar::Number(990.into()),
    );
    let q = wxauth::store::DocumentQuery {
        scope: &scope,
        filter: &high,
        order: &by_score,
        after: None,
        limit: 21,
    };
    let plan = store.explain_documents(&q).await.unwrap();
    if sqlite {
        assert!(
            plan.contains("<expr>>?"),
            "score > 990 should use its index:\n{plan}"
        );
    } else {
        assert!(
            plan.contains("Index Cond") && plan.contains("'{score}'"),
            "{plan}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_indexes_are_used_sqlite() {
    let db = crate::db::sqlite().await;
    plans(&db.store, &db.url, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_indexes_are_used_postgres() {
    let Some(db) = crate::db::postgres().await else {
        return;
    };
    plans(&db.store, &db.url, false).await;
}
