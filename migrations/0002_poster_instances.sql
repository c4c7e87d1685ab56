-- Running posters announce themselves here every few seconds, so that operator commands
-- (replay) can refuse to move positions under a live consumer, whatever the broker supports.
CREATE TABLE poster_instances (
    instance_id     uuid PRIMARY KEY,
    consumer_group  text NOT NULL,
    topic           text NOT NULL,
    host            text NOT NULL,
    pid             integer NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz NOT NULL DEFAULT now(),
    stopped_at      timestamptz
);
CREATE INDEX poster_instances_group ON poster_instances (consumer_group, last_seen_at DESC);
