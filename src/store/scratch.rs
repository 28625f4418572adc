//! Throw-away PostgreSQL databases for tests and benchmarks: the server named by
//! `PAYGATE_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/postgres`, trust auth, as
//! on every machine of this project) gets a database of its own per use, dropped when the
//! `Scratch` is dropped. Under CI (`CI=true`) a server that cannot be reached is a failure;
//! elsewhere the caller is told why it is skipped, loudly, and skips.

use sqlx::Connection;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The server tests use.
pub fn server_url() -> String {
    std::env::var("PAYGATE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A database created for one test (or one benchmark run).
pub struct Scratch {
    name: String,
    url: String,
}

fn with_database(server: &str, db: &str) -> String {
    let mut u = url::Url::parse(server).expect("PAYGATE_TEST_POSTGRES is a URL");
    u.set_path(db);
    u.to_string()
}

impl Scratch {
    /// Creates a fresh, empty database. `None` (with a notice on stderr saying what `what`
    /// skipped) when no server answers and this is not CI; a panic under CI.
    pub async fn create(what: &str) -> Option<Scratch> {
        static N: AtomicU32 = AtomicU32::new(0);
        let server = server_url();
        let admin = tokio::time::timeout(
            Duration::from_secs(10),
            sqlx::PgConnection::connect(&server),
        )
        .await
        .map_err(|_| "no answer within 10 s".to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
        let mut admin = match admin {
            Ok(c) => c,
            Err(e) => {
                let msg = format!(
                    "PostgreSQL at {} cannot be reached ({e}): {what} was NOT run against \
                     PostgreSQL. Start PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres) \
                     or point PAYGATE_TEST_POSTGRES at a server.",
                    super::redact_url(&server)
                );
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("{msg}");
                }
                eprintln!("\n!!!!!!!! SKIPPED: {msg}\n");
                return None;
            }
        };
        let name = format!(
            "paygate_test_{}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("CREATE DATABASE on the test server");
        let _ = admin.close().await;
        Some(Scratch {
            url: with_database(&server, &name),
            name,
        })
    }

    /// The database's URL, for `Store::open`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for Scratch {
    /// Drops the database (closing what is still connected to it) on a thread of its own: a
    /// drop may run inside a runtime, where blocking on another is not allowed.
    fn drop(&mut self) {
        let (server, name) = (server_url(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut c = tokio::time::timeout(
                    Duration::from_secs(10),
                    sqlx::PgConnection::connect(&server),
                )
                .await
                .ok()?
                .ok()?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut c)
                .await
                .ok()?;
                let _ = c.close().await;
                Some(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("note: the test database {} could not be dropped", self.name);
        }
    }
}
