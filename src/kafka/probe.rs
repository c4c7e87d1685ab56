//! The broker check behind `/ready`: a metadata request from a client of its own.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::{BaseProducer, Producer};

use super::{retire, HealthContext, KafkaError, Renewal};
use crate::config::KafkaSettings;
use crate::health::Health;

/// A metadata-only client that checks, on demand, whether the broker answers. It is a separate
/// client from the ones doing the work so that a check never waits behind a large fetch. It is a
/// producer that never sends: polling a producer serves the main queue, where client errors are.
/// Replaced by a new client after failing several checks in a row ([`Renewal`]).
pub struct BrokerProbe {
    settings: KafkaSettings,
    client: Arc<BaseProducer<HealthContext>>,
    health: Arc<Health>,
    renewal: Renewal,
}

impl BrokerProbe {
    pub fn new(settings: &KafkaSettings, health: Arc<Health>) -> Result<Self, KafkaError> {
        Ok(BrokerProbe {
            settings: settings.clone(),
            client: Arc::new(Self::client(settings, &health)?),
            health,
            renewal: Renewal::default(),
        })
    }

    fn client(
        settings: &KafkaSettings,
        health: &Arc<Health>,
    ) -> Result<BaseProducer<HealthContext>, KafkaError> {
        Ok(settings
            .client_config()
            .create_with_context(HealthContext(health.clone()))?)
    }

    /// Asks for cluster metadata; stores the answer in `health.broker_ok` (clearing the last
    /// client error on success) and returns it.
    pub async fn check(&mut self, timeout: Duration) -> bool {
        let client = self.client.clone();
        let ok = tokio::task::spawn_blocking(move || {
            let ok = client.client().fetch_metadata(None, timeout).is_ok();
            // Client errors (e.g. authentication) reach the context only when the queue is
            // served; this client never consumes, so the poll returns nothing else.
            client.poll(Duration::from_millis(200));
            ok
        })
        .await
        .unwrap_or(false);
        if ok {
            self.health.clear_broker_error();
            self.renewal.succeeded();
        } else if self.renewal.failed() {
            self.renew();
        }
        self.health.broker_ok.store(ok, Ordering::Relaxed);
        ok
    }

    fn renew(&mut self) {
        match Self::client(&self.settings, &self.health) {
            Ok(client) => {
                tracing::warn!("the broker did not answer several checks in a row; checking with a new client from now on");
                retire(std::mem::replace(&mut self.client, Arc::new(client)));
            }
            Err(e) => tracing::warn!(error = %e, "cannot make a new client for the broker check"),
        }
    }

    /// Fails with the broker's own reason (e.g. authentication) when it does not answer.
    pub async fn require(&mut self, settings: &KafkaSettings) -> Result<(), KafkaError> {
        if self.check(Duration::from_secs(10)).await {
            return Ok(());
        }
        Err(KafkaError::Unreachable {
            brokers: settings.brokers.clone(),
            detail: self
                .health
                .broker_error()
                .unwrap_or_else(|| "no answer within 10 s".into()),
        })
    }
}

/// Fails fast, with the reason, when the broker cannot be reached or refuses our credentials.
pub async fn require_broker(settings: &KafkaSettings) -> Result<(), KafkaError> {
    BrokerProbe::new(settings, Arc::new(Health::default()))?
        .require(settings)
        .await
}
