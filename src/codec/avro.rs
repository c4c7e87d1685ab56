//! Avro and JSON framing for one record type.
//!
//! Decoding phases: size limit -> framing detection -> datum decode -> serde into `T` -> no
//! trailing bytes. Every failure is a [`DecodeError`]; nothing here panics on any input.
//!
//! Framings:
//! - Avro single-object encoding: `C3 01` + 8-byte CRC-64-AVRO (Rabin) fingerprint of the schema.
//! - Confluent Schema Registry: `00` + 4-byte big-endian schema id + datum.
//! - JSON: an object, for upstreams without Avro (when enabled).

use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::marker::PhantomData;

use apache_avro::headers::{HeaderBuilder, RabinFingerprintHeader};
use apache_avro::types::Value;
use apache_avro::{
    from_avro_datum, from_avro_datum_schemata, from_value, to_avro_datum, to_value, Schema,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

/// How a message is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    AvroSingleObject,
    /// Confluent framing with the given registry schema id.
    AvroConfluent {
        schema_id: u32,
    },
    Json,
}

/// A framing name none of `avro`, `json` or `confluent:SCHEMA_ID`.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("unknown framing {0:?}: use avro, json or confluent:SCHEMA_ID")]
pub struct UnknownFraming(pub String);

impl std::str::FromStr for Framing {
    type Err = UnknownFraming;
    fn from_str(s: &str) -> Result<Self, UnknownFraming> {
        match s {
            "avro" | "avro-single-object" => Ok(Framing::AvroSingleObject),
            "json" => Ok(Framing::Json),
            other => match other.strip_prefix("confluent:").map(str::parse::<u32>) {
                Some(Ok(schema_id)) => Ok(Framing::AvroConfluent { schema_id }),
                _ => Err(UnknownFraming(other.to_string())),
            },
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("message is {bytes} bytes, the maximum is {max}")]
    TooLarge { bytes: usize, max: usize },
    /// A message whose writer schema (single-object fingerprint, Confluent id) is none of the
    /// versions published (or given ids).
    #[error("{0} is no published version of this schema")]
    UnknownSchema(String),
    #[error("{0}")]
    Malformed(String),
}

#[derive(Debug, Error)]
pub enum EncodeError {
    #[error("cannot encode as Avro: {0}")]
    Avro(#[from] apache_avro::Error),
    #[error("cannot encode as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Reads and writes one record type in every framing.
pub struct RecordCodec<T> {
    schema: Schema,
    /// Whether the schema names a type defined elsewhere in it (`Schema::Ref`); see
    /// `decode_datum`.
    has_references: bool,
    single_object_header: Vec<u8>,
    /// Earlier published versions of the schema, by their single-object header: a message
    /// written with one is read through Avro schema resolution into the current version.
    writers: Vec<(Vec<u8>, Schema)>,
    accept_json: bool,
    /// When set, a Confluent-framed message is read with the published version its id names
    /// (`None`: the current one); an id not among them is unknown.
    confluent_writers: Option<HashMap<u32, Option<Schema>>>,
    max_bytes: usize,
    _record: PhantomData<fn() -> T>,
}

const SINGLE_OBJECT_MAGIC: [u8; 2] = [0xC3, 0x01];
const CONFLUENT_MAGIC: u8 = 0;

impl<T: Serialize + DeserializeOwned> RecordCodec<T> {
    /// `schema_json` is one of the files under `schemas/`.
    pub fn new(schema_json: &str, max_bytes: usize) -> Self {
        crate::codec::limit_avro_allocations();
        let schema = Schema::parse_str(schema_json).expect("bundled schemas are valid Avro");
        let single_object_header = RabinFingerprintHeader::from_schema(&schema).build_header();
        debug_assert_eq!(&single_object_header[..2], &SINGLE_OBJECT_MAGIC);
        RecordCodec {
            has_references: has_references(&schema),
            schema,
            single_object_header,
            writers: Vec::new(),
            accept_json: true,
            confluent_writers: None,
            max_bytes,
            _record: PhantomData,
        }
    }

    /// Also reads single-object messages written with these published versions of the schema
    /// (every file under `schemas/history/<type>/`); the current one may be among them.
    pub fn with_writer_versions(mut self, versions: &[&str]) -> Self {
        self.writers = versions
            .iter()
            .map(|json| Schema::parse_str(json).expect("bundled schemas are valid Avro"))
            .map(|s| (RabinFingerprintHeader::from_schema(&s).build_header(), s))
            .filter(|(header, _)| *header != self.single_object_header)
            .collect();
        self
    }

    pub fn accept_json(mut self, accept: bool) -> Self {
        self.accept_json = accept;
        self
    }

    /// Reads Confluent-framed messages by their writer schema id: `writers` are the versions of
    /// this schema and the ids a Schema Registry gave them (`ConfluentSchemas`). Without this,
    /// a Confluent-framed message is read as the current version whatever its id.
    pub fn with_confluent_writers(mut self, writers: &ConfluentSchemas) -> Self {
        if !writers.0.is_empty() {
            let current = &self.single_object_header;
            let by_id = writers.0.iter().map(|v| {
                let writer = (v.header != *current).then(|| v.schema.clone());
                (v.id, writer)
            });
            self.confluent_writers = Some(by_id.collect());
        }
        self
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    pub fn encode(&self, record: &T, framing: Framing) -> Result<Vec<u8>, EncodeError> {
        match framing {
            Framing::Json => Ok(serde_json::to_vec(record)?),
            Framing::AvroSingleObject => {
                let mut out = self.single_object_header.clone();
                out.extend(self.datum(record)?);
                Ok(out)
            }
            Framing::AvroConfluent { schema_id } => {
                let mut out = vec![CONFLUENT_MAGIC];
                out.extend(schema_id.to_be_bytes());
                out.extend(self.datum(record)?);
                Ok(out)
            }
        }
    }

    fn datum(&self, record: &T) -> Result<Vec<u8>, apache_avro::Error> {
        // `resolve` turns plain values into the schema's unions (Option -> ["null", T]).
        let value = to_value(record)?.resolve(&self.schema)?;
        to_avro_datum(&self.schema, value)
    }

    pub fn decode(&self, bytes: &[u8]) -> Result<T, DecodeError> {
        if bytes.len() > self.max_bytes {
            return Err(DecodeError::TooLarge {
                bytes: bytes.len(),
                max: self.max_bytes,
            });
        }
        match bytes {
            [0xC3, 0x01, ..] => self.decode_single_object(bytes),
            [CONFLUENT_MAGIC, a, b, c, d, rest @ ..] => {
                let id = u32::from_be_bytes([*a, *b, *c, *d]);
                match self.confluent_writers.as_ref().map(|w| w.get(&id)) {
                    None | Some(Some(None)) => self.decode_datum(rest),
                    Some(Some(Some(writer))) => self.decode_resolved(writer, rest),
                    Some(None) => Err(DecodeError::UnknownSchema(format!(
                        "Confluent schema id {id}"
                    ))),
                }
            }
            _ if self.accept_json && looks_like_json(bytes) => {
                serde_json::from_slice(bytes).map_err(|e| malformed(&format!("JSON: {e}")))
            }
            _ => Err(malformed(
                "unknown framing: not Avro single-object, Confluent or JSON",
            )),
        }
    }

    /// The current version's messages directly; an earlier version's through schema resolution
    /// (fields it lacks take their defaults); any other fingerprint is an unknown schema.
    fn decode_single_object(&self, bytes: &[u8]) -> Result<T, DecodeError> {
        let header = self.single_object_header.as_slice();
        if bytes.len() < header.len() {
            return Err(malformed("single-object header cut short"));
        }
        let (head, datum) = bytes.split_at(header.len());
        if head == header {
            return self.decode_datum(datum);
        }
        let Some((_, writer)) = self.writers.iter().find(|(h, _)| h.as_slice() == head) else {
            let fingerprint: String = head[2..].iter().map(|b| format!("{b:02x}")).collect();
            return Err(DecodeError::UnknownSchema(format!(
                "single-object schema fingerprint {fingerprint}"
            )));
        };
        self.decode_resolved(writer, datum)
    }

    /// A datum written with `writer`, read through schema resolution into the current version.
    fn decode_resolved(&self, writer: &Schema, datum: &[u8]) -> Result<T, DecodeError> {
        let value = read_whole_datum(datum, "Avro (by its writer schema)", |r| {
            from_avro_datum(writer, r, Some(&self.schema))
        })?;
        from_value::<T>(&value).map_err(|e| malformed(&format!("Avro value: {e}")))
    }

    fn decode_datum(&self, datum: &[u8]) -> Result<T, DecodeError> {
        // `from_avro_datum` collects the schema's named types on every call, to resolve
        // references; a schema without references needs none (that was a sixth of decoding).
        let value = read_whole_datum(datum, "Avro", |r| {
            if self.has_references {
                from_avro_datum(&self.schema, r, None)
            } else {
                from_avro_datum_schemata(&self.schema, Vec::new(), r, None)
            }
        })?;
        from_value::<T>(&value).map_err(|e| malformed(&format!("Avro value: {e}")))
    }
}

/// Read after a datum's last byte only when the datum was cut short: a varint's continuation
/// byte, which no value can end on. apache-avro reads a union index it finds at the end of its
/// input as null instead of failing, so without this a message that lost its trailing optional
/// fields (request schema version 2 ends with three) would decode as if they were null: a
/// truncated hold as a posting.
const SENTINEL: &[u8] = &[0x80];

type DatumReader<'a> = std::io::Chain<Cursor<&'a [u8]>, &'static [u8]>;

/// `read`s one value from exactly `datum`: refused when the reader needed bytes past its end
/// (it was cut short) or left some (trailing bytes).
fn read_whole_datum(
    datum: &[u8],
    what: &str,
    read: impl FnOnce(&mut DatumReader<'_>) -> Result<Value, apache_avro::Error>,
) -> Result<Value, DecodeError> {
    let mut reader = Cursor::new(datum).chain(SENTINEL);
    let value = read(&mut reader).map_err(|e| malformed(&format!("{what}: {e}")))?;
    let (cursor, sentinel) = reader.into_inner();
    if sentinel.is_empty() {
        return Err(malformed(&format!("{what}: the datum is cut short")));
    }
    let left = datum.len() - cursor.position() as usize;
    if left > 0 {
        return Err(malformed(&format!(
            "{left} trailing bytes after the Avro datum"
        )));
    }
    Ok(value)
}

/// Whether `schema` refers to a named type by name anywhere inside it.
fn has_references(schema: &Schema) -> bool {
    match schema {
        Schema::Ref { .. } => true,
        Schema::Array(a) => has_references(&a.items),
        Schema::Map(m) => has_references(&m.types),
        Schema::Union(u) => u.variants().iter().any(has_references),
        Schema::Record(r) => r.fields.iter().any(|f| has_references(&f.schema)),
        _ => false,
    }
}

/// Whether bytes are framed as JSON: an object, after any ASCII whitespace.
pub fn looks_like_json(bytes: &[u8]) -> bool {
    bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

fn malformed(detail: &str) -> DecodeError {
    // Error texts from decoders can echo input; keep details short.
    let mut d: String = detail.chars().take(300).collect();
    if d.len() < detail.len() {
        d.push('…');
    }
    DecodeError::Malformed(d)
}

/// Published versions of one schema and the ids a Confluent Schema Registry gave them, read
/// from a directory of `<id>.avsc` files (an export of the registry's subject:
/// `--confluent-schemas`).
#[derive(Debug, Clone, Default)]
pub struct ConfluentSchemas(Vec<ConfluentVersion>);

#[derive(Debug, Clone)]
struct ConfluentVersion {
    id: u32,
    /// Its single-object header: which published version it is.
    header: Vec<u8>,
    schema: Schema,
}

/// A directory of Confluent schema versions that cannot be used.
#[derive(Debug, Error)]
pub enum ConfluentSchemasError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{path}: the name is not <schema id>.avsc (an id of 1 to 2147483647, no leading zeros)"
    )]
    Name { path: String },
    #[error("{path}: not an Avro schema: {source}")]
    Parse {
        path: String,
        source: apache_avro::Error,
    },
    #[error("{path}: not a published version of the schema (schemas/history/): the ledger reads only versions it knows, never one by field names alone")]
    Unpublished { path: String },
    #[error("{dir}: no <schema id>.avsc file")]
    Empty { dir: String },
}

impl ConfluentSchemas {
    /// Every `<id>.avsc` file of `dir` (entries whose name starts with `.`, as a Kubernetes
    /// volume's, and directories are passed over), each one of the `published` versions.
    pub fn read_dir(
        dir: &std::path::Path,
        published: &[&str],
    ) -> Result<Self, ConfluentSchemasError> {
        let headers: Vec<Vec<u8>> = published
            .iter()
            .map(|json| Schema::parse_str(json).expect("bundled schemas are valid"))
            .map(|s| RabinFingerprintHeader::from_schema(&s).build_header())
            .collect();
        let read = |path: &std::path::Path, source| ConfluentSchemasError::Read {
            path: path.display().to_string(),
            source,
        };
        let mut versions = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| read(dir, e))? {
            let path = entry.map_err(|e| read(dir, e))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with('.') || path.is_dir() {
                continue;
            }
            let shown = path.display().to_string();
            let id = confluent_id(name).ok_or(ConfluentSchemasError::Name {
                path: shown.clone(),
            })?;
            let text = std::fs::read_to_string(&path).map_err(|e| read(&path, e))?;
            let schema =
                Schema::parse_str(&text).map_err(|source| ConfluentSchemasError::Parse {
                    path: shown.clone(),
                    source,
                })?;
            let header = RabinFingerprintHeader::from_schema(&schema).build_header();
            if !headers.contains(&header) {
                return Err(ConfluentSchemasError::Unpublished { path: shown });
            }
            versions.push(ConfluentVersion { id, header, schema });
        }
        if versions.is_empty() {
            return Err(ConfluentSchemasError::Empty {
                dir: dir.display().to_string(),
            });
        }
        versions.sort_by_key(|v| v.id);
        Ok(ConfluentSchemas(versions))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The schema ids, in order.
    pub fn ids(&self) -> Vec<u32> {
        self.0.iter().map(|v| v.id).collect()
    }
}

/// The id of a file named `<id>.avsc`: a Schema Registry id (a positive 32-bit signed integer)
/// written plainly, so that two names never give one id.
fn confluent_id(name: &str) -> Option<u32> {
    let digits = name.strip_suffix(".avsc")?;
    let id: u32 = digits.parse().ok()?;
    (id >= 1 && id <= i32::MAX as u32 && id.to_string() == digits).then_some(id)
}
