//! Every bound the program relies on, in one place (TigerBeetle style).
//!
//! Input limits are checked before or while decoding so that hostile input is refused with a
//! typed rejection that carries the value and the maximum. Operational limits (batch sizes,
//! retries) are defaults that configuration may lower but never raise past the `_MAX` values.

/// Largest message accepted from the postings topic, checked before any decoding.
pub const MESSAGE_BYTES_MAX: usize = 64 * 1024;
/// Lines in one journal entry.
pub const LINES_PER_ENTRY_MAX: usize = 64;
/// Bytes of all metadata keys and values of one posting request together.
pub const METADATA_BYTES_MAX: usize = 4 * 1024;
/// Metadata pairs in one posting request.
pub const METADATA_ENTRIES_MAX: usize = 32;
/// Idempotency keys, account ids, entity ids, source names.
pub const ID_CHARS_MAX: usize = 128;
/// Free-text description of an entry.
pub const DESCRIPTION_CHARS_MAX: usize = 512;
/// Characters of an amount as written on the wire ("1250.00").
pub const AMOUNT_CHARS_MAX: usize = 40;
/// Digits before the decimal point of one amount: amounts are below 10^18.
pub const AMOUNT_INTEGER_DIGITS_MAX: u32 = 18;
/// Digits of one amount, before and after the point together: an asset with a large scale
/// allows fewer integer digits (`amount::integer_digits_max`), so that 64 lines still sum inside
/// rust_decimal's 28 digits.
pub const AMOUNT_DIGITS_MAX: u32 = 26;
/// Bytes the Avro decoder may allocate for one value (guards huge array/string lengths).
pub const AVRO_ALLOCATION_BYTES_MAX: usize = 4 * MESSAGE_BYTES_MAX;
/// Bytes of a rejected message carried in its event on the rejections topic: a message the
/// broker accepted may be far larger than a producer may send (librdkafka's default is 1 MB).
/// PostgreSQL keeps every byte, in `rejections.raw`; the event says when it carries a prefix.
pub const REJECTION_EVENT_RAW_BYTES_MAX: usize = 256 * 1024;

/// Postings in one poster batch (upper bound for configuration).
pub const BATCH_POSTINGS_MAX: usize = 10_000;
/// Postings in one poster batch unless configured (the benchmark uses the same).
pub const BATCH_POSTINGS_DEFAULT: usize = 1000;
/// Bytes of message payloads in one poster batch (upper bound for configuration).
pub const BATCH_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Partition batches one poster commits side by side (upper bound for configuration).
pub const COMMIT_LANES_MAX: usize = 4;
/// Longest a batch may wait to fill, in milliseconds (upper bound for configuration).
pub const BATCH_WAIT_MS_MAX: u64 = 10_000;
/// Longest a batch waits to fill while no commit runs, unless configured (the benchmark uses
/// the same). 50 ms measured a lower produce-to-commit latency at half load than 100
/// (docs/BENCHMARKS-HISTORY.md point 33). Since issue 32 it is the ceiling of an adaptive wait
/// (`poster::queues::adaptive_wait`): a batch with messages waits at most as long as the last
/// commit took.
pub const BATCH_WAIT_MS_DEFAULT: u64 = 50;
/// The longest wait between two attempts at the same batch. Attempts are not counted: an error
/// that is not the messages' own fault is retried until it passes (issue 30), and the
/// partition reads not ready once that lasts the stall bound.
pub const COMMIT_RETRY_DELAY_MAX_SECONDS: u64 = 5;
/// A poster with lag that fetched nothing for this long reports itself not ready; so does a
/// poster that owns no partitions while the group waits and no checkpoint moves (unless
/// configured, between the bounds below).
pub const STALL_SECONDS: u64 = 60;
pub const STALL_SECONDS_MIN: u64 = 5;
pub const STALL_SECONDS_MAX: u64 = 3600;
/// A partition halted by a consume error is read again from its checkpoint after this long.
pub const HALT_RETRY_SECONDS: u64 = 30;
/// How often every partition's group lag is measured.
pub const LAG_INTERVAL_SECONDS: u64 = 5;
/// Failed rounds in a row after which the broker check and the lag monitor replace their Kafka
/// client (`kafka::Renewal`): 5 checks (every 2 s) or 5 lag rounds (every 5 s).
pub const KAFKA_CLIENT_RENEW_AFTER_FAILURES: u32 = 5;
/// Kafka consumer session timeout (`LEDGERLINE_RDKAFKA_SESSION_TIMEOUT_MS` overrides it): how
/// long a member that stopped heartbeating keeps its partitions. Nothing is drained when
/// partitions are revoked: a batch still committing for a partition that moved is refused by
/// its checkpoint (fencing), and the new owner starts from the checkpoint.
pub const KAFKA_SESSION_TIMEOUT_MS: u64 = 30_000;

/// How long the exactly-once reporter's transaction may stay open, and its messages wait
/// (`kafka::transactional_producer`): a commit that cannot finish in this time fails, and the
/// reporter says it is stalled. At most the broker's `transaction.max.timeout.ms` (15 min by
/// default).
pub const KAFKA_TRANSACTION_TIMEOUT_MS: u64 = 60_000;
/// Outbox rows per exactly-once round at most: the round's progress record names each by its
/// event id (37 bytes), and must stay well under the broker's 1 MB message limit.
pub const TRANSACTION_ROWS_MAX: i64 = 10_000;

// How the bounds relate. A failing assertion here is a build error, not a runtime surprise.
const _: () = assert!(MESSAGE_BYTES_MAX <= BATCH_BYTES_MAX);
// A stall is judged over at least one lag measurement.
const _: () = assert!(LAG_INTERVAL_SECONDS <= STALL_SECONDS_MIN);
const _: () = assert!(STALL_SECONDS_MIN <= STALL_SECONDS && STALL_SECONDS <= STALL_SECONDS_MAX);
const _: () = assert!(METADATA_BYTES_MAX < MESSAGE_BYTES_MAX);
// 64 lines of amounts below 10^18 sum below 10^20, far inside rust_decimal's 96-bit mantissa.
const _: () = assert!(LINES_PER_ENTRY_MAX <= 100 && AMOUNT_INTEGER_DIGITS_MAX <= 26);
// The largest scale still leaves integer digits.
const _: () = assert!(crate::domain::currency::SCALE_MAX < AMOUNT_DIGITS_MAX);
