//! Proof that statements ran inside one transaction: the transaction id taken when it began
//! must be the id after each statement. A statement that committed or rolled back the
//! transaction leaves the session in another one (or none), which shows as a different id.

use tokio_postgres::GenericClient;

/// The id of the transaction a series of statements must stay in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxMark(String);

impl TxMark {
    /// The id of the transaction `client` is in (one is assigned if needed).
    pub async fn take(client: &impl GenericClient) -> Result<TxMark, tokio_postgres::Error> {
        Ok(TxMark(current(client).await?))
    }

    /// `Ok(())` while `client` is still in the marked transaction, else both transaction ids.
    pub async fn verify(
        &self,
        client: &impl GenericClient,
    ) -> Result<Result<(), TxChanged>, tokio_postgres::Error> {
        let now = current(client).await?;
        Ok(if now == self.0 {
            Ok(())
        } else {
            Err(TxChanged {
                before: self.0.clone(),
                after: now,
            })
        })
    }
}

/// A statement left the marked transaction: the ids before and after it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("transaction {before} before it, {after} after")]
pub struct TxChanged {
    /// The marked transaction.
    pub before: String,
    /// The transaction (or new snapshot's id) after the statement.
    pub after: String,
}

async fn current(client: &impl GenericClient) -> Result<String, tokio_postgres::Error> {
    Ok(client
        .query_one("SELECT pg_current_xact_id()::text AS xid", &[])
        .await?
        .get("xid"))
}
