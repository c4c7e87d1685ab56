//! Rows for `COPY ... FROM STDIN (FORMAT binary)`: PostgreSQL's binary copy format, each value
//! encoded by sqlx's own binary encoder for its type, so the bytes are what the server expects.
//! The poster's bulk path for the journal's largest tables (entries, lines, idempotency
//! records), and limit B of `bench pipeline`. Binary spares the server parsing every uuid,
//! amount, date and timestamp from text (docs/BENCHMARKS-HISTORY.md point 29).
//!
//! Values are encoded straight into the one buffer: no allocation per value.

use serde::Serialize;
use sqlx::encode::IsNull;
use sqlx::postgres::PgArgumentBuffer;
use sqlx::{Encode, Postgres};

/// A buffer of rows of a table of `columns` columns in the binary format, header included;
/// `finish` adds the trailer. Every row must give exactly `columns` values: a row short or
/// long of one is refused (a panic) when the next row starts or the rows finish.
pub struct BinaryRows {
    buf: PgArgumentBuffer,
    table: &'static str,
    rows: usize,
    columns: i16,
    /// Values given in the current row.
    given: i16,
}

/// Rows of a table of no columns, which take no row: what is left where rows were taken
/// (`std::mem::take`). Rows of a real table come from `CopyTable::rows`.
impl Default for BinaryRows {
    fn default() -> Self {
        BinaryRows::with_columns("(none)", 0)
    }
}

impl BinaryRows {
    pub fn with_columns(table: &'static str, columns: usize) -> Self {
        let mut buf = PgArgumentBuffer::default();
        buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buf.extend(0i32.to_be_bytes()); // flags: no OIDs
        buf.extend(0i32.to_be_bytes()); // header extension length
        let columns = i16::try_from(columns).expect("a table of fewer than 32,768 columns");
        BinaryRows {
            buf,
            table,
            rows: 0,
            columns,
            given: columns,
        }
    }

    /// Starts a row.
    pub fn row(&mut self) -> &mut Self {
        self.check_row();
        self.buf.extend(self.columns.to_be_bytes());
        self.rows += 1;
        self.given = 0;
        self
    }

    fn check_row(&self) {
        assert!(
            self.rows == 0 || self.given == self.columns,
            "{} row {} has {} values for {} columns",
            self.table,
            self.rows,
            self.given,
            self.columns
        );
    }

    /// Rows written so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// One value, as sqlx would send it as a binary parameter. Not for `Json` (its encoder
    /// leaves a deferred patch behind in the buffer): use `jsonb`.
    pub fn field<'q, T: Encode<'q, Postgres>>(&mut self, value: &T) -> &mut Self {
        self.given += 1;
        let at = self.open_value();
        match value.encode_by_ref(&mut self.buf) {
            Ok(IsNull::No) => self.close_value(at),
            Ok(IsNull::Yes) => {
                self.buf.truncate(at);
                self.buf.extend((-1i32).to_be_bytes());
            }
            Err(e) => panic!("encoding a COPY value: {e}"),
        }
        self
    }

    /// A `jsonb` value: the format's version byte, then the JSON text.
    pub fn jsonb<T: Serialize + ?Sized>(&mut self, value: &T) -> &mut Self {
        self.given += 1;
        let at = self.open_value();
        self.buf.push(1);
        serde_json::to_writer(&mut *self.buf, value).expect("a value that serializes");
        self.close_value(at);
        self
    }

    /// Reserves the value's length; returns where it goes.
    fn open_value(&mut self) -> usize {
        let at = self.buf.len();
        self.buf.extend(0i32.to_be_bytes());
        at
    }

    /// Writes the length of the value that follows `at`.
    fn close_value(&mut self, at: usize) {
        let len = i32::try_from(self.buf.len() - at - 4).expect("a value under 2 GiB");
        self.buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
    }

    /// The whole stream, with the trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.check_row();
        self.buf.extend((-1i16).to_be_bytes());
        std::mem::take(&mut *self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_rows_and_trailer_follow_the_format() {
        let mut rows = BinaryRows::with_columns("test", 2);
        rows.row().field(&7i32).field(&Option::<i32>::None);
        rows.row().jsonb(&serde_json::json!({"a": 1})).field(&1i32);
        assert_eq!(rows.rows(), 2);
        let bytes = rows.finish();
        assert_eq!(&bytes[..11], b"PGCOPY\n\xff\r\n\0");
        let mut expected = vec![0, 2, 0, 0, 0, 4, 0, 0, 0, 7, 0xff, 0xff, 0xff, 0xff];
        expected.extend([0, 2, 0, 0, 0, 8, 1]);
        expected.extend(b"{\"a\":1}");
        expected.extend([0, 0, 0, 4, 0, 0, 0, 1]);
        expected.extend([0xff, 0xff]);
        assert_eq!(&bytes[19..], &expected[..]);
    }
}
