//! Transaction scopes that are safe whether or not the caller's connection is already inside a
//! transaction block: probes run on a connection they do not own (the engine may be in the middle
//! of its own transaction), so they must never abort or end it.
//!
//! [`Scope::enter`] opens a savepoint (inside a new transaction when none is in progress);
//! [`Scope::rollback`] undoes everything done inside, [`Scope::commit`] keeps it.

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, SimpleQueryMessage};

const SAVEPOINT: &str = "cutover_evidence";
const OPTIONAL: &str = "cutover_evidence_optional";

/// An open scope on a borrowed connection.
#[must_use = "a scope must be ended with rollback() or commit()"]
pub(crate) struct Scope {
    /// True when the scope opened its own transaction (the caller was idle).
    own_transaction: bool,
}

impl Scope {
    /// Opens a savepoint; when the caller is not in a transaction, first a transaction.
    pub(crate) async fn enter(client: &Client) -> Result<Scope, tokio_postgres::Error> {
        // Asked rather than tried: a savepoint refused outside a block is a rolled-back
        // transaction in `pg_stat_database`. Alone in its query, the statement starts its own
        // transaction (`now()` is its start) unless a block is open.
        let idle = client
            .simple_query("SELECT now() = statement_timestamp() AS idle")
            .await?
            .iter()
            .any(|m| matches!(m, SimpleQueryMessage::Row(r) if r.get("idle") == Some("t")));
        let open = if idle { "BEGIN; " } else { "" };
        client
            .batch_execute(&format!("{open}SAVEPOINT {SAVEPOINT}"))
            .await?;
        Ok(Scope {
            own_transaction: idle,
        })
    }

    /// Undoes everything done in the scope. An own transaction is then committed empty, so
    /// probes do not count as rolled-back transactions in `pg_stat_database` (which the error
    /// budget watches).
    pub(crate) async fn rollback(self, client: &Client) -> Result<(), tokio_postgres::Error> {
        let end = if self.own_transaction { "; COMMIT" } else { "" };
        let sql = format!("ROLLBACK TO SAVEPOINT {SAVEPOINT}; RELEASE SAVEPOINT {SAVEPOINT}{end}");
        self.finish(client, &sql).await
    }

    /// Keeps what was done in the scope (it commits with the caller's transaction when nested).
    pub(crate) async fn commit(self, client: &Client) -> Result<(), tokio_postgres::Error> {
        let end = if self.own_transaction { "; COMMIT" } else { "" };
        let sql = format!("RELEASE SAVEPOINT {SAVEPOINT}{end}");
        self.finish(client, &sql).await
    }

    /// Runs the closing statements; if they fail in an own transaction, never leaves the
    /// connection inside it.
    async fn finish(self, client: &Client, sql: &str) -> Result<(), tokio_postgres::Error> {
        let result = client.batch_execute(sql).await;
        if result.is_err() && self.own_transaction {
            let _ = client.batch_execute("ROLLBACK").await;
        }
        result
    }
}

/// Runs a query that may legitimately fail (a missing extension, a view that is not readable)
/// inside a savepoint, so its failure leaves the enclosing transaction usable.
/// Must be called inside a [`Scope`].
pub(crate) async fn optional_query(
    client: &Client,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    optional(client, client.query(sql, params)).await
}

/// Runs `read` (statements that may legitimately fail) inside a savepoint, so its failure
/// leaves the enclosing transaction usable. `read` is a future not yet polled: its statements
/// are sent after the savepoint. Must be called inside a [`Scope`].
pub(crate) async fn optional<T>(
    client: &Client,
    read: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, tokio_postgres::Error> {
    client
        .batch_execute(&format!("SAVEPOINT {OPTIONAL}"))
        .await?;
    match read.await {
        Ok(value) => {
            client
                .batch_execute(&format!("RELEASE SAVEPOINT {OPTIONAL}"))
                .await?;
            Ok(value)
        }
        Err(e) => {
            client
                .batch_execute(&format!(
                    "ROLLBACK TO SAVEPOINT {OPTIONAL}; RELEASE SAVEPOINT {OPTIONAL}"
                ))
                .await?;
            Err(e)
        }
    }
}
