//! Migrations embedded in the binary, one folder per backend.

use std::borrow::Cow;

use sqlx::AnyPool;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

use super::Backend;
use crate::error::{Error, Result};

const SQLITE: &[(i64, &str, &str)] = &[
    (
        1,
        "users sessions",
        include_str!("../../migrations/sqlite/0001_users_sessions.sql"),
    ),
    (
        2,
        "documents",
        include_str!("../../migrations/sqlite/0002_documents.sql"),
    ),
    (
        3,
        "idempotency document id",
        include_str!("../../migrations/sqlite/0003_idempotency_document.sql"),
    ),
    (
        4,
        "user usage",
        include_str!("../../migrations/sqlite/0004_user_usage.sql"),
    ),
    (
        5,
        "idempotency snapshot",
        include_str!("../../migrations/sqlite/0005_idempotency_snapshot.sql"),
    ),
    (
        6,
        "document queries",
        include_str!("../../migrations/sqlite/0006_document_queries.sql"),
    ),
    (
        7,
        "operations",
        include_str!("../../migrations/sqlite/0007_operations.sql"),
    ),
    (
        8,
        "revocation log",
        include_str!("../../migrations/sqlite/0008_revocation_log.sql"),
    ),
    (
        9,
        "files",
        include_str!("../../migrations/sqlite/0009_files.sql"),
    ),
    (
        10,
        "import",
        include_str!("../../migrations/sqlite/0010_import.sql"),
    ),
    (
        11,
        "changes",
        include_str!("../../migrations/sqlite/0011_changes.sql"),
    ),
    (
        12,
        "change log cost",
        include_str!("../../migrations/sqlite/0012_change_log_cost.sql"),
    ),
    (
        13,
        "subscriptions",
        include_str!("../../migrations/sqlite/0013_subscriptions.sql"),
    ),
    (
        14,
        "file checks",
        include_str!("../../migrations/sqlite/0014_file_checks.sql"),
    ),
];

const POSTGRES: &[(i64, &str, &str)] = &[
    (
        1,
        "users sessions",
        include_str!("../../migrations/postgres/0001_users_sessions.sql"),
    ),
    (
        2,
        "documents",
        include_str!("../../migrations/postgres/0002_documents.sql"),
    ),
    (
        3,
        "idempotency document id",
        include_str!("../../migrations/postgres/0003_idempotency_document.sql"),
    ),
    (
        4,
        "user usage",
        include_str!("../../migrations/postgres/0004_user_usage.sql"),
    ),
    (
        5,
        "idempotency snapshot",
        include_str!("../../migrations/postgres/0005_idempotency_snapshot.sql"),
    ),
    (
        6,
        "document queries",
        include_str!("../../migrations/postgres/0006_document_queries.sql"),
    ),
    (
        7,
        "operations",
        include_str!("../../migrations/postgres/0007_operations.sql"),
    ),
    (
        8,
        "revocation log",
        include_str!("../../migrations/postgres/0008_revocation_log.sql"),
    ),
    (
        9,
        "files",
        include_str!("../../migrations/postgres/0009_files.sql"),
    ),
    (
        10,
        "import",
        include_str!("../../migrations/postgres/0010_import.sql"),
    ),
    (
        11,
        "changes",
        include_str!("../../migrations/postgres/0011_changes.sql"),
    ),
    (
        12,
        "change log cost",
        include_str!("../../migrations/postgres/0012_change_log_cost.sql"),
    ),
    (
        13,
        "subscriptions",
        include_str!("../../migrations/postgres/0013_subscriptions.sql"),
    ),
    (
        14,
        "file checks",
        include_str!("../../migrations/postgres/0014_file_checks.sql"),
    ),
];

#[derive(Debug)]
struct Embedded(&'static [(i64, &'static str, &'static str)]);

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(
        self,
    ) -> futures_core_box::BoxFuture<'s, std::result::Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|(version, description, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(*description),
                        MigrationType::Simple,
                        Cow::Borrowed(*sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

mod futures_core_box {
    pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
}

/// The newest schema version this binary knows.
pub fn latest() -> i64 {
    SQLITE.iter().map(|(v, _, _)| *v).max().unwrap_or(0)
}

/// The newest migration applied to the database (0 for a new one).
pub async fn applied(pool: &AnyPool) -> Result<i64> {
    // No table yet: a new database.
    let Ok(row) = sqlx::query("SELECT MAX(version) AS v FROM _sqlx_migrations")
        .fetch_one(pool)
        .await
    else {
        return Ok(0);
    };
    Ok(sqlx::Row::try_get::<Option<i64>, _>(&row, "v")?.unwrap_or(0))
}

/// Brings the schema up to date. A database migrated by a newer wxauth is
/// refused (its schema may mean things this binary does not know): run
/// the newer binary, or restore a backup taken for this one.
pub async fn run(pool: &AnyPool, backend: Backend) -> Result<()> {
    let (applied, latest) = (applied(pool).await?, latest());
    if applied > latest {
        return Err(Error::internal(format!(
            "the database's schema is version {applied}, newer than this wxauth knows \
             ({latest}): it was migrated by a newer wxauth. Run that version, or restore \
             a backup made for this one"
        )));
    }
    let source = match backend {
        Backend::Sqlite => Embedded(SQLITE),
        Backend::Postgres => Embedded(POSTGRES),
    };
    let migrator = Migrator::new(source).await?;
    migrator.run(pool).await?;
    Ok(())
}
