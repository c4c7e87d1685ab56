"""An upstream system that is not ledgerline: publishes posting requests with Python's
confluent-kafka (its own bundled librdkafka) and fastavro.

    publish.py BOOTSTRAP TOPIC CODEC FORMAT [SCHEMA] < requests.jsonl

Each input line is a posting request as JSON. FORMAT is `json` (the request's JSON as the
value), `confluent` (Confluent framing: magic byte 0, 4-byte schema id 1, then the Avro datum
written by fastavro) or `single-object` (Avro single-object encoding: C3 01, the schema's
CRC-64-AVRO fingerprint, then the datum). SCHEMA is the writer's schema file (default
schemas/posting_request.avsc; e.g. an earlier version from schemas/history/). CODEC is the
producer's compression.type (none, gzip, snappy, lz4, zstd). The key is the request's `kafka_key`
when it has one (taken out of the request), else its idempotency key. Prints one line per
delivered message: partition and offset. Exits non-zero if any delivery fails.
"""
import io
import json
import pathlib
import struct
import sys

import fastavro
import fastavro.schema
from confluent_kafka import Producer

SCHEMA = pathlib.Path(__file__).resolve().parents[2] / "schemas" / "posting_request.avsc"


def encoder(fmt, schema_path):
    if fmt == "json":
        return lambda request: json.dumps(request).encode()
    schema = fastavro.parse_schema(json.loads(pathlib.Path(schema_path).read_text()))
    if fmt == "single-object":
        canonical = fastavro.schema.to_parsing_canonical_form(schema)
        # fastavro gives the fingerprint's bytes in little-endian order, as the encoding wants.
        header = b"\xc3\x01" + bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"))

        def single_object(request):
            out = io.BytesIO()
            out.write(header)
            fastavro.schemaless_writer(out, schema, request)
            return out.getvalue()

        return single_object
    if fmt == "confluent":
        def confluent(request):
            out = io.BytesIO()
            out.write(b"\x00" + struct.pack(">I", 1))
            fastavro.schemaless_writer(out, schema, request)
            return out.getvalue()

        return confluent
    raise SystemExit(f"unknown format {fmt}")


def main():
    bootstrap, topic, codec, fmt = sys.argv[1:5]
    encode = encoder(fmt, sys.argv[5] if len(sys.argv) > 5 else SCHEMA)
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "compression.type": codec,
        "enable.idempotence": True,
        "acks": "all",
        # Batches of many messages, so that the codec compresses whole batches.
        "linger.ms": 50,
    })
    failures = []

    def delivered(err, msg):
        if err is not None:
            failures.append(str(err))
        else:
            print(f"{msg.partition()} {msg.offset()}")

    for line in sys.stdin:
        request = json.loads(line)
        key = request.pop("kafka_key", None) or request["idempotency_key"]
        producer.produce(topic, key=key, value=encode(request),
                         on_delivery=delivered)
        producer.poll(0)
    left = producer.flush(60)
    if failures or left:
        print(f"delivery failed: {failures[:3]} ({left} unsent)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
