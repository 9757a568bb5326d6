//! Test databases: a fresh SQLite file, or a fresh PostgreSQL schema.

use wxauth::store::Store;

/// A store on a new database, and what keeps it alive.
pub struct TestDb {
    pub store: Store,
    pub url: String,
    _dir: Option<TempDir>,
}

pub struct TempDir(pub std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn temp_dir() -> TempDir {
    let dir = std::env::temp_dir().join(format!("wxauth-test-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

pub async fn sqlite() -> TestDb {
    let dir = temp_dir();
    let url = format!("sqlite://{}/wxauth.db", dir.0.display());
    let store = Store::open(&url).await.unwrap();
    TestDb {
        store,
        url,
        _dir: Some(dir),
    }
}

/// The PostgreSQL URL for tests, or None (with a message) when not set.
/// Under CI a missing URL is a failure, never a silent skip.
pub fn postgres_base_url() -> Option<String> {
    match std::env::var("WXAUTH_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "WXAUTH_TEST_POSTGRES_URL is not set, and CI=true: PostgreSQL tests must run"
            );
            eprintln!(
                "skipped: WXAUTH_TEST_POSTGRES_URL is not set, so this PostgreSQL test did not run"
            );
            None
        }
    }
}

/// A URL whose connections use a new, empty schema of the test database.
pub async fn postgres_schema_url() -> Option<String> {
    let base = postgres_base_url()?;
    let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&base)
        .await
        .expect("connect to WXAUTH_TEST_POSTGRES_URL");
    drop_stale_schemas(&pool).await;
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let sep = if base.contains('?') { '&' } else { '?' };
    Some(format!("{base}{sep}options=-c%20search_path%3D{schema}"))
}

pub async fn postgres() -> Option<TestDb> {
    let url = postgres_schema_url().await?;
    let store = Store::open(&url).await.unwrap();
    Some(TestDb {
        store,
        url,
        _dir: None,
    })
}

/// Defines `sqlite` and `postgres` variants of a store test written once.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = crate::db::sqlite().await;
                    super::$name(&db.store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = crate::db::postgres().await else { return };
                    super::$name(&db.store).await;
                }
            )*
        }
    };
}
pub(crate) use both_backends;

/// Drops test schemas left by runs more than ten minutes ago (their names
/// carry a UUIDv7, whose first 48 bits are the creation time in ms).
async fn drop_stale_schemas(pool: &sqlx::AnyPool) {
    use sqlx::Row;
    static ONCE: std::sync::Once = std::sync::Once::new();
    let mut first = false;
    ONCE.call_once(|| first = true);
    if !first {
        return;
    }
    let rows = sqlx::query("SELECT nspname FROM pg_namespace WHERE nspname LIKE 't\\_%'")
        .fetch_all(pool)
        .await
        .unwrap_or_default();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    for row in rows {
        let name: String = row.try_get(0).unwrap_or_default();
        let created = name
            .get(2..14)
            .and_then(|h| u64::from_str_radix(h, 16).ok());
        if created.is_some_and(|ms| ms + 600_000 < now_ms) {
            let _ = sqlx::query(&format!("DROP SCHEMA {name} CASCADE"))
                .execute(pool)
                .await;
        }
    }
}
