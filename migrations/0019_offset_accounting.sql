-- Every offset accounted for (issue 30). Each batch records the range of offsets it covers,
-- from the checkpoint it was committed at (`from_offset`) to the checkpoint it set
-- (`next_offset`), how many messages it consumed and what became of them, and, in
-- `batch_gaps`, the offsets inside its range that the broker did not serve after a fresh seek
-- (transaction markers, aborted transactions under read_committed, compaction), with the cause.
-- `ledgerline verify` (check `offsets_accounted`) proves from these rows that the batches of
-- each partition tile [first offset, checkpoint) with no hole and no overlap (recorded replays
-- aside) and that every offset of a range is a message with one fate or a recorded gap.
-- Batches committed before this migration have NULL here: verify checks them for overlap only.
ALTER TABLE batches
    ADD COLUMN from_offset bigint CHECK (from_offset >= 0),
    ADD COLUMN messages    integer CHECK (messages >= 0),
    ADD COLUMN held        integer CHECK (held >= 0),
    ADD COLUMN released    integer CHECK (released >= 0),
    ADD COLUMN stale       integer CHECK (stale >= 0),
    ADD CONSTRAINT batches_from_before_first CHECK (from_offset <= first_offset);

CREATE TABLE batch_gaps (
    batch_id     uuid NOT NULL REFERENCES batches (id),
    from_offset  bigint NOT NULL CHECK (from_offset >= 0),
    to_offset    bigint NOT NULL,
    cause        text NOT NULL,
    PRIMARY KEY (batch_id, from_offset),
    CHECK (to_offset > from_offset)
);
SELECT ledgerline_make_append_only('batch_gaps');
GRANT SELECT ON batch_gaps TO ledgerline_writer, ledgerline_reader;
GRANT INSERT ON batch_gaps TO ledgerline_writer;
