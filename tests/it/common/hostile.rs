//! Hostile posting messages, made from a kind and a seed (so a failure can be replayed): what an
//! attacker or a broken producer could put on the postings topic. Each kind is built to be
//! refused; `tests/it/fuzz_decode.rs` also feeds them to the decoder with random mutations.

use std::collections::BTreeMap;

use ledgerline::codec::{posting_codec, Framing};
use ledgerline::domain::{LineRequest, PostingRequest};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub const KINDS: [&str; 12] = [
    "random-bytes",
    "truncated-avro",
    "avro-huge-array-count",
    "json-huge-array",
    "json-deep-nesting",
    "special-amount",
    "confusable-identifier",
    "wrong-json-types",
    "confluent-garbage",
    "oversized",
    "control-characters",
    "too-many-lines",
];

/// A valid request over accounts `acct-00000`.. (the test ledgers' synthetic chart).
pub fn valid_request(key: &str) -> PostingRequest {
    PostingRequest {
        idempotency_key: key.into(),
        entity_id: "demo".into(),
        effective_date: "2026-11-05".into(),
        description: Some("hostile-test".into()),
        source: None,
        reverses: None,
        kind: None,
        pending_id: None,
        expires_at: None,
        metadata: BTreeMap::new(),
        lines: vec![
            LineRequest {
                account_id: "acct-00001".into(),
                side: "D".into(),
                amount: "10.00".into(),
                currency: "USD".into(),
            },
            LineRequest {
                account_id: "acct-00002".into(),
                side: "C".into(),
                amount: "10.00".into(),
                currency: "USD".into(),
            },
        ],
    }
}

fn json(value: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap()
}

fn avro(request: &PostingRequest) -> Vec<u8> {
    posting_codec()
        .encode(request, Framing::AvroSingleObject)
        .unwrap()
}

/// Zig-zag varint, as Avro writes longs.
fn avro_long(n: i64) -> Vec<u8> {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    let mut out = Vec::new();
    loop {
        if z < 0x80 {
            out.push(z as u8);
            return out;
        }
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
}

/// One hostile message of `kind` (an index into [`KINDS`]), deterministic in `seed`.
pub fn hostile(kind: usize, seed: u64) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let key = format!("hostile-{kind}-{seed}");
    match kind % KINDS.len() {
        0 => {
            let len = rng.gen_range(0..2048);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            // Not valid JSON by accident: never start with '{'.
            if bytes.first() == Some(&b'{') {
                bytes[0] = b'x';
            }
            bytes
        }
        1 => {
            let bytes = avro(&valid_request(&key));
            bytes[..rng.gen_range(0..bytes.len())].to_vec()
        }
        2 => {
            // An empty lines array is one 0 byte, followed by the three null fields of version
            // 2 (one 0 byte each). Replace the array with a block count of billions (then a few
            // bytes), which must not be allocated.
            let mut r = valid_request(&key);
            r.lines.clear();
            let mut bytes = avro(&r);
            assert_eq!(bytes[bytes.len() - 4..], [0, 0, 0, 0]);
            bytes.truncate(bytes.len() - 4);
            bytes.extend(avro_long(rng.gen_range(1i64 << 30..1i64 << 50)));
            bytes.extend((0..rng.gen_range(0..8)).map(|_| rng.gen::<u8>()));
            bytes
        }
        3 => {
            // A large array where a string is expected, still under the size limit.
            let n = rng.gen_range(1000..6000);
            json(&serde_json::json!({
                "idempotency_key": key, "entity_id": "demo", "effective_date": "2026-11-05",
                "metadata": {}, "lines": vec![0u8; n],
            }))
        }
        4 => {
            let depth = rng.gen_range(200..20_000);
            let mut text = format!(
                r#"{{"idempotency_key":"{key}","entity_id":"demo","effective_date":"2026-11-05","metadata":"#
            );
            text.push_str(&"{\"a\":".repeat(depth));
            text.push('1');
            text.push_str(&"}".repeat(depth + 1));
            text.into_bytes()
        }
        5 => {
            const AMOUNTS: [&str; 14] = [
                "NaN",
                "-NaN",
                "Infinity",
                "-Infinity",
                "inf",
                "1e3",
                "1E-2",
                "10.00e0",
                "0x0A",
                "1_000.00",
                "١٠.٠٠",
                "１０.００",
                "10.00.00",
                "99999999999999999999999.00",
            ];
            let mut r = valid_request(&key);
            let amount = AMOUNTS[rng.gen_range(0..AMOUNTS.len())];
            for line in &mut r.lines {
                line.amount = amount.into();
            }
            if rng.gen() {
                avro(&r)
            } else {
                serde_json::to_vec(&r).unwrap()
            }
        }
        6 => {
            // Look-alikes of valid identifiers: Cyrillic a, fullwidth digits, zero-width and
            // bidi characters, dotless i.
            const SPOOFS: [&str; 6] = [
                "\u{0430}cct-00001",
                "acct-０0001",
                "acct-00\u{200B}001",
                "acct-00001\u{202E}",
                "\u{0131}nv-1",
                "acct\u{2010}00001",
            ];
            let spoof = SPOOFS[rng.gen_range(0..SPOOFS.len())];
            let mut r = valid_request(&key);
            match rng.gen_range(0..3) {
                0 => r.lines[0].account_id = spoof.into(),
                1 => r.idempotency_key = format!("{key}{spoof}"),
                _ => r.entity_id = spoof.into(),
            }
            avro(&r)
        }
        7 => {
            let bad = [
                serde_json::json!({"idempotency_key": 7, "entity_id": "demo"}),
                serde_json::json!({"idempotency_key": key, "entity_id": "demo",
                    "effective_date": "2026-11-05", "metadata": {}, "lines": "D 10.00"}),
                serde_json::json!({"idempotency_key": key, "entity_id": "demo",
                    "effective_date": "2026-11-05", "metadata": {},
                    "lines": [{"account_id": "acct-00001", "side": "D", "amount": 10.0, "currency": "USD"}]}),
                serde_json::json!({"idempotency_key": key, "entity_id": null,
                    "effective_date": "2026-11-05", "metadata": {}, "lines": []}),
                serde_json::json!({"idempotency_key": key, "entity_id": "demo",
                    "effective_date": "2026-11-05", "metadata": {"k": {"nested": true}}, "lines": []}),
            ];
            json(&bad[rng.gen_range(0..bad.len())])
        }
        8 => {
            let mut bytes = vec![0u8];
            bytes.extend((0..rng.gen_range(4..300)).map(|_| rng.gen::<u8>()));
            bytes
        }
        9 => {
            let mut r = valid_request(&key);
            r.description = Some("x".repeat(rng.gen_range(66_000..100_000)));
            avro(&r)
        }
        10 => {
            // NUL and other control characters: PostgreSQL cannot even store NUL in text.
            const CONTROLS: [&str; 4] = ["\u{0}", "\u{1b}[31m", "\u{7f}", "\u{85}"];
            let c = CONTROLS[rng.gen_range(0..CONTROLS.len())];
            let mut r = valid_request(&key);
            if rng.gen() {
                r.description = Some(format!("rent{c}"));
            } else {
                r.metadata.insert("note".into(), format!("x{c}y"));
            }
            avro(&r)
        }
        _ => {
            let mut r = valid_request(&key);
            let line = r.lines[0].clone();
            r.lines = vec![line; rng.gen_range(65..400)];
            avro(&r)
        }
    }
}
