"""A downstream system that is not ledgerline: reads balance events with Python's
confluent-kafka in a consumer group of its own and decodes them with fastavro.

    read_balances.py BOOTSTRAP TOPIC GROUP IDLE_SECONDS

Balance events are Avro single-object encoded (C3 01, an 8-byte schema fingerprint, the datum;
schemas/balance_event.avsc). Reads until nothing arrives for IDLE_SECONDS, then prints, as one
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

SCHEMA = pathlib.Path(__file__).resolve().parents[2] / "schemas" / "balance_event.avsc"


def main():
    bootstrap, topic, group, idle = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    schema = fastavro.parse_schema(json.loads(SCHEMA.read_text()))
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
        value = msg.value()
        if value[:2] != b"\xc3\x01":
            raise SystemExit(f"not Avro single-object encoded: {value[:10]!r}")
        event = fastavro.schemaless_reader(io.BytesIO(value[10:]), schema)
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
