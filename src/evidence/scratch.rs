//! Transaction scopes that are safe whether or not the caller's connection is already inside a
//! transaction block: probes run on a connection they do not own (the engine may be in the middle
//! of its own transaction), so they must never abort or end it.
//!
//! [`Scope::enter`] opens a savepoint when a transaction is in progress and a transaction
//! otherwise; [`Scope::rollback`] undoes everything done inside, [`Scope::commit`] keeps it.

use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};

const SAVEPOINT: &str = "cutover_evidence";
const OPTIONAL: &str = "cutover_evidence_optional";

/// An open scope on a borrowed connection.
#[must_use = "a scope must be ended with rollback() or commit()"]
pub struct Scope {
    nested: bool,
}

impl Scope {
    /// Opens a savepoint (caller in a transaction) or a transaction (caller idle).
    pub async fn enter(client: &Client) -> Result<Scope, tokio_postgres::Error> {
        match client
            .batch_execute(&format!("SAVEPOINT {SAVEPOINT}"))
            .await
        {
            Ok(()) => Ok(Scope { nested: true }),
            Err(e) if e.code() == Some(&SqlState::NO_ACTIVE_SQL_TRANSACTION) => {
                client.batch_execute("BEGIN").await?;
                Ok(Scope { nested: false })
            }
            Err(e) => Err(e),
        }
    }

    /// Undoes everything done in the scope.
    pub async fn rollback(self, client: &Client) -> Result<(), tokio_postgres::Error> {
        if self.nested {
            client
                .batch_execute(&format!(
                    "ROLLBACK TO SAVEPOINT {SAVEPOINT}; RELEASE SAVEPOINT {SAVEPOINT}"
                ))
                .await
        } else {
            client.batch_execute("ROLLBACK").await
        }
    }

    /// Keeps what was done in the scope (it commits with the caller's transaction when nested).
    pub async fn commit(self, client: &Client) -> Result<(), tokio_postgres::Error> {
        if self.nested {
            client
                .batch_execute(&format!("RELEASE SAVEPOINT {SAVEPOINT}"))
                .await
        } else {
            client.batch_execute("COMMIT").await
        }
    }
}

/// Runs a query that may legitimately fail (a missing extension, a view that is not readable)
/// inside a savepoint, so its failure leaves the enclosing transaction usable.
/// Must be called inside a [`Scope`].
pub async fn optional_query(
    client: &Client,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    client
        .batch_execute(&format!("SAVEPOINT {OPTIONAL}"))
        .await?;
    match client.query(sql, params).await {
        Ok(rows) => {
            client
                .batch_execute(&format!("RELEASE SAVEPOINT {OPTIONAL}"))
                .await?;
            Ok(rows)
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
