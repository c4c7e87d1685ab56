//! Account attributes a poster keeps between batches.
//!
//! Every batch needs, for each account it touches, the attributes its postings are checked
//! against: entity, currency, normal side, whether it is active and whether it may go negative.
//! Reading them for every batch was 8 ms of PostgreSQL time per 1,000 postings
//! (docs/BENCHMARKS-HISTORY.md point 20). They rarely change, so the poster keeps them, and each batch
//! reads one value instead: `account_revision` (migration 0009) changes in the same transaction
//! as any change to `accounts`, and a changed revision empties the cache.
//!
//! What a batch sees is what it saw before: attributes as of one moment inside its transaction,
//! unlocked. Balances are not kept here; the batch reads (and locks) the balances its decisions
//! depend on, and corrects the others' events at update time.

use std::sync::{Arc, Mutex};

use foldhash::HashMap;

use sqlx::PgConnection;

use crate::domain::batch::AccountState;
use crate::domain::Side;

/// At most this many accounts are kept; past it the cache starts again (bounded memory).
const ACCOUNTS_KEPT_MAX: usize = 200_000;

/// Shared by a poster's commit lanes.
#[derive(Default)]
pub struct AccountCache {
    inner: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    /// The `account_revision` the kept attributes belong to.
    revision: Option<uuid::Uuid>,
    accounts: HashMap<Arc<str>, AccountState>,
}

#[derive(sqlx::FromRow)]
struct AccountRow {
    id: String,
    entity_id: String,
    currency: String,
    active: bool,
    allow_negative: bool,
    overdraft_limit: rust_decimal::Decimal,
    #[sqlx(try_from = "String")]
    normal_side: Side,
}

impl AccountRow {
    /// The account's state with a zero balance and version: the caller fills in the ones it
    /// reads.
    fn into_state(self) -> (Arc<str>, AccountState) {
        let state = AccountState {
            entity_id: self.entity_id.into(),
            currency: self.currency.into(),
            active: self.active,
            allow_negative: self.allow_negative,
            overdraft_limit: self.overdraft_limit,
            normal_side: self.normal_side,
            balance: rust_decimal::Decimal::ZERO,
            pending: Default::default(),
            version: 0,
        };
        (self.id.into(), state)
    }
}

impl AccountCache {
    /// The accounts among `ids` that exist (with a balance row), with balance and version 0.
    /// `revision` is the accounts' revision as the caller's transaction read it
    /// (`SELECT revision FROM account_revision`); only the accounts not kept for that revision
    /// are read.
    pub async fn load_in_tx(
        &self,
        tx: &mut PgConnection,
        ids: &[&str],
        revision: uuid::Uuid,
    ) -> Result<HashMap<Arc<str>, AccountState>, sqlx::Error> {
        let mut found = HashMap::with_capacity_and_hasher(ids.len(), Default::default());
        let missing: Vec<&str> = {
            let mut kept = self.inner.lock().expect("account cache lock");
            if kept.revision != Some(revision) {
                kept.accounts.clear();
                kept.revision = Some(revision);
            }
            ids.iter()
                .copied()
                .filter(|id| match kept.accounts.get_key_value(*id) {
                    Some((id, state)) => {
                        found.insert(id.clone(), state.clone());
                        false
                    }
                    None => true,
                })
                .collect()
        };
        if missing.is_empty() {
            return Ok(found);
        }
        let rows: Vec<AccountRow> = sqlx::query_as(
            "SELECT a.id, a.entity_id, a.currency::text AS currency, a.active, a.allow_negative,
                    a.overdraft_limit, a.normal_side::text AS normal_side
             FROM unnest($1::text[]) AS k(id)
             CROSS JOIN LATERAL (SELECT * FROM accounts x WHERE x.id = k.id LIMIT 1) a
             JOIN account_balances b ON b.account_id = a.id",
        )
        // One index probe per account, planned each time: "Lookups by a list" in store/mod.rs.
        .persistent(false)
        .bind(&missing)
        .fetch_all(&mut *tx)
        .await?;
        let mut kept = self.inner.lock().expect("account cache lock");
        // Kept only under the revision read above: if another lane has seen a newer one since,
        // these rows may be older than it.
        let keep = kept.revision == Some(revision);
        if keep && kept.accounts.len() + rows.len() > ACCOUNTS_KEPT_MAX {
            kept.accounts.clear();
        }
        for row in rows {
            let (id, state) = row.into_state();
            if keep {
                kept.accounts.insert(id.clone(), state.clone());
            }
            found.insert(id, state);
        }
        Ok(found)
    }
}
