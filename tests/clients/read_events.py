"""A downstream system that is not ledgerline: reads JSON events with Python's confluent-kafka
and checks each against its JSON Schema (schemas/json/) with the jsonschema library.

    read_events.py BOOTSTRAP TOPIC SCHEMA_FILE EXPECTED

Reads the topic from its start until it has read EXPECTED events (at most 60 s), then for 3 s
more, so that an extra event is seen too. Every record must carry
the headers content-type (application/json), ledgerline.event-type (the schema's title) and
ledgerline.schema-version, and its value must be one JSON object the schema accepts. Prints one
JSON object: {"events": N, "event_ids": [...], "versions": [...]}; exits non-zero naming the
first record that fails.
"""
import json
import sys
import jsonschema

from topic_reader import records


def main():
    bootstrap, topic, schema_file, expected = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    with open(schema_file) as f:
        schema = json.load(f)
    validator = jsonschema.Draft202012Validator(schema)
    ids, versions = [], set()
    for msg in records(bootstrap, topic, expected):
        where = f"{msg.topic()}/{msg.partition()}/{msg.offset()}"
        headers = {k: v.decode() for k, v in (msg.headers() or [])}
        if headers.get("content-type") != "application/json":
            raise SystemExit(f"{where}: content-type {headers.get('content-type')!r}")
        if headers.get("ledgerline.event-type") != schema["title"]:
            raise SystemExit(f"{where}: event type {headers.get('ledgerline.event-type')!r}")
        versions.add(headers.get("ledgerline.schema-version"))
        event = json.loads(msg.value())
        errors = sorted(validator.iter_errors(event), key=str)
        if errors:
            raise SystemExit(f"{where}: {errors[0].message} in {event}")
        ids.append(event["event_id"])
    print(json.dumps({"events": len(ids), "event_ids": ids, "versions": sorted(versions)}))


if __name__ == "__main__":
    main()
