//! Anomaly detectors as queries over recent ledger activity, and the episode bookkeeping that
//! turns their findings into at most one anomaly event per cause.

use std::collections::{HashMap, HashSet};

use rust_decimal::Decimal;
use sqlx::PgPool;

use crate::codec::outbox::OutboxKind;
use crate::codec::AnomalyEvent;
use crate::domain::anomaly::{next_episode, AnomalyKind, CauseState, DetectorSettings, Finding};
use crate::domain::ids::anomaly_event_id;
use crate::store::StoreError;

fn finding(
    subject: String,
    entity: Option<String>,
    account: Option<String>,
    entry: Option<String>,
    detail: String,
) -> Finding {
    Finding {
        subject,
        entity_id: entity,
        account_id: account,
        entry_id: entry,
        detail,
    }
}

/// Lines of recent entries far above their account's average line (excluding the line itself).
pub async fn large_amounts(
    pool: &PgPool,
    s: &DetectorSettings,
) -> Result<Vec<Finding>, StoreError> {
    let rows: Vec<(String, String, String, Decimal, Decimal, i64)> = sqlx::query_as(
        "WITH recent AS (
             SELECT l.entry_id, l.account_id, l.amount, e.entity_id
             FROM journal_entries e JOIN journal_lines l ON l.entry_id = e.id
             WHERE e.recorded_at > now() - make_interval(secs => $1)
             ORDER BY e.recorded_at DESC LIMIT 5000),
         stats AS (
             SELECT account_id, sum(amount) AS total, count(*) AS n FROM journal_lines
             WHERE account_id IN (SELECT account_id FROM recent) GROUP BY account_id)
         SELECT r.entry_id::text, r.account_id, r.entity_id, r.amount,
                round((s.total - r.amount) / (s.n - 1), 4) AS avg_other, s.n - 1 AS history
         FROM recent r JOIN stats s USING (account_id)
         WHERE s.n - 1 >= $2 AND r.amount > $3 * (s.total - r.amount) / (s.n - 1)",
    )
    .bind(s.window_seconds as f64)
    .bind(s.large_amount_history_min)
    .bind(s.large_amount_factor)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(entry, account, entity, amount, avg, n)| {
            let detail = format!("line of {amount} on {account} is over {} x its average of {avg} over {n} other lines", s.large_amount_factor);
            finding(format!("{entry}/{account}"), Some(entity), Some(account), Some(entry), detail)
        })
        .collect())
}

/// Accounts allowed to go negative whose balance (normal-side direction) is below zero.
pub async fn negative_balances(pool: &PgPool) -> Result<Vec<Finding>, StoreError> {
    let rows: Vec<(String, String, Decimal)> = sqlx::query_as(
        "SELECT a.id, a.entity_id, b.balance FROM accounts a JOIN account_balances b ON b.account_id = a.id
         WHERE a.allow_negative AND b.balance < 0",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(account, entity, balance)| {
            let detail =
                format!("balance of {account} is {balance}, below zero on its normal side");
            finding(account.clone(), Some(entity), Some(account), None, detail)
        })
        .collect())
}

/// Accounts with more lines in the last minute than the limit.
pub async fn velocity_spikes(
    pool: &PgPool,
    s: &DetectorSettings,
) -> Result<Vec<Finding>, StoreError> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT l.account_id, e.entity_id, count(*) FROM journal_entries e JOIN journal_lines l ON l.entry_id = e.id
         WHERE e.recorded_at > now() - interval '60 seconds'
         GROUP BY 1, 2 HAVING count(*) > $1",
    )
    .bind(s.velocity_lines_per_minute_max)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(account, entity, n)| {
            let detail = format!(
                "{n} postings on {account} in the last minute, the limit is {}",
                s.velocity_lines_per_minute_max
            );
            finding(account.clone(), Some(entity), Some(account), None, detail)
        })
        .collect())
}

/// Recent entries dated further back than allowed.
pub async fn backdated(pool: &PgPool, s: &DetectorSettings) -> Result<Vec<Finding>, StoreError> {
    let rows: Vec<(String, String, chrono::NaiveDate, i32)> = sqlx::query_as(
        "SELECT id::text, entity_id, effective_date, ((recorded_at AT TIME ZONE 'UTC')::date - effective_date) AS days
         FROM journal_entries
         WHERE recorded_at > now() - make_interval(secs => $1)
           AND effective_date < (recorded_at AT TIME ZONE 'UTC')::date - $2::int",
    )
    .bind(s.window_seconds as f64)
    .bind(s.backdated_days_max as i32)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(entry, entity, date, days)| {
            let detail = format!(
                "entry effective {date} was recorded {days} days later, the limit is {}",
                s.backdated_days_max
            );
            finding(entry.clone(), Some(entity), None, Some(entry), detail)
        })
        .collect())
}

/// Sources whose share of rejected messages over the window is above the limit.
pub async fn rejection_spikes(
    pool: &PgPool,
    s: &DetectorSettings,
) -> Result<Vec<Finding>, StoreError> {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "WITH rejected AS (
             SELECT coalesce(source, '(unknown)') AS source, count(*) AS n FROM rejections
             WHERE rejected_at > now() - make_interval(secs => $1) GROUP BY 1),
         posted AS (
             SELECT coalesce(source, '(unknown)') AS source, count(*) AS n FROM journal_entries
             WHERE recorded_at > now() - make_interval(secs => $1) GROUP BY 1)
         SELECT r.source, r.n, coalesce(p.n, 0) FROM rejected r LEFT JOIN posted p USING (source)
         WHERE r.n + coalesce(p.n, 0) >= $2 AND r.n::float8 / (r.n + coalesce(p.n, 0)) > $3",
    )
    .bind(s.window_seconds as f64)
    .bind(s.rejection_rate_messages_min)
    .bind(s.rejection_rate_max)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(source, rejected, posted)| {
            let detail = format!(
                "source {source}: {rejected} of {} messages rejected in the last {} s, the limit is {:.0}%",
                rejected + posted,
                s.window_seconds,
                s.rejection_rate_max * 100.0
            );
            finding(source, None, None, None, detail)
        })
        .collect())
}

/// Accounts whose stored balance differs from the sum of their lines.
pub async fn balance_drift(pool: &PgPool) -> Result<Vec<Finding>, StoreError> {
    Ok(crate::store::reports::balance_drift(pool)
        .await?
        .into_iter()
        .map(|(account, stored, from_lines)| {
            let detail =
                format!("stored balance of {account} is {stored}, its lines sum to {from_lines}");
            finding(account.clone(), None, Some(account), None, detail)
        })
        .collect())
}

/// Applies the episode rule to a detector's findings: raises one anomaly event (in the outbox)
/// per subject whose condition newly holds; forgets subjects whose condition stopped.
/// Returns the number of events raised.
pub async fn record(
    pool: &PgPool,
    kind: AnomalyKind,
    findings: &[Finding],
) -> Result<usize, StoreError> {
    let mut tx = pool.begin().await?;
    // One detector run at a time per kind, whichever reporter runs it.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('ledgerline.anomaly.' || $1))")
        .bind(kind.code())
        .execute(&mut *tx)
        .await?;
    let states: HashMap<String, CauseState> = sqlx::query_as::<_, (String, i32, bool)>(
        "SELECT subject, episode, active FROM anomaly_causes WHERE kind = $1",
    )
    .bind(kind.code())
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|(subject, episode, active)| (subject, CauseState { episode, active }))
    .collect();
    let mut raised = 0;
    for f in findings {
        let Some(episode) = next_episode(states.get(&f.subject).copied(), true) else {
            continue;
        };
        sqlx::query(
            "INSERT INTO anomaly_causes (kind, subject, episode, active) VALUES ($1, $2, $3, true)
             ON CONFLICT (kind, subject) DO UPDATE SET episode = EXCLUDED.episode, active = true, changed_at = now()",
        )
        .bind(kind.code())
        .bind(&f.subject)
        .bind(episode)
        .execute(&mut *tx)
        .await?;
        let id = anomaly_event_id(kind.code(), &format!("{}#{episode}", f.subject));
        let about = [
            f.entity_id.clone(),
            f.account_id.clone(),
            f.entry_id.clone(),
        ];
        let now = chrono::Utc::now().to_rfc3339();
        let event = AnomalyEvent::of(id, kind, about, f.detail.clone(), now);
        crate::store::outbox::insert_one_in_tx(
            &mut tx,
            id,
            OutboxKind::Anomaly,
            &f.subject,
            &event,
        )
        .await?;
        raised += 1;
    }
    let holding: HashSet<&str> = findings.iter().map(|f| f.subject.as_str()).collect();
    let ended: Vec<&String> = states
        .iter()
        .filter(|(s, st)| st.active && !holding.contains(s.as_str()))
        .map(|(s, _)| s)
        .collect();
    if !ended.is_empty() {
        sqlx::query("UPDATE anomaly_causes SET active = false, changed_at = now() WHERE kind = $1 AND subject = ANY($2)")
            .bind(kind.code())
            .bind(&ended)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(raised)
}

/// Subjects whose condition currently holds for a detector (e.g. accounts drifting now).
pub async fn active_causes(pool: &PgPool, kind: AnomalyKind) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM anomaly_causes WHERE kind = $1 AND active")
            .bind(kind.code())
            .fetch_one(pool)
            .await?,
    )
}
