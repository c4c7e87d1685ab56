//! Why a batch was not committed.

use thiserror::Error;

/// Why a batch was not committed, classified once here: the poster decides from the kind
/// alone whether to retry, wait, split or stop.
#[derive(Debug, Error)]
pub enum CommitError {
    /// Another poster moved this partition on: this one is a zombie or out of date.
    #[error(
        "partition {partition}: checkpoint is at {checkpoint}, this poster expected {expected}"
    )]
    Fenced {
        partition: i32,
        checkpoint: i64,
        expected: i64,
    },
    /// PostgreSQL cannot be reached, refuses connections or is shutting down: wait for it.
    #[error("database unavailable: {0}")]
    Unavailable(sqlx::Error),
    /// The transaction lost a race (serialization failure, deadlock, a key inserted
    /// concurrently by another partition, a lock not available): retry the same batch.
    #[error("database: {0}")]
    Transient(sqlx::Error),
    /// A rule of the ledger did not hold inside the transaction (e.g. a balance row missing):
    /// never retried, never taken for an unavailable database.
    #[error("ledger invariant broken: {0}")]
    Invariant(String),
    /// Any other SQL error (e.g. a constraint a message breaks): not worth retrying as is.
    #[error("database: {0}")]
    Sql(sqlx::Error),
}

impl From<sqlx::Error> for CommitError {
    fn from(e: sqlx::Error) -> Self {
        match classify(&e) {
            SqlErrorKind::Unavailable => CommitError::Unavailable(e),
            SqlErrorKind::Transient => CommitError::Transient(e),
            SqlErrorKind::Other => CommitError::Sql(e),
        }
    }
}

impl CommitError {
    /// Worth retrying the same batch at once: it lost a race, or the database was unreachable.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            CommitError::Transient(_) | CommitError::Unavailable(_)
        )
    }

    pub fn is_unavailable(&self) -> bool {
        matches!(self, CommitError::Unavailable(_))
    }
}

/// What a PostgreSQL error means for the one who sent the statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlErrorKind {
    /// No connection, or the server refuses work (classes 08, 57P, 53300, 25006).
    Unavailable,
    /// A race another attempt may win (40001, 40P01, 23505, 55P03).
    Transient,
    Other,
}

pub fn classify(e: &sqlx::Error) -> SqlErrorKind {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Tls(_) => SqlErrorKind::Unavailable,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // 25006: a read-only transaction, i.e. the server became a standby (failover).
            if code.starts_with("08")
                || code.starts_with("57P")
                || code == "53300"
                || code == "25006"
            {
                SqlErrorKind::Unavailable
            } else if matches!(code.as_ref(), "40001" | "40P01" | "23505" | "55P03") {
                SqlErrorKind::Transient
            } else {
                SqlErrorKind::Other
            }
        }
        _ => SqlErrorKind::Other,
    }
}
