-- Outbox payloads are written once and read back whole by the reporter; nothing queries inside
-- them on the hot path. `json` stores the text as given (validated), where `jsonb` parses it into
-- a binary tree on every insert: on a 2-line posting that was a fifth of the batch's database
-- time (docs/BENCHMARKS.md). Operators can still use ->> on json.
ALTER TABLE outbox ALTER COLUMN payload TYPE json USING payload::json;
