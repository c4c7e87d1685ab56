#!/usr/bin/env bash
# The main job end to end on the local stack: install and start the stack, build, migrate,
# set up an entity, accounts and an open period, publish a sample (with duplicates and invalid
# requests), run the poster until the topic is drained, then print the trial balance and the
# rejection summary, run the reporter to publish and show balance, anomaly and rejection
# events, and ask the query API what became of one posted and one rejected request.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source ops/lib.sh

ops/install-deps.sh
ops/stack.sh up
load_env

echo "== building ledgerline (release)"
cargo build --release --quiet
LL=target/release/ledgerline
# Each part logs in with the least privilege it needs (ops/stack.sh made the roles):
# the owner migrates and sets up, the writer posts and publishes, the reader reports.
AS_WRITER=(env LEDGERLINE_DATABASE_URL="$LEDGERLINE_WRITER_DATABASE_URL")
AS_READER=(env LEDGERLINE_DATABASE_URL="$LEDGERLINE_READER_DATABASE_URL")
HTTP_ADDR="${LEDGERLINE_HTTP_ADDR:-127.0.0.1:9464}"
RUN_ID="demo-$(date +%s)"
# Dates relative to the day the demo runs, so that the anomalies it prints are the interesting
# ones (fixed dates would make every request BACKDATED a month later). The open period spans
# last month to next month.
TODAY=$(date -u +%F)
MONTH_START=$(date -u +%Y-%m-01)
PERIOD_START=$(date -u -d "$MONTH_START -1 month" +%F)
PERIOD_END=$(date -u -d "$MONTH_START +2 month -1 day" +%F)
days_ago() { date -u -d "$TODAY -$1 day" +%F; }

echo "== migrate, entity, chart of accounts, accounting period"
$LL migrate
$LL entities create demo --name "Demo Ltd"
$LL accounts import ops/sample/chart.csv
$LL accounts synthetic --entity demo --count 1000
$LL periods open --entity demo --start "$PERIOD_START" --end "$PERIOD_END" --by demo >/dev/null || true
$LL periods list --entity demo

echo "== publishing: the sample file, then 20,000 synthetic requests (5% duplicates, 2% invalid, 5% starting a hold's life)"
sed -e "s/\"sample-/\"$RUN_ID-sample-/" -e "s/2026-11-02/$(days_ago 4)/" -e "s/2026-11-03/$(days_ago 3)/" \
    -e "s/2026-11-05/$(days_ago 1)/" -e "s/2026-11-06/$TODAY/" ops/sample/postings.jsonl >"$LEDGERLINE_STACK_DIR/sample.jsonl"
$LL produce --file "$LEDGERLINE_STACK_DIR/sample.jsonl"
$LL produce --count 20000 --accounts 1000 --lines 2-5 --duplicate-share 0.05 --invalid-share 0.02 \
    --hot-account-share 0.1 --hold-share 0.05 --seed 42 --key-prefix "$RUN_ID" --effective-date "$TODAY"

echo "== poster: consuming until the topic is drained (metrics on http://$HTTP_ADDR/metrics)"
"${AS_WRITER[@]}" $LL poster --http-addr "$HTTP_ADDR" --exit-when-idle-ms 3000 &
POSTER=$!
trap 'kill $POSTER 2>/dev/null || true' EXIT
sleep 3
echo "-- /ready:    $(curl -s "http://$HTTP_ADDR/ready" || echo unreachable)"
echo "-- /recovery: $(curl -s "http://$HTTP_ADDR/recovery" | head -c 600 || echo unreachable)"
echo "-- /metrics (excerpt):"
curl -s "http://$HTTP_ADDR/metrics" | grep -E '^ledgerline_(postings_total|consumer_lag_messages|checkpoint_offset)' || true
wait $POSTER
trap - EXIT

echo "== reporter: publishing balance, anomaly and rejection events until the outbox is drained"
"${AS_WRITER[@]}" $LL reporter --http-addr "${LEDGERLINE_REPORTER_HTTP_ADDR:-127.0.0.1:9465}" --exit-when-idle-ms 3000
echo "-- a few balance events (ledgerline tail balances):"
$LL tail balances --max 5
echo "-- a few anomaly events (ledgerline tail anomalies):"
$LL tail anomalies --max 5
echo "-- a few rejections (ledgerline tail rejections):"
$LL tail rejections --max 3

echo "== trial balance"
"${AS_READER[@]}" $LL report trial-balance
echo "== rejections by reason"
"${AS_READER[@]}" $LL report rejections
echo "== open holds (two-phase postings not yet posted or voided)"
"${AS_READER[@]}" $LL report holds --open --limit 5
echo "== sample accounts"
"${AS_READER[@]}" $LL accounts list --entity demo --limit 6
echo "== integrity (ledgerline verify, as the read-only role)"
"${AS_READER[@]}" $LL verify

echo "== the query API (ledgerline api): what became of one posted and one rejected request"
API_ADDR="${LEDGERLINE_API_HTTP_ADDR:-127.0.0.1:9466}"
$LL api --http-addr "$API_ADDR" &
API=$!
trap 'kill $API 2>/dev/null || true' EXIT
for _ in $(seq 1 60); do curl -sf "http://$API_ADDR/ready" >/dev/null && break; sleep 0.5; done
echo "-- GET /v1/requests/$RUN_ID-sample-1"
curl -s "http://$API_ADDR/v1/requests/$RUN_ID-sample-1"; echo
echo "-- GET /v1/requests/$RUN_ID-sample-4 (unbalanced on purpose)"
curl -s "http://$API_ADDR/v1/requests/$RUN_ID-sample-4"; echo
kill $API; wait $API 2>/dev/null || true
trap - EXIT
echo
echo "The query API's routes: docs/QUERY-API.md; its OpenAPI document: docs/openapi.json."
echo "Where to look while a poster runs: http://$HTTP_ADDR/metrics (Prometheus), /ready, /recovery (last committed batch per partition)."
