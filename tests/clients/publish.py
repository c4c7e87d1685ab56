"""An upstream system that is not ledgerline: publishes posting requests with Python's
confluent-kafka (its own bundled librdkafka) and fastavro.

    publish.py BOOTSTRAP TOPIC CODEC FORMAT [SCHEMA] < requests.jsonl

Each input line is a posting request as JSON. FORMAT is `json` (the request's JSON as the
value), `confluent` (Confluent framing: magic byte 0, 4-byte schema id 1, then the Avro datum
written by fastavro) or `single-object` (Avro single-object encoding: C3 01, the schema's
CRC-64-AVRO fingerprint, then the datum) or `registry:DIR` (confluent-kafka's own
AvroSerializer with a Schema Registry client: every published version of the request schema,
schemas/history/posting_request/, is registered in order under the subject TOPIC-value, the
serializer frames each message with the id the registry gave the writer's schema, and
DIR/<id>.avsc is written for each version, the export the poster reads with
--confluent-schemas. No Schema Registry server runs here, so the client is confluent-kafka's
in-process one, `mock://`). SCHEMA is the writer's schema file (default
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


def registry_serializer(topic, export_dir, schema_path):
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    registry = SchemaRegistryClient.new_client({"url": "mock://ledgerline"})
    history = sorted((SCHEMA.parent / "history" / "posting_request").glob("*.avsc"),
                     key=lambda p: int(p.stem))
    export = pathlib.Path(export_dir)
    export.mkdir(parents=True, exist_ok=True)
    writer = pathlib.Path(schema_path).read_text()
    writer_id = None
    for version in history:
        text = version.read_text()
        schema_id = registry.register_schema(f"{topic}-value", Schema(text, "AVRO"))
        (export / f"{schema_id}.avsc").write_text(text)
        if text == writer:
            writer_id = schema_id
    if writer_id is None:
        raise SystemExit(f"{schema_path} is not a published version of the request schema")
    # The id the registry gave the writer's schema (the serializer's own lookup compares
    # schema strings after parsing them, which a registered file's text does not match).
    serializer = AvroSerializer(registry, writer,
                                conf={"auto.register.schemas": False, "use.schema.id": writer_id})
    context = SerializationContext(topic, MessageField.VALUE)
    return lambda request: serializer(request, context)


def encoder(fmt, schema_path, topic):
    if fmt.startswith("registry:"):
        return registry_serializer(topic, fmt.split(":", 1)[1], schema_path)
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
    encode = encoder(fmt, sys.argv[5] if len(sys.argv) > 5 else SCHEMA, topic)
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
