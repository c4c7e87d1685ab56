"""A downstream system that is not ledgerline: reads Confluent-framed Avro events with
confluent-kafka's own AvroDeserializer, which finds each record's writer schema by the id in its
framing through a Schema Registry client.

    read_registry_events.py BOOTSTRAP TOPIC SCHEMA_FILE EXPECTED

Registers SCHEMA_FILE (e.g. schemas/balance_event.avsc) under the subject TOPIC-value first (no
Schema Registry server runs here, so the client is confluent-kafka's in-process `mock://` one),
then reads the topic from its start until it has EXPECTED events (at most 60 s), then 3 s more.
Prints one JSON object: {"schema_id": the id the registry gave, "content_types": [...],
"events": [each event as a JSON object, bytes as hex]}; exits non-zero on any record the
deserializer refuses.
"""
import json
import pathlib
import sys

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from topic_reader import records


def main():
    bootstrap, topic, schema_file, expected = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    registry = SchemaRegistryClient.new_client({"url": "mock://ledgerline"})
    schema_id = registry.register_schema(f"{topic}-value", Schema(pathlib.Path(schema_file).read_text(), "AVRO"))
    deserializer = AvroDeserializer(registry)
    context = SerializationContext(topic, MessageField.VALUE)
    events, content_types = [], set()
    for msg in records(bootstrap, topic, expected):
        headers = {k: v.decode() for k, v in (msg.headers() or [])}
        content_types.add(headers.get("content-type"))
        event = deserializer(msg.value(), context)
        events.append({k: (v.hex() if isinstance(v, bytes) else v) for k, v in event.items()})
    print(json.dumps({"schema_id": schema_id, "content_types": sorted(content_types), "events": events}))


if __name__ == "__main__":
    main()
