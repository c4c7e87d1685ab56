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
    /// An error caused by what a message holds (SQLSTATE classes 22 and 23 but 23505): the
    /// only kind that may split a batch to isolate the message, which is then rejected.
    #[error("data error: {0}")]
    Data(sqlx::Error),
    /// Any other SQL error (a timeout, a missing grant, a resource, an internal error): not
    /// the messages' fault. Retried without limit, never turned into a rejection.
    #[error("database: {0}")]
    Sql(sqlx::Error),
}

impl From<sqlx::Error> for CommitError {
    fn from(e: sqlx::Error) -> Self {
        match classify(&e) {
            SqlErrorKind::Unavailable => CommitError::Unavailable(e),
            SqlErrorKind::Transient => CommitError::Transient(e),
            SqlErrorKind::Data => CommitError::Data(e),
            SqlErrorKind::Other => CommitError::Sql(e),
        }
    }
}

impl CommitError {
    /// Not the messages' fault: the same batch is retried, without limit, and nothing about
    /// its messages is recorded meanwhile (lost races, timeouts, an unreachable or refusing
    /// database, any SQL error outside classes 22 and 23).
    pub fn is_infrastructure(&self) -> bool {
        matches!(
            self,
            CommitError::Transient(_) | CommitError::Unavailable(_) | CommitError::Sql(_)
        )
    }

    /// Caused by a message's own data: a batch that fails so is split to isolate it.
    pub fn is_data(&self) -> bool {
        matches!(self, CommitError::Data(_))
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
    /// A race another attempt may win, or a wait that ran out (40001, 40P01, 23505, 55P03,
    /// 57014).
    Transient,
    /// The statement's data broke a rule (classes 22 and 23 but 23505).
    Data,
    /// Anything else: resources (53), system (58), internal (XX), privileges, raised errors.
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
            } else if matches!(
                code.as_ref(),
                "40001" | "40P01" | "23505" | "55P03" | "57014"
            ) {
                SqlErrorKind::Transient
            } else if code.starts_with("22") || code.starts_with("23") {
                SqlErrorKind::Data
            } else {
                SqlErrorKind::Other
            }
        }
        _ => SqlErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database error with only a SQLSTATE, as the server would send it.
    #[derive(Debug)]
    struct Coded(&'static str);

    impl std::fmt::Display for Coded {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "SQLSTATE {}", self.0)
        }
    }

    impl std::error::Error for Coded {}

    impl sqlx::error::DatabaseError for Coded {
        fn message(&self) -> &str {
            "test"
        }
        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            Some(self.0.into())
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn commit_error(code: &'static str) -> CommitError {
        sqlx::Error::Database(Box::new(Coded(code))).into()
    }

    #[test]
    fn only_data_errors_may_split_a_batch() {
        for code in ["22021", "22P02", "23503", "23514", "23502"] {
            let e = commit_error(code);
            assert!(e.is_data() && !e.is_infrastructure(), "{code}: {e:?}");
        }
        // Timeouts, locks, deadlocks, races, resources, system and internal errors, missing
        // privileges, raised exceptions: never the message's fault.
        let waits = [
            "57014", "55P03", "40P01", "40001", "23505", "53100", "53200", "58030",
        ];
        let others = ["XX000", "42501", "P0001", "08006", "57P01", "25006"];
        for code in waits.into_iter().chain(others) {
            let e = commit_error(code);
            assert!(e.is_infrastructure() && !e.is_data(), "{code}: {e:?}");
        }
        assert!(CommitError::from(sqlx::Error::PoolTimedOut).is_infrastructure());
    }
}
