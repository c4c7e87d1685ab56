//! What every service's metrics share: the registry under the `ledgerline_` prefix, one way to
//! declare a metric (`Registrar`), and the text format with `ledgerline_build_info`. Each
//! service declares its own metrics beside its code (`poster/metrics.rs`,
//! `reporter/metrics.rs`, the query API's in `api/`).

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Registers metrics under the `ledgerline_` prefix, one call a metric.
pub struct Registrar(Registry);

impl Registrar {
    pub fn new() -> Self {
        Registrar(Registry::new_custom(Some("ledgerline".into()), None).expect("valid prefix"))
    }

    fn register<M: prometheus::core::Collector + Clone + 'static>(&self, metric: M) -> M {
        self.0
            .register(Box::new(metric.clone()))
            .expect("each metric registered once");
        metric
    }

    pub fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.register(IntCounter::new(name, help).expect("valid metric"))
    }

    pub fn counters(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.register(IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    pub fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.register(IntGauge::new(name, help).expect("valid metric"))
    }

    pub fn gauges(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.register(IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    pub fn histogram(&self, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
        let opts = HistogramOpts::new(name, help).buckets(buckets);
        self.register(Histogram::with_opts(opts).expect("valid metric"))
    }

    pub fn into_registry(self) -> Registry {
        self.0
    }
}

impl Default for Registrar {
    fn default() -> Self {
        Self::new()
    }
}

/// The Prometheus text format of a registry.
pub fn render(registry: &Registry, service: &str) -> String {
    let mut families = registry.gather();
    families.extend(build_info(service));
    let mut buf = Vec::new();
    TextEncoder::new()
        .encode(&families, &mut buf)
        .expect("text encoding");
    String::from_utf8(buf).expect("prometheus text is UTF-8")
}

/// `ledgerline_build_info{service, version, rustc} 1`: which build of which service answers
/// (the same name for every service, so that one query finds them all).
fn build_info(service: &str) -> Vec<prometheus::proto::MetricFamily> {
    let registry = Registry::new();
    let info = prometheus::IntGaugeVec::new(
        prometheus::Opts::new(
            "ledgerline_build_info",
            "1, labelled with the service, its version and the compiler that built it.",
        ),
        &["service", "version", "rustc"],
    )
    .expect("valid metric");
    let labels = [service, env!("CARGO_PKG_VERSION"), env!("LEDGERLINE_RUSTC")];
    info.with_label_values(&labels).set(1);
    registry.register(Box::new(info)).expect("unique");
    registry.gather()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_service_says_which_build_answers() {
        let text = super::render(&prometheus::Registry::new(), "poster");
        let line = text
            .lines()
            .find(|l| l.starts_with("ledgerline_build_info{"))
            .expect("a build_info sample");
        assert!(line.contains("service=\"poster\""), "{line}");
        assert!(
            line.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))),
            "{line}"
        );
        assert!(
            line.contains("rustc=\"1."),
            "the compiler's version: {line}"
        );
        assert!(line.ends_with(" 1"), "{line}");
    }
}
