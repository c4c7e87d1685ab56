//! What every long-running command shares: health state, a shutdown flag raised by SIGTERM or
//! SIGINT, and the HTTP server for /health, /ready, /metrics (and /recovery for posters).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sqlx::PgPool;

use crate::health::Health;
use crate::http::{AppState, MetricsText};

pub struct Service {
    pub health: Arc<Health>,
    pub shutdown: Arc<AtomicBool>,
    stop_http: tokio::sync::watch::Sender<bool>,
    http: tokio::task::JoinHandle<()>,
}

impl Service {
    /// Binds HTTP (failing clearly when the address is taken) and starts watching signals.
    pub async fn start(
        addr: SocketAddr,
        metrics: Arc<dyn MetricsText>,
        pool: PgPool,
        group: Option<String>,
    ) -> anyhow::Result<Service> {
        let health = Arc::new(Health::default());
        health.db_ok.store(true, Ordering::Relaxed);
        health.broker_ok.store(true, Ordering::Relaxed);
        let shutdown = Arc::new(AtomicBool::new(false));
        let (stop_http, mut stopped) = tokio::sync::watch::channel(false);
        let token = crate::config::http_token()?;
        let state = AppState {
            health: health.clone(),
            metrics,
            pool,
            group,
            token,
        };
        let http = crate::http::serve_ops(addr, state, async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        })
        .await?;
        tokio::spawn(crate::signals::watch(shutdown.clone(), health.clone()));
        Ok(Service {
            health,
            shutdown,
            stop_http,
            http,
        })
    }

    /// Stops HTTP once the work loop has ended.
    pub async fn stop(self) {
        let _ = self.stop_http.send(true);
        let _ = self.http.await;
    }
}
