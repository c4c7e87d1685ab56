//! Assets beyond three-letter ISO codes: codes of up to 32 characters and scales from 0 to 18,
//! from the assets table every poster reads. Postings in each post; a scale beyond the asset's
//! and an unknown asset are rejected with their codes; a replay from offset 0 changes nothing;
//! an asset's scale cannot change once lines use it; and every list command prints JSON and CSV.

use crate::common;

use common::Ledger;
use ledgerline::codec::{posting_codec, Framing};
use ledgerline::domain::account::AccountSpec;
use ledgerline::domain::{LineRequest, PostingRequest};
use ledgerline::store::assets::AssetRow;

/// The assets of the test: a scale-0 retirement-account unit, vacation hours, a stablecoin, a
/// coin with 8 decimals, and an ISO currency the ledger's old built-in table did not know.
const ASSETS: &[(&str, i16, &str)] = &[
    ("IRAUSD", 0, "7"),
    ("VACHR", 2, "7.25"),
    ("USDC", 6, "1.000001"),
    ("BTC", 8, "0.00000001"),
    ("KES", 2, "150.50"),
];

fn request(key: &str, asset: &str, amount: &str) -> PostingRequest {
    let line = |account: &str, side: &str| LineRequest {
        account_id: account.into(),
        side: side.into(),
        amount: amount.into(),
        currency: asset.into(),
    };
    PostingRequest {
        idempotency_key: key.into(),
        entity_id: "demo".into(),
        effective_date: "2026-11-05".into(),
        description: Some(format!("{amount} {asset}")),
        source: None,
        reverses: None,
        kind: None,
        pending_id: None,
        expires_at: None,
        metadata: Default::default(),
        lines: vec![
            line(&format!("{asset}-held"), "D"),
            line(&format!("{asset}-equity"), "C"),
        ],
    }
}

/// Adds the assets (KES is already there: the migration seeds ISO 4217) and two accounts in each.
async fn assets_and_accounts(ledger: &Ledger) {
    for (code, scale, _) in ASSETS {
        let row = AssetRow {
            code: code.to_string(),
            scale: *scale,
            description: String::new(),
        };
        let added = ledgerline::store::assets::add(&ledger.pool, &row)
            .await
            .unwrap();
        assert_eq!(added, *code != "KES", "{code}");
    }
    let table = ledgerline::store::assets::table(&ledger.pool)
        .await
        .unwrap();
    let accounts: Vec<_> = ASSETS
        .iter()
        .flat_map(|(code, _, _)| [(*code, "held", "asset"), (*code, "equity", "equity")])
        .map(|(code, role, account_type)| AccountSpec {
            id: format!("{code}-{role}"),
            entity_id: "demo".into(),
            name: format!("{code} {role}"),
            account_type: account_type.into(),
            currency: code.into(),
            normal_side: None,
            allow_negative: None,
            overdraft_limit: None,
        })
        .map(|s| s.check(&table).unwrap())
        .collect();
    ledgerline::store::accounts::import(&ledger.pool, &accounts)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postings_in_assets_of_any_code_and_scale_post_and_a_replay_changes_nothing() {
    let ledger = Ledger::new(2, 1).await;
    assets_and_accounts(&ledger).await;
    let codec = posting_codec();
    let mut stream: Vec<(String, Vec<u8>)> = Vec::new();
    let mut publish = |r: PostingRequest| {
        let bytes = codec.encode(&r, Framing::AvroSingleObject).unwrap();
        stream.push((r.idempotency_key.clone(), bytes));
    };
    for (code, scale, amount) in ASSETS {
        publish(request(&format!("ok-{code}"), code, amount));
        // One decimal more than the asset's scale.
        let finer = format!(
            "{}{}1",
            if *scale == 0 { "1." } else { "1.0" },
            "0".repeat((*scale).max(1) as usize - 1)
        );
        publish(request(&format!("fine-{code}"), code, &finer));
    }
    publish(request("unknown-asset", "NOSUCHASSET", "1"));
    ledger.produce_raw(&stream).await;
    ledger.run_poster_until_idle().await;

    let rejected: Vec<(String, String)> = sqlx::query_as(
        "SELECT idempotency_key, reason_code FROM rejections ORDER BY source_offset",
    )
    .fetch_all(&ledger.pool)
    .await
    .unwrap();
    let mut expected: Vec<(String, String)> = ASSETS
        .iter()
        .map(|(code, _, _)| (format!("fine-{code}"), "SCALE_EXCEEDS_CURRENCY".to_string()))
        .collect();
    expected.push(("unknown-asset".into(), "UNKNOWN_CURRENCY".into()));
    assert_eq!(rejected, expected);
    for (code, _, amount) in ASSETS {
        let balance: String =
            sqlx::query_scalar("SELECT balance::text FROM account_balances WHERE account_id = $1")
                .bind(format!("{code}-held"))
                .fetch_one(&ledger.pool)
                .await
                .unwrap();
        assert_eq!(
            balance.parse::<rust_decimal::Decimal>().unwrap(),
            amount.parse::<rust_decimal::Decimal>().unwrap(),
            "{code}"
        );
    }
    ledger.assert_verified_and_replay_changes_nothing().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assets_scale_is_fixed_once_a_line_uses_it() {
    let ledger = Ledger::new(2, 1).await;
    // The fixture's accounts hold USD; no line uses it yet.
    let set_scale = |code: &'static str, scale: i16| {
        let pool = ledger.pool.clone();
        async move {
            sqlx::query("UPDATE assets SET scale = $2 WHERE code = $1")
                .bind(code)
                .bind(scale)
                .execute(&pool)
                .await
        }
    };
    set_scale("USD", 3).await.expect("no line uses USD yet");
    set_scale("USD", 2).await.unwrap();
    let messages = ledgerline::generator::generate(&ledgerline::generator::GeneratorSettings {
        count: 5,
        accounts: 2,
        key_prefix: common::unique("s"),
        duplicate_share: 0.0,
        invalid_share: 0.0,
        ..Default::default()
    });
    ledger.produce(&messages).await;
    ledger.run_poster_until_idle().await;
    let refused = set_scale("USD", 3).await.unwrap_err().to_string();
    assert!(refused.contains("cannot change"), "{refused}");
    // Adding it again with another scale is a conflict, with the same scale a no-op.
    let again = |scale| AssetRow {
        code: "USD".into(),
        scale,
        description: String::new(),
    };
    assert!(ledgerline::store::assets::add(&ledger.pool, &again(4))
        .await
        .is_err());
    assert!(!ledgerline::store::assets::add(&ledger.pool, &again(2))
        .await
        .unwrap());
}

/// Every command that lists speaks `--format table|json|csv`: the same rows in each; and a
/// flag can come from its variable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_list_command_prints_json_and_csv() {
    let ledger = Ledger::new(3, 1).await;
    for (args, rows) in [
        (&["entities", "list"][..], 1),
        (&["accounts", "list", "--entity", "demo"][..], 3),
        (&["periods", "list"][..], 1),
        (&["assets", "list"][..], 3),
    ] {
        let run = |format: &str| {
            let mut all = args.to_vec();
            all.extend(["--format", format]);
            String::from_utf8(common::run_ledgerline(&ledger.db_url, &all, &[])).unwrap()
        };
        let json: serde_json::Value = serde_json::from_str(&run("json")).unwrap();
        let json_rows = json.as_array().unwrap().len();
        let csv_rows = run("csv").lines().count() - 1;
        let table_rows = run("table").lines().count() - 1;
        assert!(json_rows >= rows, "{args:?}: {json}");
        assert_eq!((csv_rows, table_rows), (json_rows, json_rows), "{args:?}");
    }
    // A flag's variable (cli/tree.rs) sets it; the command line wins over the variable.
    let listed = |args: &[&str]| {
        let mut all = vec!["accounts", "list", "--entity", "demo", "--format", "csv"];
        all.extend_from_slice(args);
        let env = [("LEDGERLINE_ACCOUNTS_LIST_LIMIT", "1")];
        let out = common::run_ledgerline(&ledger.db_url, &all, &env);
        String::from_utf8(out).unwrap().lines().count() - 1
    };
    assert_eq!(listed(&[]), 1, "from the variable");
    assert_eq!(listed(&["--limit", "2"]), 2, "from the command line");
}
