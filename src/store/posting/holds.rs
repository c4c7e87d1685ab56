//! The rows a transaction's holds write (`holds`, `hold_lines`, `hold_closings`), accumulated
//! from the decisions and written in one statement after the journal (closings name entries)
//! and before the idempotency records (which name holds).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::hold::HoldStatus;
use crate::domain::kind::Kind;
use crate::domain::Posting;

/// Where a request came from: its partition, offset and batch.
pub(super) struct Source {
    pub(super) partition: i32,
    pub(super) offset: i64,
    pub(super) batch: Uuid,
}

#[derive(Default)]
pub(super) struct HoldRows {
    // holds
    ids: Vec<Uuid>,
    entities: Vec<String>,
    keys: Vec<String>,
    dates: Vec<chrono::NaiveDate>,
    expiries: Vec<Option<DateTime<Utc>>>,
    descriptions: Vec<Option<String>>,
    sources: Vec<Option<String>>,
    metadata: Vec<String>,
    partitions: Vec<i32>,
    offsets: Vec<i64>,
    batches: Vec<Uuid>,
    // hold_lines
    line_holds: Vec<Uuid>,
    line_nos: Vec<i16>,
    line_accounts: Vec<String>,
    line_sides: Vec<&'static str>,
    line_amounts: Vec<Decimal>,
    line_currencies: Vec<String>,
    // hold_closings
    closed: Vec<Uuid>,
    closed_status: Vec<&'static str>,
    closed_by: Vec<String>,
    closed_entries: Vec<Option<Uuid>>,
    closed_partitions: Vec<i32>,
    closed_offsets: Vec<i64>,
    closed_batches: Vec<Uuid>,
}

impl HoldRows {
    pub(super) fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.closed.is_empty()
    }

    /// A hold made by the `PENDING` request `p`.
    pub(super) fn hold(&mut self, id: Uuid, p: &Posting, from: Source) {
        let expires_at = match &p.kind {
            Kind::Pending { expires_at } => *expires_at,
            _ => None,
        };
        self.ids.push(id);
        self.entities.push(p.entity.as_str().to_string());
        self.keys.push(p.key.as_str().to_string());
        self.dates.push(p.effective_date);
        self.expiries.push(expires_at);
        self.descriptions.push(p.description.clone());
        self.sources.push(p.source.clone());
        self.metadata
            .push(serde_json::to_string(&p.metadata).expect("metadata serializes"));
        self.partitions.push(from.partition);
        self.offsets.push(from.offset);
        self.batches.push(from.batch);
        for (i, l) in p.lines.iter().enumerate() {
            self.line_holds.push(id);
            self.line_nos.push(i as i16 + 1);
            self.line_accounts.push(l.account.as_str().to_string());
            self.line_sides.push(l.side.code());
            self.line_amounts.push(l.amount);
            self.line_currencies.push(l.currency.as_str().to_string());
        }
    }

    /// A hold closed by the request with key `key` (posted by `entry`, voided or expired).
    pub(super) fn closing(
        &mut self,
        hold: Uuid,
        status: HoldStatus,
        key: &str,
        entry: Option<Uuid>,
        from: Source,
    ) {
        self.closed.push(hold);
        self.closed_status.push(status.code());
        self.closed_by.push(key.to_string());
        self.closed_entries.push(entry);
        self.closed_partitions.push(from.partition);
        self.closed_offsets.push(from.offset);
        self.closed_batches.push(from.batch);
    }

    /// Every hold, line and closing in one statement. A hold closed concurrently by another
    /// partition's transaction makes this one fail on the closing's key (retried, and then
    /// refused by the hold's new status).
    pub(super) async fn write_in_tx(
        &self,
        tx: &mut PgConnection,
        topic: &str,
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "WITH h AS (
                 INSERT INTO holds (id, entity_id, idempotency_key, effective_date, expires_at, description, source, metadata, source_topic, source_partition, source_offset, batch_id, recorded_at)
                 SELECT id, e, k, d, x, ds, s, m::jsonb, $12, p, o, b, $13
                 FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::date[], $5::timestamptz[], $6::text[], $7::text[], $8::text[], $9::int[], $10::bigint[], $11::uuid[])
                     AS u(id, e, k, d, x, ds, s, m, p, o, b)),
             l AS (
                 INSERT INTO hold_lines (hold_id, line_no, account_id, side, amount, currency)
                 SELECT * FROM UNNEST($14::uuid[], $15::smallint[], $16::text[], $17::text[], $18::numeric[], $19::text[]))
             INSERT INTO hold_closings (hold_id, status, closed_by_key, entry_id, source_partition, source_offset, batch_id, closed_at)
             SELECT h, s, k, e, p, o, b, $13
             FROM UNNEST($20::uuid[], $21::text[], $22::text[], $23::uuid[], $24::int[], $25::bigint[], $26::uuid[]) AS u(h, s, k, e, p, o, b)",
        )
        .persistent(false)
        .bind(&self.ids)
        .bind(&self.entities)
        .bind(&self.keys)
        .bind(&self.dates)
        .bind(&self.expiries)
        .bind(&self.descriptions)
        .bind(&self.sources)
        .bind(&self.metadata)
        .bind(&self.partitions)
        .bind(&self.offsets)
        .bind(&self.batches)
        .bind(topic)
        .bind(now)
        .bind(&self.line_holds)
        .bind(&self.line_nos)
        .bind(&self.line_accounts)
        .bind(&self.line_sides)
        .bind(&self.line_amounts)
        .bind(&self.line_currencies)
        .bind(&self.closed)
        .bind(&self.closed_status)
        .bind(&self.closed_by)
        .bind(&self.closed_entries)
        .bind(&self.closed_partitions)
        .bind(&self.closed_offsets)
        .bind(&self.closed_batches)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}
