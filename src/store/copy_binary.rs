//! Rows for `COPY ... FROM STDIN (FORMAT binary)`: PostgreSQL's binary copy format, each value
//! encoded by sqlx's own binary encoder for its type, so the bytes are what the server expects.
//! Used for limit B of `bench pipeline` (the issue asks for binary COPY there).

use sqlx::encode::IsNull;
use sqlx::postgres::PgArgumentBuffer;
use sqlx::{Encode, Postgres};

/// A buffer of rows in the binary format, header included; `finish` adds the trailer.
pub struct BinaryRows {
    buf: Vec<u8>,
}

impl Default for BinaryRows {
    fn default() -> Self {
        let mut buf = b"PGCOPY\n\xff\r\n\0".to_vec();
        buf.extend(0i32.to_be_bytes()); // flags: no OIDs
        buf.extend(0i32.to_be_bytes()); // header extension length
        BinaryRows { buf }
    }
}

impl BinaryRows {
    /// Starts a row of `fields` values.
    pub fn row(&mut self, fields: i16) -> &mut Self {
        self.buf.extend(fields.to_be_bytes());
        self
    }

    /// One value, as sqlx would send it as a binary parameter.
    pub fn field<'q, T: Encode<'q, Postgres>>(&mut self, value: &T) -> &mut Self {
        let mut encoded = PgArgumentBuffer::default();
        match value.encode_by_ref(&mut encoded) {
            Ok(IsNull::No) => {
                let len = i32::try_from(encoded.len()).expect("a value under 2 GiB");
                self.buf.extend(len.to_be_bytes());
                self.buf.extend_from_slice(&encoded);
            }
            Ok(IsNull::Yes) => self.buf.extend((-1i32).to_be_bytes()),
            Err(e) => panic!("encoding a COPY value: {e}"),
        }
        self
    }

    /// The whole stream, with the trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend((-1i16).to_be_bytes());
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_rows_and_trailer_follow_the_format() {
        let mut rows = BinaryRows::default();
        rows.row(2).field(&7i32).field(&Option::<i32>::None);
        let bytes = rows.finish();
        assert_eq!(&bytes[..11], b"PGCOPY\n\xff\r\n\0");
        assert_eq!(
            &bytes[19..],
            &[0, 2, 0, 0, 0, 4, 0, 0, 0, 7, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
    }
}
