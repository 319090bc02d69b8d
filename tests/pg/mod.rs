//! What the Postgres tests share: a fresh database per test on the server of
//! `EXECUTIONER_TEST_DATABASE_URL` (started by `scripts/postgres-up`), dropped afterwards even
//! when the test fails, and waiting for a stored state without sleeping blindly.

// Every test binary uses a different part of this module.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use executioner::store::postgres::{PostgresConfig, PostgresInterface};
use sqlx::postgres::PgListener;
use sqlx::{Connection, Executor, PgConnection};

/// The admin URL of the test server (a superuser's, on any database).
pub fn admin_url() -> String {
    std::env::var("EXECUTIONER_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "EXECUTIONER_TEST_DATABASE_URL is not set: run `eval \"$(scripts/postgres-up | tail -n 1)\"` \
             (scripts/test does this)"
        )
    })
}

/// `url` with its database name replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    // postgres://user:password@host:port/db: the database is after the last '/' past the host.
    let authority = base.find("://").map_or(0, |i| i + 3);
    let prefix = match base[authority..].find('/') {
        Some(slash) => &base[..authority + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{prefix}/{database}?{query}"),
        None => format!("{prefix}/{database}"),
    }
}

/// A database of its own for one test; dropped (with any connection still open) on drop.
pub struct TestDatabase {
    admin: String,
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn create() -> TestDatabase {
        Self::create_with("").await
    }

    /// A database whose text sorts as English does (ICU), not by bytes: what a query that
    /// forgets to ask for byte order gets wrong.
    pub async fn create_english() -> TestDatabase {
        Self::create_with("TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en' LOCALE 'C.UTF-8'")
            .await
    }

    /// `options`: what follows `CREATE DATABASE name`.
    async fn create_with(options: &str) -> TestDatabase {
        let admin = admin_url();
        let name = format!("executioner_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test server: {e}"));
        conn.execute(format!("CREATE DATABASE \"{name}\" {options}").as_str())
            .await
            .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
        let _ = conn.close().await;
        let url = with_database(&admin, &name);
        TestDatabase { admin, name, url }
    }

    /// Settings for an interface on this database: a short lease and sweep, quick retries.
    pub fn config(&self) -> PostgresConfig {
        let mut config = PostgresConfig::new(&self.url);
        config.lease = Duration::from_secs(3);
        config.sweep_interval = Duration::from_secs(1);
        config.retry_backoff = Duration::from_millis(200);
        config.max_connections = 3;
        config
    }

    pub async fn interface(&self) -> PostgresInterface {
        self.interface_with(self.config()).await
    }

    pub async fn interface_with(&self, config: PostgresConfig) -> PostgresInterface {
        PostgresInterface::connect(config)
            .await
            .unwrap_or_else(|e| panic!("cannot connect the interface: {e}"))
    }

    pub async fn connection(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.name))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot be blocked on: use a runtime of its own.
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let mut conn = PgConnection::connect(&admin)
                    .await
                    .map_err(|e| e.to_string())?;
                conn.execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = conn.close().await;
                Ok::<(), String>(())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test database {}: {e}", self.name),
            Err(_) => eprintln!("could not drop test database {}: panicked", self.name),
        }
    }
}

/// Waits until `check` answers `Some`, looking again whenever a submission's state changes
/// (the `executioner_state` notification) and at least every `recheck` (notifications are lost
/// while the server restarts). `Err` saying what timed out after `deadline`.
pub async fn wait_for<T, F, Fut>(
    db: &TestDatabase,
    what: &str,
    deadline: Duration,
    recheck: Duration,
    mut check: F,
) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + deadline;
    let mut listener: Option<PgListener> = None;
    loop {
        if listener.is_none() {
            if let Ok(mut l) = PgListener::connect(&db.url).await {
                if l.listen(executioner::store::postgres::queue::STATE_CHANNEL)
                    .await
                    .is_ok()
                {
                    listener = Some(l);
                }
            }
        }
        // Listening before checking: a change right after the check is not missed.
        if let Some(found) = check().await {
            return Ok(found);
        }
        let now = tokio::time::Instant::now();
        if now >= until {
            return Err(format!("timed out after {deadline:?} waiting for {what}"));
        }
        let pause = recheck.min(until - now);
        match listener.as_mut() {
            Some(l) => match tokio::time::timeout(pause, l.recv()).await {
                Ok(Ok(_)) | Err(_) => {}
                Ok(Err(_)) => listener = None,
            },
            None => tokio::time::sleep(pause).await,
        }
    }
}

/// A submission's state is final: judged, invalid, a compile error or an error with no retry
/// left (its lease released).
pub const FINAL: &str = "(state IN ('judged', 'invalidData')
    OR (state = 'compileError' AND lease_expires_at IS NULL)
    OR (state = 'error' AND not_before IS NULL))";

/// How many submissions whose id is `LIKE` `pattern` are in a final state.
pub async fn count_final(db: &TestDatabase, pattern: &str) -> i64 {
    let mut conn = db.connection().await;
    sqlx::query_scalar(&format!(
        "SELECT count(*) FROM submissions WHERE id LIKE $1 AND {FINAL}"
    ))
    .bind(pattern)
    .fetch_one(&mut conn)
    .await
    .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_database_name_is_replaced() {
        assert_eq!(
            super::with_database("postgres://u:p@127.0.0.1:5432/postgres", "x"),
            "postgres://u:p@127.0.0.1:5432/x"
        );
        assert_eq!(
            super::with_database("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(super::with_database("postgres://h", "x"), "postgres://h/x");
    }
}
