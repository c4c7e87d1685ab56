//! Read-your-writes by Kafka position: every answer lists the positions the ledger had applied
//! when it was read (`applied`), and a request may name offsets (`min_offsets`) that must be
//! applied before it is answered, waiting a bounded time for them.

use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::Deserialize;
use utoipa::IntoParams;

use super::errors::{ApiError, ErrorCode, Params};
use super::ApiState;
use crate::store::history::{self, Position};

/// How long a request may wait for `min_offsets` when it does not say.
const DEFAULT_WAIT_MS: u64 = 5_000;
/// The longest wait a request may ask for.
pub const MAX_WAIT_MS: u64 = 30_000;

/// Parameters every read accepts.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Consistency {
    /// Offsets of the postings topic that must be applied before the answer, as
    /// `partition:offset` pairs separated by commas (e.g. the offsets a producer's delivery
    /// reports gave it): `0:1041,3:77`.
    #[param(pattern = r"^[0-9]{1,9}:[0-9]{1,18}(,[0-9]{1,9}:[0-9]{1,18})*$")]
    pub min_offsets: Option<String>,
    /// How long to wait for `min_offsets`, in milliseconds (default 5000, at most 30000; never
    /// longer than the API's request time limit allows).
    #[param(maximum = 30000)]
    pub wait_ms: Option<u64>,
}

/// The positions applied when the request was answered (after any wait it asked for).
pub struct Applied(pub Vec<Position>);

impl FromRequestParts<ApiState> for Applied {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &ApiState) -> Result<Self, ApiError> {
        let Params(c) = Params::<Consistency>::from_request_parts(parts, s).await?;
        let wanted = match &c.min_offsets {
            Some(text) => parse_offsets(text)?,
            None => Vec::new(),
        };
        let wait_ms = c.wait_ms.unwrap_or(DEFAULT_WAIT_MS);
        if wait_ms > MAX_WAIT_MS {
            return Err(ApiError::bad_request(format!(
                "wait_ms is at most {MAX_WAIT_MS}"
            )));
        }
        // The wait ends before the request's own time limit, so that it is answered as a wait.
        let room = s.limits.request.saturating_sub(Duration::from_millis(500));
        let wait = Duration::from_millis(wait_ms).min(room);
        wait_for(s, &wanted, wait).await
    }
}

/// `partition:offset,...` into pairs.
pub fn parse_offsets(text: &str) -> Result<Vec<(i32, i64)>, ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "min_offsets must be partition:offset pairs separated by commas, not {text:?}"
        ))
    };
    // Digits only (no signs or spaces), few enough to fit: what the documented pattern allows.
    let digits =
        |s: &str, max: usize| (1..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    text.split(',')
        .map(|pair| match pair.split_once(':') {
            Some((p, o)) if digits(p, 9) && digits(o, 18) => {
                Ok((p.parse().map_err(|_| bad())?, o.parse().map_err(|_| bad())?))
            }
            _ => Err(bad()),
        })
        .collect()
}

/// The offsets of `wanted` not yet applied in `positions` of `topic`.
pub fn missing(topic: &str, positions: &[Position], wanted: &[(i32, i64)]) -> Vec<(i32, i64)> {
    wanted
        .iter()
        .copied()
        .filter(|&(p, o)| {
            !positions
                .iter()
                .any(|x| x.topic == topic && x.partition == p && x.next_offset > o)
        })
        .collect()
}

/// Reads the applied positions until every wanted offset is among them or `wait` is over.
async fn wait_for(
    s: &ApiState,
    wanted: &[(i32, i64)],
    wait: Duration,
) -> Result<Applied, ApiError> {
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_millis(10);
    loop {
        let positions = history::positions(&s.pool, &s.group).await?;
        let missing = missing(&s.topic, &positions, wanted);
        if missing.is_empty() {
            return Ok(Applied(positions));
        }
        let now = Instant::now();
        if now >= deadline {
            let list: Vec<String> = missing.iter().map(|(p, o)| format!("{p}:{o}")).collect();
            return Err(ApiError::new(
                ErrorCode::MinOffsetsTimeout,
                format!(
                    "the ledger has not applied {} of {} within {} ms (positions now: {})",
                    list.join(","),
                    s.topic,
                    wait.as_millis(),
                    describe(&positions)
                ),
            ));
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

fn describe(positions: &[Position]) -> String {
    let parts: Vec<String> = positions
        .iter()
        .map(|p| format!("{}/{}:{}", p.topic, p.partition, p.next_offset))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(partition: i32, next_offset: i64) -> Position {
        Position {
            topic: "postings".into(),
            partition,
            next_offset,
        }
    }

    #[test]
    fn offsets_parse_and_refuse_clearly() {
        assert_eq!(parse_offsets("0:5,3:77").unwrap(), vec![(0, 5), (3, 77)]);
        for bad in [
            "",
            "0",
            "0:",
            ":1",
            "a:1",
            "0:1,",
            "-1:2",
            "0:-2",
            "+1:2",
            " 0:1",
            "1234567890:1",
        ] {
            let e = parse_offsets(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::BadRequest, "{bad:?}");
        }
    }

    #[test]
    fn an_offset_is_applied_once_the_position_is_past_it() {
        let positions = [at(0, 10), at(1, 3)];
        assert!(missing("postings", &positions, &[(0, 9), (1, 2)]).is_empty());
        assert_eq!(missing("postings", &positions, &[(0, 10)]), vec![(0, 10)]);
        assert_eq!(missing("postings", &positions, &[(2, 0)]), vec![(2, 0)]);
        assert_eq!(missing("other", &positions, &[(0, 1)]), vec![(0, 1)]);
    }
}
