//! The poster keeps account attributes between batches (`store/account_cache.rs`). A change to
//! any account must reach the very next batch: here a deactivated account is refused at once,
//! and posts again once reactivated, with the same cache throughout.

use crate::common;

use common::Ledger;
use ledgerline::generator::{generate, GeneratorSettings};
use ledgerline::store::account_cache::AccountCache;
use ledgerline::store::accounts;

const BATCH: usize = 10;

#[tokio::test]
async fn a_change_to_an_account_reaches_the_next_batch() {
    // Two accounts: every posting debits one and credits the other.
    let ledger = Ledger::new(2, 1).await;
    let messages = generate(&GeneratorSettings {
        count: 4 * BATCH,
        accounts: 2,
        seed: 11,
        key_prefix: common::unique("cache"),
        ..Default::default()
    });
    let batch = common::parsed_batch(&messages);
    let cache = AccountCache::default();
    let commit = |k: usize| ledger.commit_chunk(&ledger.pool, &cache, &batch, (k, BATCH));

    let first = commit(0).await;
    assert_eq!(first.posted, BATCH, "both accounts active: all posted");
    let kept = commit(1).await;
    assert_eq!(kept.posted, BATCH, "the kept attributes still post");

    accounts::set_active(&ledger.pool, "acct-00001", false)
        .await
        .unwrap();
    let refused = commit(2).await;
    assert_eq!(
        refused.posted, 0,
        "the deactivated account is refused at once"
    );
    assert_eq!(refused.rejections, vec!["ACCOUNT_INACTIVE"; BATCH]);

    accounts::set_active(&ledger.pool, "acct-00001", true)
        .await
        .unwrap();
    let again = commit(3).await;
    assert_eq!(again.posted, BATCH, "reactivated: posts again");
}
