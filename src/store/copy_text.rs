//! Rows for `COPY ... FROM STDIN` in PostgreSQL's text format: the bulk path for the journal's
//! largest tables. COPY skips the per-row expression work of `INSERT ... SELECT FROM UNNEST`
//! (it measured about twice as fast for journal lines, docs/BENCHMARKS.md) and fires the same
//! constraints and triggers (including the journal's reference checks).

use std::fmt::Display;
use std::fmt::Write as _;

/// A buffer of rows; fields are separated by tabs, rows end with a newline.
#[derive(Default)]
pub struct CopyRows {
    buf: String,
    row_open: bool,
}

impl CopyRows {
    fn separate(&mut self) {
        if self.row_open {
            self.buf.push('\t');
        }
        self.row_open = true;
    }

    /// Free text, escaped (backslash, tab, newline, carriage return).
    pub fn text(&mut self, value: &str) -> &mut Self {
        self.separate();
        for c in value.chars() {
            match c {
                '\\' => self.buf.push_str("\\\\"),
                '\t' => self.buf.push_str("\\t"),
                '\n' => self.buf.push_str("\\n"),
                '\r' => self.buf.push_str("\\r"),
                c => self.buf.push(c),
            }
        }
        self
    }

    /// A value whose text form has no characters COPY treats specially (numbers, uuids,
    /// dates, timestamps).
    pub fn plain(&mut self, value: impl Display) -> &mut Self {
        self.separate();
        write!(self.buf, "{value}").expect("writing to a String");
        self
    }

    pub fn null(&mut self) -> &mut Self {
        self.separate();
        self.buf.push_str("\\N");
        self
    }

    pub fn opt_text(&mut self, value: Option<&str>) -> &mut Self {
        match value {
            Some(v) => self.text(v),
            None => self.null(),
        }
    }

    pub fn opt_plain(&mut self, value: Option<impl Display>) -> &mut Self {
        match value {
            Some(v) => self.plain(v),
            None => self.null(),
        }
    }

    /// bytea in hex form (`\x...`, with the backslash escaped for COPY).
    pub fn bytes(&mut self, value: &[u8]) -> &mut Self {
        self.separate();
        self.buf.push_str("\\\\x");
        self.buf.push_str(&hex::encode(value));
        self
    }

    pub fn end_row(&mut self) {
        self.buf.push('\n');
        self.row_open = false;
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.buf.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_nulls_and_bytes_use_copy_syntax() {
        let mut rows = CopyRows::default();
        rows.text("a\tb\\c\nd")
            .null()
            .bytes(&[0xAB, 0x01])
            .plain(42);
        rows.end_row();
        rows.opt_text(None).opt_plain(Some(7));
        rows.end_row();
        assert_eq!(
            std::str::from_utf8(rows.as_bytes()).unwrap(),
            "a\\tb\\\\c\\nd\t\\N\t\\\\xab01\t42\n\\N\t7\n"
        );
    }
}
