"""A downstream consumer of ledgerline's balance events, written with Python's confluent-kafka
and fastavro: it keeps the last balance of every account, in either event format.

    balances.py BOOTSTRAP TOPIC GROUP IDLE_SECONDS

- Format: by the record's content-type header (application/json or avro/binary); records
  without headers (written before headers existed) by their first bytes. Avro events are
  single-object encoded (C3 01, the writer schema's CRC-64-AVRO fingerprint, the body), read
  with the published schema version of that fingerprint (schemas/history/balance_event/).
- Duplicates and order (docs/CONSUMERS.md): an account's events arrive in version order and may
  repeat, so an event is kept only when its version is above the one already kept.

Reads in a consumer group of its own until nothing arrives for IDLE_SECONDS, then prints, as one
JSON object, the last event per account: {"account": [balance_after, version], ...}, and the
number of events read under "_events".
"""
import io
import json
import pathlib
import sys
import time

import fastavro
from confluent_kafka import Consumer

HISTORY = pathlib.Path(__file__).resolve().parents[2] / "schemas" / "history" / "balance_event"


def writer_schemas():
    """Every published balance event schema, by its fingerprint as single-object events carry it."""
    schemas = {}
    for path in sorted(HISTORY.glob("*.avsc")):
        schema = fastavro.parse_schema(json.loads(path.read_text()))
        canonical = fastavro.schema.to_parsing_canonical_form(schema)
        fingerprint = bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"))
        # The header holds the 64-bit fingerprint little-endian; fastavro's hex digest may be
        # in either order, and both are kept (two schemas' fingerprints do not collide).
        schemas[fingerprint] = schema
        schemas[fingerprint[::-1]] = schema
    return schemas


def decode(value, headers, schemas):
    content_type = headers.get("content-type")
    if content_type == "application/json" or (content_type is None and value[:1] == b"{"):
        return json.loads(value)
    if value[:2] != b"\xc3\x01":
        raise SystemExit(f"neither JSON nor Avro single-object: {value[:10]!r}")
    schema = schemas.get(value[2:10])
    if schema is None:
        raise SystemExit(f"unknown schema fingerprint {value[2:10].hex()}")
    return fastavro.schemaless_reader(io.BytesIO(value[10:]), schema)


def main():
    bootstrap, topic, group, idle = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    schemas = writer_schemas()
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": True,
    })
    consumer.subscribe([topic])
    latest, events, last = {}, 0, time.monotonic()
    while time.monotonic() - last < idle:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            raise SystemExit(f"consume error: {msg.error()}")
        headers = {k: v.decode() for k, v in (msg.headers() or [])}
        event = decode(msg.value(), headers, schemas)
        events += 1
        last = time.monotonic()
        account = event["account_id"]
        if account not in latest or event["version"] > latest[account][1]:
            latest[account] = [event["balance_after"], event["version"]]
    consumer.close()
    latest["_events"] = events
    print(json.dumps(latest))


if __name__ == "__main__":
    main()
