-- Anomaly detection: the upstream source of each rejection (for rejection-rate spikes per
-- source), and one row per detector and subject remembering whether its condition holds now,
-- so that each episode (cause) raises exactly one anomaly event.
ALTER TABLE rejections ADD COLUMN source text;
CREATE INDEX rejections_time ON rejections (rejected_at);

CREATE TABLE anomaly_causes (
    kind        text NOT NULL,
    subject     text NOT NULL,
    episode     integer NOT NULL CHECK (episode >= 1),
    active      boolean NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, subject)
);
