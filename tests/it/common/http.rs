//! HTTP to a ledgerline process: GET, metrics, readiness.

use std::time::{Duration, Instant};

/// One metric sample from a ledgerline process's /metrics, by name and label fragment.
pub async fn metric(port: u16, name: &str, labels: &str) -> Option<f64> {
    let (_, body) = http_get(port, "/metrics").await?;
    body.lines()
        .find(|l| l.starts_with(name) && l.contains(labels))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The sum of every sample of a metric whatever its labels; None when it has none.
pub async fn metric_sum(port: u16, name: &str) -> Option<f64> {
    let (_, body) = http_get(port, "/metrics").await?;
    let values: Vec<f64> = body
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// GET http://127.0.0.1:port/path, returning (status, body); None when nothing answers.
pub async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http_get_auth(port, path, None).await
}

/// GET with an optional bearer token.
pub async fn http_get_auth(port: u16, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    .ok()?
    .ok()?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n{auth}\r\n").as_bytes())
        .await
        .ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(40), s.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// Waits until /ready answers with `ready` (true: 200, false: 503).
pub async fn wait_ready(port: u16, ready: bool, timeout: Duration) {
    let started = Instant::now();
    let mut last = None;
    loop {
        if let Some((status, body)) = http_get(port, "/ready").await {
            if (status == 200) == ready {
                return;
            }
            last = Some(body);
        }
        assert!(
            started.elapsed() < timeout,
            "/ready did not become {ready} within {timeout:?}; it last said {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether a `/ready` answer names a stalled partition in its reason (`partition N: ...`),
/// not merely any reason (every answer lists `assigned_partitions`).
pub fn names_a_stalled_partition(body: &str) -> bool {
    let reason = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["reason"].as_str().map(str::to_string))
        .unwrap_or_default();
    reason.match_indices("partition ").any(|(i, m)| {
        let rest = &reason[i + m.len()..];
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        digits > 0 && rest[digits..].starts_with(':')
    })
}
