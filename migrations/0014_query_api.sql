-- The query API (issue 22) looks a request up by its idempotency key: the first outcome is in
-- idempotency_records, and later requests under the same key with other contents are
-- rejections (IDEMPOTENCY_CONFLICT) carrying the key, found through this index.
CREATE INDEX rejections_key ON rejections (idempotency_key) WHERE idempotency_key IS NOT NULL;
