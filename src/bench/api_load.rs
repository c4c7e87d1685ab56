//! The query API's load while a benchmark's posters run: an open loop of balance lookups and
//! history pages against an API in this process, on its own read-only pool over real HTTP, and
//! what it answered (`bench api`, and `bench pipeline --api-qps`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use rand::{Rng, SeedableRng};

use super::scratch::ScratchDb;

/// What the API answered while the posters ran.
#[derive(Debug, Default)]
pub struct ApiFigures {
    pub balance_ms: Vec<f64>,
    pub history_ms: Vec<f64>,
    /// History pages that came back full (100 lines): the lookups read real history.
    pub full_pages: usize,
    pub errors: usize,
}

/// The API and its load, running until `stop`.
pub struct ApiLoad {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Result<ApiFigures>>,
}

impl ApiLoad {
    /// Serves the API on the scratch database for the posters' group and sends it `qps`
    /// requests per second, half balance lookups, half first pages of an account's history
    /// (100 lines; the walk is the group's applied positions, so pages fill as postings land).
    pub async fn start(
        db: &ScratchDb,
        qps: f64,
        accounts: usize,
        (group, topic): (&str, &str),
    ) -> Result<Self> {
        let pool = crate::store::connect_read_only(&db.url, 8, Duration::from_secs(30)).await?;
        let state = crate::api::ApiState {
            pool,
            group: Arc::from(group),
            topic: Arc::from(topic),
            token: None,
            limits: crate::api::Limits {
                request: Duration::from_secs(35),
                integrity: Duration::from_secs(300),
            },
            metrics: Default::default(),
        };
        let (router, _) = crate::api::router(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move { axum::serve(listener, router).await });
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(send_load(addr, qps, accounts, stop.clone(), server));
        Ok(Self { stop, task })
    }

    pub async fn finish(self) -> Result<ApiFigures> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await?
    }
}

async fn send_load(
    addr: std::net::SocketAddr,
    qps: f64,
    accounts: usize,
    stop: Arc<AtomicBool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
) -> Result<ApiFigures> {
    let figures = Arc::new(Mutex::new(ApiFigures::default()));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / qps));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = Vec::new();
    for n in 0u64.. {
        tick.tick().await;
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let account = crate::generator::account_id(rng.gen_range(0..accounts));
        let history = n % 2 == 1;
        let path = match history {
            true => format!("/v1/accounts/{account}/entries?limit=100"),
            false => format!("/v1/accounts/{account}"),
        };
        let figures = figures.clone();
        sent.push(tokio::spawn(async move {
            let started = Instant::now();
            let answer = get(addr, &path).await;
            let ms = started.elapsed().as_secs_f64() * 1e3;
            let mut f = figures.lock().expect("not poisoned");
            match (answer, history) {
                (Ok((200, body)), true) => {
                    f.history_ms.push(ms);
                    f.full_pages += usize::from(body.contains("\"next_cursor\":\""));
                }
                (Ok((200, _)), false) => f.balance_ms.push(ms),
                _ => f.errors += 1,
            }
        }));
    }
    for s in sent {
        s.await?;
    }
    server.abort();
    let figures = std::mem::take(&mut *figures.lock().expect("not poisoned"));
    Ok(figures)
}

/// One HTTP/1.1 GET on a new connection; the status code and the body.
async fn get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    s.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |x| x.1);
    Ok((status, body.to_string()))
}

/// The p-th quantile (0..=1) of unsorted values, in their unit; 0 when there are none.
pub fn quantile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n => sorted[((n - 1) as f64 * p).round() as usize],
    }
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn quantiles_of_few_and_no_values() {
        assert_eq!(quantile(&[], 0.5), 0.0);
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), 2.0);
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.99), 3.0);
        assert_eq!(quantile(&[5.0], 0.99), 5.0);
    }
}
