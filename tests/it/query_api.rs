//! `ledgerline api` (first slice of issue 22) against a ledger built by the real poster: the
//! outcome of a posted, a rejected, a held and an unseen request, an account with a hold, the
//! applied positions in every response, and the served OpenAPI document equal to the committed
//! one.

use std::time::Duration;

use crate::common;

use common::{free_port, http_get, transfer, Ledger, LIMITED};
use ledgerline::codec::{posting_codec, Framing};

async fn get_json(port: u16, path: &str) -> (u16, serde_json::Value) {
    let (status, body) = http_get(port, path).await.expect("the API answers");
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    (status, json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_what_became_of_each_request() {
    let ledger = Ledger::new(4, 1).await;
    let codec = posting_codec();
    let mut unbalanced = transfer("api-bad", None, Some("5.00"), "D");
    unbalanced.lines[0].amount = "5.01".into();
    let requests = [
        transfer("api-posted", None, Some("100.00"), "D"),
        unbalanced,
        transfer("api-held", Some("PENDING"), Some("30.00"), "C"),
    ];
    let stream: Vec<(String, Vec<u8>)> = requests
        .iter()
        .map(|r| {
            let bytes = codec.encode(r, Framing::AvroSingleObject).unwrap();
            (r.idempotency_key.clone(), bytes)
        })
        .collect();
    ledger.produce_raw(&stream).await;
    ledger.run_poster_until_idle().await;

    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let _api = common::spawn_ledgerline(
        &format!("api-{}", ledger.topic),
        &[
            "api",
            "--http-addr",
            &addr,
            "--group",
            &ledger.group,
            "--topic",
            &ledger.topic,
        ],
        &[(
            "LEDGERLINE_DATABASE_URL",
            &common::reader_url(&ledger.db_url),
        )],
    );
    common::cluster::eventually("the API listens", Duration::from_secs(30), async || {
        http_get(port, "/v1/openapi.json").await.is_some()
    })
    .await;

    let (status, posted) = get_json(port, "/v1/requests/api-posted").await;
    assert_eq!(status, 200, "{posted}");
    assert_eq!(posted["request"]["outcome"], "posted");
    assert_eq!(posted["request"]["source_offset"], 0);
    assert_eq!(posted["applied"][0]["next_offset"], 3, "{posted}");
    let (_, rejected) = get_json(port, "/v1/requests/api-bad").await;
    assert_eq!(rejected["request"]["outcome"], "rejected");
    assert_eq!(rejected["request"]["reason_code"], "UNBALANCED");
    let (_, held) = get_json(port, "/v1/requests/api-held").await;
    assert_eq!(held["request"]["outcome"], "held");
    assert!(held["request"]["hold_id"].is_string(), "{held}");
    let (status, unseen) = get_json(port, "/v1/requests/nobody-sent-this").await;
    assert_eq!((status, unseen["code"].as_str()), (404, Some("NOT_SEEN")));

    let (_, account) = get_json(port, &format!("/v1/accounts/{LIMITED}")).await;
    assert_eq!(account["holdings"]["balance"], "100.00", "{account}");
    assert_eq!(account["holdings"]["pending_credits"], "30.00");
    assert_eq!(account["holdings"]["available"], "70.00");
    let (status, missing) = get_json(port, "/v1/accounts/no-such-account").await;
    assert_eq!((status, missing["code"].as_str()), (404, Some("NOT_FOUND")));

    let (_, served) = get_json(port, "/v1/openapi.json").await;
    let committed: serde_json::Value =
        serde_json::from_str(include_str!("../../docs/openapi.json")).unwrap();
    assert_eq!(
        served, committed,
        "docs/openapi.json is the generated document (ledgerline api --openapi)"
    );
}
