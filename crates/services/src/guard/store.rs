//! The account store: one table of users and their password hashes, in SQLite (the default, a
//! file in the data directory) or PostgreSQL (`--database-url postgres://...`).
//!
//! Both backends run the same SQL (`$n` placeholders, `ON CONFLICT DO NOTHING` work in both);
//! the enum only picks the pool. Queries are plain strings, not `query!` macros, so building
//! needs no live database. Migrations are embedded and applied on connect.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use super::GuardError;

/// A connected, migrated account store.
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Store {
    /// Connects to `url` (`sqlite://path` or `postgres://...`), creating a SQLite file and
    /// its directory if missing, and applies the migrations.
    pub async fn connect(url: &str) -> Result<Store, GuardError> {
        let store = if url.starts_with("sqlite:") {
            Store::Sqlite(connect_sqlite(url).await?)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Store::Postgres(connect_postgres(url).await?)
        } else {
            return Err(GuardError::UnknownDatabase { url: redact(url) });
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), GuardError> {
        let result = match self {
            Store::Sqlite(pool) => sqlx::migrate!("./migrations/sqlite").run(pool).await,
            Store::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await,
        };
        result.map_err(GuardError::Migrate)
    }

    /// Which backend this is, for logs and the startup line.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Adds a user; false (and nothing changed) when the name is taken. The primary key
    /// decides, so two concurrent registrations of one name cannot both succeed.
    pub async fn insert_user(
        &self,
        name: &str,
        password_hash: &str,
        created_ms: i64,
    ) -> Result<bool, GuardError> {
        const SQL: &str =
            "INSERT INTO users (name, password_hash, created_ms) VALUES ($1, $2, $3) \
                           ON CONFLICT (name) DO NOTHING";
        let inserted = match self {
            Store::Sqlite(pool) => sqlx::query(SQL)
                .bind(name)
                .bind(password_hash)
                .bind(created_ms)
                .execute(pool)
                .await
                .map(|done| done.rows_affected()),
            Store::Postgres(pool) => sqlx::query(SQL)
                .bind(name)
                .bind(password_hash)
                .bind(created_ms)
                .execute(pool)
                .await
                .map(|done| done.rows_affected()),
        };
        Ok(inserted.map_err(GuardError::store("adding a user"))? == 1)
    }

    /// The stored hash of a user, `None` when there is no such user.
    pub async fn password_hash(&self, name: &str) -> Result<Option<String>, GuardError> {
        const SQL: &str = "SELECT password_hash FROM users WHERE name = $1";
        let hash = match self {
            Store::Sqlite(pool) => {
                sqlx::query_scalar::<_, String>(SQL)
                    .bind(name)
                    .fetch_optional(pool)
                    .await
            }
            Store::Postgres(pool) => {
                sqlx::query_scalar::<_, String>(SQL)
                    .bind(name)
                    .fetch_optional(pool)
                    .await
            }
        };
        hash.map_err(GuardError::store("reading a password hash"))
    }

    /// Number of accounts.
    pub async fn user_count(&self) -> Result<u64, GuardError> {
        const SQL: &str = "SELECT COUNT(*) FROM users";
        let count = match self {
            Store::Sqlite(pool) => sqlx::query_scalar::<_, i64>(SQL).fetch_one(pool).await,
            Store::Postgres(pool) => sqlx::query_scalar::<_, i64>(SQL).fetch_one(pool).await,
        };
        let count = count.map_err(GuardError::store("counting users"))?;
        Ok(count.max(0) as u64)
    }

    /// Closes the pool, waiting for connections in use.
    pub async fn close(&self) {
        match self {
            Store::Sqlite(pool) => pool.close().await,
            Store::Postgres(pool) => pool.close().await,
        }
    }
}

async fn connect_sqlite(url: &str) -> Result<SqlitePool, GuardError> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(GuardError::store(format!(
            "reading the database URL {url:?}"
        )))?
        .create_if_missing(true)
        // Readers do not wait for the writer, and a commit is one fsync of the log.
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(5));
    if let Some(dir) = options.get_filename().parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(|source| GuardError::CreateDirectory {
                path: dir.to_path_buf(),
                source,
            })?;
        }
    }
    SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .map_err(GuardError::store(format!("opening {url}")))
}

async fn connect_postgres(url: &str) -> Result<PgPool, GuardError> {
    PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await
        .map_err(GuardError::store(format!("connecting to {}", redact(url))))
}

/// The URL without its password, for error messages and logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((credentials, host)) => {
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(
            redact("postgres://freshet:s3cret@db:5432/guard"),
            "postgres://freshet:***@db:5432/guard"
        );
        assert_eq!(redact("sqlite:///tmp/guard.db"), "sqlite:///tmp/guard.db");
    }
}
