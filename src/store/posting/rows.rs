//! The journal's binary COPY tables, each declared once with its column list, beside the one
//! function that writes its row with fields by name: the poster's batches (`plan.rs`) and the
//! benchmark's limit B write the same rows through these. A row's field count is checked
//! against its table's columns (`BinaryRows`), so a field added on one side only fails at once.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::store::copy_binary::BinaryRows;

/// A table written by binary COPY, and its columns in the order rows give them.
pub struct CopyTable {
    pub table: &'static str,
    pub columns: &'static [&'static str],
}

impl CopyTable {
    pub fn statement(&self) -> String {
        format!(
            "COPY {} ({}) FROM STDIN (FORMAT binary)",
            self.table,
            self.columns.join(", ")
        )
    }

    /// An empty set of rows of this table.
    pub fn rows(&self) -> BinaryRows {
        BinaryRows::with_columns(self.table, self.columns.len())
    }
}

pub const JOURNAL_ENTRIES: CopyTable = CopyTable {
    table: "journal_entries",
    columns: &[
        "id",
        "entity_id",
        "idempotency_key",
        "effective_date",
        "description",
        "source",
        "metadata",
        "source_topic",
        "source_partition",
        "source_offset",
        "batch_id",
        "recorded_at",
        "hash",
        "prev_hash",
        "reverses",
    ],
};

/// One `journal_entries` row.
pub struct EntryRow<'a> {
    pub id: Uuid,
    pub entity: &'a str,
    pub key: &'a str,
    pub effective_date: NaiveDate,
    pub description: Option<&'a str>,
    pub source: Option<&'a str>,
    pub metadata: &'a BTreeMap<String, String>,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub batch_id: Uuid,
    pub recorded_at: DateTime<Utc>,
    pub hash: &'a [u8],
    pub prev_hash: &'a [u8],
    pub reverses: Option<Uuid>,
}

impl EntryRow<'_> {
    /// Writes the row in `JOURNAL_ENTRIES` column order.
    pub fn write(&self, rows: &mut BinaryRows) {
        rows.row()
            .field(&self.id)
            .field(&self.entity)
            .field(&self.key)
            .field(&self.effective_date)
            .field(&self.description)
            .field(&self.source)
            .jsonb(self.metadata)
            .field(&self.topic)
            .field(&self.partition)
            .field(&self.offset)
            .field(&self.batch_id)
            .field(&self.recorded_at)
            .field(&self.hash)
            .field(&self.prev_hash)
            .field(&self.reverses);
    }
}

pub const JOURNAL_LINES: CopyTable = CopyTable {
    table: "journal_lines",
    columns: &[
        "entry_id",
        "line_no",
        "account_id",
        "side",
        "amount",
        "currency",
        "effective_date",
        "recorded_at",
    ],
};

/// One `journal_lines` row.
pub struct LineRow<'a> {
    pub entry_id: Uuid,
    pub line_no: i16,
    pub account: &'a str,
    pub side: &'a str,
    pub amount: Decimal,
    pub currency: &'a str,
    pub effective_date: NaiveDate,
    pub recorded_at: DateTime<Utc>,
}

impl LineRow<'_> {
    /// Writes the row in `JOURNAL_LINES` column order.
    pub fn write(&self, rows: &mut BinaryRows) {
        rows.row()
            .field(&self.entry_id)
            .field(&self.line_no)
            .field(&self.account)
            .field(&self.side)
            .field(&self.amount)
            .field(&self.currency)
            .field(&self.effective_date)
            .field(&self.recorded_at);
    }
}

pub const IDEMPOTENCY_RECORDS: CopyTable = CopyTable {
    table: "idempotency_records",
    columns: &[
        "key",
        "fingerprint",
        "outcome",
        "entry_id",
        "rejection_id",
        "recorded_at",
        "hold_id",
        "produced_at",
    ],
};

/// One `idempotency_records` row.
pub struct KeyRow<'a> {
    pub key: &'a str,
    pub fingerprint: &'a [u8],
    pub outcome: &'a str,
    pub entry_id: Option<Uuid>,
    pub rejection_id: Option<Uuid>,
    pub recorded_at: DateTime<Utc>,
    pub hold_id: Option<Uuid>,
    pub produced_at: Option<DateTime<Utc>>,
}

impl KeyRow<'_> {
    /// Writes the row in `IDEMPOTENCY_RECORDS` column order.
    pub fn write(&self, rows: &mut BinaryRows) {
        rows.row()
            .field(&self.key)
            .field(&self.fingerprint)
            .field(&self.outcome)
            .field(&self.entry_id)
            .field(&self.rejection_id)
            .field(&self.recorded_at)
            .field(&self.hold_id)
            .field(&self.produced_at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_name_every_column_once() {
        for t in [&JOURNAL_ENTRIES, &JOURNAL_LINES, &IDEMPOTENCY_RECORDS] {
            let mut seen = std::collections::BTreeSet::new();
            assert!(t.columns.iter().all(|c| seen.insert(*c)), "{}", t.table);
            assert!(t.statement().contains(&t.columns.join(", ")));
        }
    }

    #[test]
    #[should_panic(expected = "journal_lines")]
    fn a_row_with_a_missing_field_is_refused() {
        let mut rows = JOURNAL_LINES.rows();
        rows.row().field(&Uuid::nil()).field(&1i16);
        rows.row();
    }
}
