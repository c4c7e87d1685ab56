//! Pure ledger rules: identifiers, amounts, currencies, posting validation, rejection reasons.
//! No IO here: no tokio, sqlx or rdkafka; time is passed in.

pub mod account;
pub mod amount;
pub mod anomaly;
pub mod batch;
pub mod chain;
pub mod currency;
pub mod hold;
pub mod ids;
pub mod kind;
pub mod offsets;
pub mod posting;
pub mod rejection;
pub mod retention;

pub use currency::{Currency, CurrencyTable};
pub use ids::{AccountId, EntityId, IdempotencyKey};
pub use posting::{LineRequest, Posting, PostingRequest, Side};
pub use rejection::Rejection;
