"""The read loop the test clients share: a fresh consumer group reads a topic from its start
until it has EXPECTED records (at most `limit` seconds), then `settle` seconds more, so that an
extra record is seen too. A consume error ends the client with a non-zero exit.
"""
import time
import uuid

from confluent_kafka import Consumer


def records(bootstrap, topic, expected, limit=60, settle=3, settings=None):
    """Yields the topic's records, in order per partition. `settings`: more consumer
    properties, e.g. {"isolation.level": "read_uncommitted"}."""
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": f"test-client-{uuid.uuid4().hex}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
    config.update(settings or {})
    consumer = Consumer(config)
    consumer.subscribe([topic])
    seen, started, enough_at = 0, time.monotonic(), None
    try:
        while time.monotonic() - started < limit and (enough_at is None or time.monotonic() - enough_at < settle):
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                raise SystemExit(f"consume error: {msg.error()}")
            yield msg
            seen += 1
            if seen >= expected and enough_at is None:
                enough_at = time.monotonic()
    finally:
        consumer.close()
