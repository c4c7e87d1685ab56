//! `ledgerline api` against ledgers built by the real poster: the outcome of posted, duplicate,
//! conflicting, rejected and held requests; typed errors; the bearer token; history walks that
//! miss and repeat nothing while postings arrive; filters and as-of figures equal to the CLI's;
//! read-your-writes by delivery offset; the served OpenAPI document equal to the committed
//! one; and JSON the schema refuses answered under its key.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::common;

use common::{free_port, http_get, http_get_auth, transfer, Ledger, PosterProcess, LIMITED};
use ledgerline::codec::{posting_codec, Framing};
use ledgerline::generator::{generate, GeneratorSettings};

async fn get_json(port: u16, path: &str) -> (u16, serde_json::Value) {
    let (status, body) = http_get(port, path).await.expect("the API answers");
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    (status, json)
}

/// Starts `ledgerline api` as the reader role on the ledger's database and waits for it.
async fn spawn_api(ledger: &Ledger, port: u16, env: &[(&str, &str)]) -> PosterProcess {
    common::spawn_api(ledger, port, &[], env).await
}

fn encoded(requests: &[ledgerline::domain::posting::PostingRequest]) -> Vec<(String, Vec<u8>)> {
    let codec = posting_codec();
    requests
        .iter()
        .map(|r| {
            let bytes = codec.encode(r, Framing::AvroSingleObject).unwrap();
            (r.idempotency_key.clone(), bytes)
        })
        .collect()
}

/// Publishes `stream`, runs a poster until it is idle, and starts the API: its port and process.
async fn post_and_serve(ledger: &Ledger, stream: &[(String, Vec<u8>)]) -> (u16, PosterProcess) {
    ledger.produce_raw(stream).await;
    ledger.run_poster_until_idle().await;
    let port = free_port();
    let api = spawn_api(ledger, port, &[]).await;
    (port, api)
}

/// `/v1/rejections` and its reason codes.
async fn rejection_codes(port: u16) -> (serde_json::Value, Vec<String>) {
    let (_, all) = get_json(port, "/v1/rejections").await;
    let codes = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason_code"].as_str().unwrap().to_string())
        .collect();
    (all, codes)
}

/// A GET with one extra header line; the whole response, headers included.
async fn raw_get(port: u16, path: &str, header: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n{header}\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).await.unwrap();
    response
}

/// The error code of a typed error body, with its status.
async fn error_of(port: u16, path: &str) -> (u16, String) {
    let (status, body) = get_json(port, path).await;
    let code = body["code"]
        .as_str()
        .unwrap_or_else(|| panic!("{path}: {body}"));
    assert!(body["message"].is_string(), "{path}: {body}");
    // RFC 9457 problem details, with the code in the type.
    assert_eq!(body["status"], status, "{path}: {body}");
    assert_eq!(body["detail"], body["message"], "{path}: {body}");
    assert_eq!(
        body["type"],
        format!("urn:ledgerline:problem:{code}"),
        "{path}: {body}"
    );
    (status, code.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_what_became_of_each_request() {
    let ledger = Ledger::new(4, 1).await;
    let mut unbalanced = transfer("api-bad", None, Some("5.00"), "D");
    unbalanced.lines[0].amount = "5.01".into();
    let posted = transfer("api-posted", None, Some("100.00"), "D");
    let mut conflicting = posted.clone();
    conflicting.lines[0].amount = "101.00".into();
    conflicting.lines[1].amount = "101.00".into();
    let requests = [
        posted.clone(),
        posted,
        conflicting,
        unbalanced,
        transfer("api-held", Some("PENDING"), Some("30.00"), "C"),
    ];
    let stream = encoded(&requests);
    let (port, _api) = post_and_serve(&ledger, &stream).await;

    let (status, posted) = get_json(port, "/v1/requests/api-posted").await;
    assert_eq!(status, 200, "{posted}");
    assert_eq!(posted["request"]["outcome"], "posted");
    assert_eq!(
        posted["request"]["source_offset"], 0,
        "the first of the duplicates"
    );
    assert_eq!(posted["applied"][0]["next_offset"], 5, "{posted}");
    let conflicts = posted["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 1, "{posted}");
    assert_eq!(conflicts[0]["reason_code"], "IDEMPOTENCY_CONFLICT");
    assert_eq!(conflicts[0]["source_offset"], 2);

    let entry_id = posted["request"]["entry_id"].as_str().unwrap();
    let (status, entry) = get_json(port, &format!("/v1/entries/{entry_id}")).await;
    assert_eq!(status, 200, "{entry}");
    assert_eq!(entry["entry"]["idempotency_key"], "api-posted");
    assert_eq!(entry["entry"]["lines"].as_array().unwrap().len(), 2);
    assert_eq!(entry["entry"]["lines"][0]["amount"], "100.00");

    let (_, rejected) = get_json(port, "/v1/requests/api-bad?include_raw=true").await;
    assert_eq!(rejected["request"]["outcome"], "rejected");
    assert_eq!(rejected["request"]["reason_code"], "UNBALANCED");
    assert_eq!(rejected["request"]["source_offset"], 3);
    assert_eq!(rejected["request"]["raw_hex"], hex::encode(&stream[3].1));
    let (_, without_raw) = get_json(port, "/v1/requests/api-bad").await;
    assert!(without_raw["request"]["raw_hex"].is_null());
    let (_, held) = get_json(port, "/v1/requests/api-held").await;
    assert_eq!(held["request"]["outcome"], "held");
    assert!(held["request"]["hold_id"].is_string(), "{held}");

    let (all, codes) = rejection_codes(port).await;
    assert_eq!(codes.len(), 2, "{all}");
    assert!(
        codes.iter().any(|c| c == "UNBALANCED")
            && codes.iter().any(|c| c == "IDEMPOTENCY_CONFLICT")
    );
    let (_, unbalanced) = get_json(port, "/v1/rejections?reason=UNBALANCED&include_raw=true").await;
    assert_eq!(unbalanced["items"].as_array().unwrap().len(), 1);
    assert_eq!(unbalanced["items"][0]["raw_hex"], hex::encode(&stream[3].1));

    let (_, account) = get_json(port, &format!("/v1/accounts/{LIMITED}")).await;
    assert_eq!(account["account"]["balance"], "100.00", "{account}");
    assert_eq!(account["account"]["pending_credits"], "30.00");
    assert_eq!(account["account"]["available"], "70.00");
    let (_, listed) = get_json(port, "/v1/accounts?entity=demo&limit=2").await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 2, "{listed}");
    assert!(listed["next_cursor"].is_string());

    for (path, status, code) in [
        ("/v1/requests/nobody-sent-this", 404, "NOT_SEEN"),
        ("/v1/accounts/no-such-account", 404, "NOT_FOUND"),
        ("/v1/entries/not-a-uuid", 400, "BAD_REQUEST"),
        (
            "/v1/entries/00000000-0000-4000-8000-000000000000",
            404,
            "NOT_FOUND",
        ),
        ("/v1/no-such-route", 404, "NOT_FOUND"),
        ("/v1/entries?limit=0", 400, "BAD_REQUEST"),
        ("/v1/entries?limit=1001", 400, "BAD_REQUEST"),
        ("/v1/entries?valid_from=yesterday", 400, "BAD_REQUEST"),
        ("/v1/entries?cursor=zz", 400, "BAD_CURSOR"),
        ("/v1/entries?entiti=demo", 400, "BAD_REQUEST"),
        (
            "/v1/requests/api-posted?min_offsets=zero",
            400,
            "BAD_REQUEST",
        ),
        ("/v1/requests/api-posted?wait_ms=30001", 400, "BAD_REQUEST"),
        ("/v1/reports/balance-sheet", 400, "BAD_REQUEST"),
        ("/v1/requests/nul%00byte", 400, "BAD_REQUEST"),
    ] {
        assert_eq!(
            error_of(port, path).await,
            (status, code.to_string()),
            "{path}"
        );
    }
    // A cursor of one list is refused by another.
    let cursor = listed["next_cursor"].as_str().unwrap();
    let (status, code) = error_of(port, &format!("/v1/entries?cursor={cursor}")).await;
    assert_eq!((status, code.as_str()), (400, "BAD_CURSOR"));

    // A request id: the caller's is echoed and names the request's log line.
    let response = raw_get(port, "/v1/requests/traced", "x-request-id: trace-77-abc").await;
    assert!(
        response.contains("x-request-id: trace-77-abc"),
        "{response}"
    );
    // Errors are application/problem+json (this one is a 404 NOT_SEEN).
    assert!(
        response
            .to_lowercase()
            .contains("content-type: application/problem+json"),
        "{response}"
    );
    let log = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("poster-logs")
        .join(format!("api-{}-{port}.log", ledger.topic));
    common::cluster::eventually(
        "the request is logged",
        Duration::from_secs(10),
        async || {
            std::fs::read_to_string(&log).is_ok_and(|l| {
                l.lines()
                    .any(|l| l.contains("trace-77-abc") && l.contains("/v1/requests/{key}"))
            })
        },
    )
    .await;

    let (status, integrity) = get_json(port, "/v1/integrity").await;
    assert_eq!((status, &integrity["ok"]), (200, &serde_json::json!(true)));
    let requests_counted = common::metric(
        port,
        "ledgerline_api_requests_total",
        "route=\"/v1/requests/{key}\",status=\"200\"",
    )
    .await;
    assert!(requests_counted >= Some(4.0), "{requests_counted:?}");
    let build = common::metric(port, "ledgerline_build_info", "service=\"api\"").await;
    assert_eq!(build, Some(1.0), "the API says which build answers");

    let (_, served) = get_json(port, "/v1/openapi.json").await;
    let committed: serde_json::Value =
        serde_json::from_str(include_str!("../../docs/openapi.json")).unwrap();
    assert_eq!(
        served, committed,
        "docs/openapi.json is the generated document (ledgerline api --openapi)"
    );
}

/// JSON the schema refuses is answered under its key (MALFORMED; the same bytes again a
/// duplicate, a correction under the key a conflict), and a JSON void may leave out `lines`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_invalid_json_is_answered_under_its_key() {
    let ledger = Ledger::new(2, 1).await;
    let typo = br#"{"idempotency_key":"json-typo","entity":"demo","effective_date":"2026-11-05","lines":[]}"#;
    let corrected = serde_json::to_vec(&transfer("json-typo", None, Some("5.00"), "D")).unwrap();
    let hold =
        serde_json::to_vec(&transfer("json-hold", Some("PENDING"), Some("7.00"), "C")).unwrap();
    let void = br#"{"idempotency_key":"json-void","entity_id":"demo","effective_date":"2026-11-05","kind":"VOID_PENDING","pending_id":"json-hold"}"#;
    let stream: Vec<(String, Vec<u8>)> = [&typo[..], typo, &corrected, &hold, void]
        .into_iter()
        .map(|b| ("k".to_string(), b.to_vec()))
        .collect();
    let (port, _api) = post_and_serve(&ledger, &stream).await;

    let (status, typo) = get_json(port, "/v1/requests/json-typo").await;
    assert_eq!(status, 200, "{typo}");
    assert_eq!(typo["request"]["outcome"], "rejected", "{typo}");
    assert_eq!(typo["request"]["reason_code"], "MALFORMED", "{typo}");
    assert_eq!(typo["request"]["source_offset"], 0, "{typo}");
    let conflicts = typo["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 1, "only the correction conflicts: {typo}");
    assert_eq!(conflicts[0]["source_offset"], 2, "{typo}");
    let (_, hold) = get_json(port, "/v1/requests/json-hold").await;
    assert_eq!(hold["request"]["outcome"], "held", "{hold}");
    let (_, void) = get_json(port, "/v1/requests/json-void").await;
    assert_eq!(void["request"]["outcome"], "released", "{void}");
    let (all, mut codes) = rejection_codes(port).await;
    codes.sort();
    assert_eq!(
        codes,
        ["IDEMPOTENCY_CONFLICT", "MALFORMED"],
        "the duplicate is no rejection: {all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_token_guards_the_api_and_leaves_health_metrics_and_spec_open() {
    let ledger = Ledger::new(4, 1).await;
    let port = free_port();
    let _api = spawn_api(&ledger, port, &[("LEDGERLINE_HTTP_TOKEN", "api-tok-77")]).await;
    for path in ["/health", "/ready", "/metrics", "/v1/openapi.json"] {
        assert_eq!(
            http_get(port, path).await.unwrap().0,
            200,
            "{path} stays open"
        );
    }
    for path in [
        "/v1/accounts",
        "/v1/entries",
        "/v1/integrity",
        "/v1/requests/k",
    ] {
        assert_eq!(
            error_of(port, path).await,
            (401, "UNAUTHORIZED".into()),
            "{path}"
        );
        let wrong = http_get_auth(port, path, Some("api-tok-78")).await.unwrap();
        assert_eq!(wrong.0, 401, "{path} with a wrong token");
        let right = http_get_auth(port, path, Some("api-tok-77")).await.unwrap();
        assert_ne!(right.0, 401, "{path} with the token: {}", right.1);
    }
}

/// Walks a list to its end, `limit` items per page, pausing between pages; returns the items
/// and the walk's positions.
async fn walk(port: u16, path: &str, limit: usize) -> (Vec<serde_json::Value>, serde_json::Value) {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    let sep = if path.contains('?') { '&' } else { '?' };
    loop {
        let page_path = match &cursor {
            Some(c) => format!("{path}{sep}limit={limit}&cursor={c}"),
            None => format!("{path}{sep}limit={limit}"),
        };
        let (status, page) = get_json(port, &page_path).await;
        assert_eq!(status, 200, "{page_path}: {page}");
        let got = page["items"].as_array().unwrap();
        assert!(got.len() <= limit);
        items.extend(got.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return (items, page["walk"].clone()),
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

/// The walk's positions as (partition, next offset) pairs for SQL.
fn walk_bound(walk: &serde_json::Value) -> (Vec<i32>, Vec<i64>) {
    let positions = walk.as_array().unwrap();
    let partitions = positions
        .iter()
        .map(|p| p["partition"].as_i64().unwrap() as i32);
    let offsets = positions.iter().map(|p| p["next_offset"].as_i64().unwrap());
    (partitions.collect(), offsets.collect())
}

fn messages(count: usize, date: &str, prefix: &str) -> Vec<ledgerline::generator::Message> {
    generate(&GeneratorSettings {
        count,
        accounts: 6,
        effective_date: date.into(),
        key_prefix: common::unique(prefix),
        ..Default::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_walks_miss_and_repeat_nothing_while_postings_arrive() {
    let ledger = Ledger::new(6, 3).await;
    ledger
        .produce(&messages(1_500, "2026-11-05", "walk-a"))
        .await;
    let poster = ledger.poster(free_port(), &[]);
    ledger.wait_progress(0, Duration::from_secs(60)).await;
    let port = free_port();
    let _api = spawn_api(&ledger, port, &[]).await;

    // More postings arrive, on other dates, while the walks run.
    let later = messages(3_000, "2026-11-20", "walk-b");
    let producer = {
        let topic = ledger.topic.clone();
        tokio::spawn(async move {
            for chunk in later.chunks(150) {
                common::Publisher::new(&topic).produce(chunk).await;
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        })
    };
    let account = "acct-00001";
    let path = format!("/v1/accounts/{account}/entries");
    let (lines, line_walk) = walk(port, &path, 37).await;
    let (entries, entry_walk) = walk(port, "/v1/entries", 97).await;
    producer.await.unwrap();

    let keys: Vec<(String, i64)> = lines
        .iter()
        .map(|l| {
            (
                l["entry_id"].as_str().unwrap().to_string(),
                l["line_no"].as_i64().unwrap(),
            )
        })
        .collect();
    let unique_keys: BTreeSet<_> = keys.iter().cloned().collect();
    assert_eq!(unique_keys.len(), keys.len(), "no line repeated");
    let (parts, offsets) = walk_bound(&line_walk);
    let expected: Vec<(String, i64)> = sqlx::query_as(
        "SELECT l.entry_id::text, l.line_no::bigint FROM journal_lines l
         JOIN journal_entries e ON e.id = l.entry_id
         JOIN unnest($2::int[], $3::bigint[]) AS b(p, n) ON e.source_partition = b.p AND e.source_offset < b.n
         WHERE l.account_id = $1
         ORDER BY l.effective_date, l.recorded_at, l.entry_id, l.line_no",
    )
    .bind(account)
    .bind(&parts)
    .bind(&offsets)
    .fetch_all(&ledger.pool)
    .await
    .unwrap();
    assert_eq!(
        keys, expected,
        "every line of the walk, once, in valid-time order"
    );

    let ids: Vec<&str> = entries.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        ids.len(),
        "no entry repeated"
    );
    let (parts, offsets) = walk_bound(&entry_walk);
    let expected: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM journal_entries e
         JOIN unnest($1::int[], $2::bigint[]) AS b(p, n) ON e.source_partition = b.p AND e.source_offset < b.n",
    )
    .bind(&parts)
    .bind(&offsets)
    .fetch_one(&ledger.pool)
    .await
    .unwrap();
    assert_eq!(ids.len() as i64, expected, "every entry of the walk");

    ledger.wait_drained(Duration::from_secs(180)).await;
    drop(poster);
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM journal_entries")
        .fetch_one(&ledger.pool)
        .await
        .unwrap();
    assert!(
        total > ids.len() as i64,
        "postings arrived during the walk ({total} entries now, {} walked)",
        ids.len()
    );
    filters_and_as_of_agree_with_the_cli(&ledger, port, account).await;
}

fn cli_json(ledger: &Ledger, args: &[&str]) -> serde_json::Value {
    common::ledgerline_json(&common::reader_url(&ledger.db_url), args)
}

async fn filters_and_as_of_agree_with_the_cli(ledger: &Ledger, port: u16, account: &str) {
    // The whole history now, against the CLI's statement (same order, same lines).
    let (lines, _) = walk(port, &format!("/v1/accounts/{account}/entries"), 1000).await;
    let statement = cli_json(
        ledger,
        &["report", "statement", account, "--format", "json"],
    );
    let statement = statement.as_array().unwrap();
    assert_eq!(lines.len(), statement.len());
    for (l, s) in lines.iter().zip(statement) {
        assert_eq!(
            (&l["entry_id"], &l["amount"]),
            (&s["entry_id"], &s["amount"])
        );
    }
    // Valid-time filter: only the first chunk's date.
    let early = format!("/v1/accounts/{account}/entries?valid_to=2026-11-10");
    let (early, _) = walk(port, &early, 1000).await;
    assert!(!early.is_empty() && early.len() < lines.len());
    assert!(early.iter().all(|l| l["effective_date"] == "2026-11-05"));
    let early_count = statement
        .iter()
        .filter(|s| s["effective_date"] == "2026-11-05")
        .count();
    assert_eq!(early.len(), early_count);
    // Transaction-time filter: nothing recorded after the last line's time.
    let last = lines.last().unwrap()["recorded_at"].as_str().unwrap();
    let cut =
        chrono::DateTime::parse_from_rfc3339(last).unwrap() - chrono::Duration::microseconds(1);
    let cut = cut.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let (before, _) = walk(port, &format!("/v1/entries?recorded_to={cut}"), 1000).await;
    assert!(before
        .iter()
        .all(|e| e["recorded_at"].as_str().unwrap() <= cut.as_str()));
    // As-of balances and the trial balance, as the CLI gives them.
    for date in ["2026-11-05", "2026-11-19", "2026-11-20"] {
        let (_, api) = get_json(port, &format!("/v1/accounts/{account}?as_of_date={date}")).await;
        let cli = cli_json(
            ledger,
            &[
                "report",
                "balance",
                account,
                "--as-of-date",
                date,
                "--format",
                "json",
            ],
        );
        let cli = if cli.is_array() { cli[0].clone() } else { cli };
        assert_eq!(
            api["balance_as_of"], cli["balance"],
            "as of {date}: {api} / {cli}"
        );
    }
    let (_, trial) = get_json(port, "/v1/reports/trial-balance?as_of_date=2026-11-10").await;
    let cli = cli_json(
        ledger,
        &[
            "report",
            "trial-balance",
            "--as-of-date",
            "2026-11-10",
            "--format",
            "json",
        ],
    );
    assert_eq!(trial["rows"], cli);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_reads_its_own_posting_by_its_delivery_offset() {
    let ledger = Ledger::new(4, 2).await;
    let mut poster = ledger.poster(free_port(), &[]);
    let port = free_port();
    let _api = spawn_api(&ledger, port, &[]).await;

    let first = encoded(&[transfer("ryw-1", None, Some("12.34"), "D")]);
    let (p, o) = ledger.produce_raw(&first).await[0];
    let path = format!("/v1/requests/ryw-1?min_offsets={p}:{o}&wait_ms=30000");
    let (status, answer) = get_json(port, &path).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["request"]["outcome"], "posted");
    let applied = answer["applied"].as_array().unwrap();
    assert!(applied
        .iter()
        .any(|a| a["partition"] == p && a["next_offset"].as_i64().unwrap() > o));

    // With the poster stopped, the same question about a new request times out with its code.
    common::signal(&poster, "TERM");
    poster.wait().unwrap();
    let second = encoded(&[transfer("ryw-2", None, Some("1.00"), "D")]);
    let (p, o) = ledger.produce_raw(&second).await[0];
    let started = Instant::now();
    let path = format!("/v1/accounts/{LIMITED}?min_offsets={p}:{o}&wait_ms=1500");
    let (status, body) = get_json(port, &path).await;
    let waited = started.elapsed();
    assert_eq!(
        (status, body["code"].as_str()),
        (412, Some("MIN_OFFSETS_TIMEOUT")),
        "{body}"
    );
    assert!(
        waited >= Duration::from_millis(1400),
        "it waited: {waited:?}"
    );

    // Once a poster runs again, a waiting request is answered as soon as it applies them.
    let _poster = ledger.poster(free_port(), &[]);
    let path = format!("/v1/requests/ryw-2?min_offsets={p}:{o}&wait_ms=30000");
    let (status, answer) = get_json(port, &path).await;
    assert_eq!(
        (status, &answer["request"]["outcome"]),
        (200, &serde_json::json!("posted")),
        "{answer}"
    );
}
