"""A downstream consumer that is not ledgerline, at a chosen isolation level: reads a topic of
JSON events with Python's confluent-kafka.

    read_isolated.py BOOTSTRAP TOPIC ISOLATION EXPECTED

ISOLATION is read_committed or read_uncommitted. Reads the topic from its start until it has
read EXPECTED records (at most 120 s), then for 5 s more, so that extra records are seen too.
Prints one JSON object: {"received": N, "events": [every record's value, in the order
received per partition]}; exits non-zero on a consume error or a value that is not JSON.
"""
import json
import sys

from topic_reader import records


def main():
    bootstrap, topic, isolation, expected = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    events = []
    for msg in records(bootstrap, topic, expected, limit=120, settle=5,
                       settings={"isolation.level": isolation}):
        try:
            events.append(json.loads(msg.value()))
        except ValueError as e:
            raise SystemExit(f"{msg.topic()}/{msg.partition()}/{msg.offset()}: not JSON: {e}")
    print(json.dumps({"received": len(events), "events": events}))


if __name__ == "__main__":
    main()
