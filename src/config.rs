//! Settings from the environment (the local stack writes them to `.stack/env`).
//!
//! Secrets (the database URL carries a password; SASL passwords) may also come from a file named
//! by `<NAME>_FILE`, and are wrapped in [`Secret`] so that Debug output and logs never show them.

use std::collections::BTreeMap;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{name} is not set (run `source .stack/env` after `ops/stack.sh up`, or export it)")]
    Missing { name: &'static str },
    #[error("{name}_FILE names {path}, which cannot be read: {reason}")]
    SecretFile {
        name: String,
        path: String,
        reason: String,
    },
    #[error("{name}={value:?} is invalid: {reason}")]
    Invalid {
        name: String,
        value: String,
        reason: String,
    },
    #[error("{origin} is empty (or only whitespace): refusing to start, because {guards} would be open to anyone. Set a token there, or unset {name} and {name}_FILE to run without one")]
    EmptySecret {
        /// The setting: `NAME`.
        name: &'static str,
        /// Where the empty value came from: `NAME` or `NAME_FILE (path)`.
        origin: String,
        /// What the secret guards.
        guards: &'static str,
    },
}

/// A value that must never be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Reads `NAME`, or the contents of the file named by `NAME_FILE` (trailing newline dropped).
pub fn secret_from_env(name: &'static str) -> Result<Option<Secret>, ConfigError> {
    Ok(secret_with_origin(name, |n| std::env::var(n).ok())?.map(|(secret, _)| secret))
}

/// `NAME` or the contents of the file `NAME_FILE` names, as `env` answers, with where it came
/// from (`NAME`, or `NAME_FILE (path)`) for error messages.
fn secret_with_origin(
    name: &'static str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<(Secret, String)>, ConfigError> {
    if let Some(value) = env(name) {
        return Ok(Some((Secret(value), name.to_string())));
    }
    let Some(path) = env(&format!("{name}_FILE")) else {
        return Ok(None);
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let secret = Secret(text.trim_end_matches(['\n', '\r']).to_string());
            Ok(Some((secret, format!("{name}_FILE ({path})"))))
        }
        Err(e) => Err(ConfigError::SecretFile {
            name: name.into(),
            path,
            reason: e.to_string(),
        }),
    }
}

/// The setting of the bearer token for HTTP endpoints that reveal ledger data.
pub const HTTP_TOKEN: &str = "LEDGERLINE_HTTP_TOKEN";

/// The bearer token that guards the HTTP endpoints revealing ledger data (the query API's
/// `/v1`, the poster's `/recovery` and `/status`): `LEDGERLINE_HTTP_TOKEN` or the file
/// `LEDGERLINE_HTTP_TOKEN_FILE` names; `None` when neither is set (the endpoints are open).
/// A token that is set but empty or only whitespace is refused: an empty token matches a
/// request without one, so it would leave the endpoints open while looking configured.
pub fn http_token() -> Result<Option<Secret>, ConfigError> {
    http_token_from(|n| std::env::var(n).ok())
}

fn http_token_from(env: impl Fn(&str) -> Option<String>) -> Result<Option<Secret>, ConfigError> {
    match secret_with_origin(HTTP_TOKEN, env)? {
        Some((token, origin)) if token.expose().trim().is_empty() => {
            Err(ConfigError::EmptySecret {
                name: HTTP_TOKEN,
                origin,
                guards: "the query API's /v1 routes and the poster's /recovery and /status",
            })
        }
        found => Ok(found.map(|(token, _)| token)),
    }
}

/// The ledger's topics, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub postings: String,
    pub balances: String,
    pub anomalies: String,
    pub rejections: String,
}

impl Topics {
    /// Every topic, in this order: postings, balances, anomalies, rejections.
    pub fn all(&self) -> [&str; 4] {
        [
            &self.postings,
            &self.balances,
            &self.anomalies,
            &self.rejections,
        ]
    }
}

/// The ledger's topics: `LEDGERLINE_{POSTINGS,BALANCES,ANOMALIES,REJECTIONS}_TOPIC`, with
/// defaults `ledger.postings` and so on.
pub fn ledger_topics() -> Topics {
    let topic = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    Topics {
        postings: topic("LEDGERLINE_POSTINGS_TOPIC", "ledger.postings"),
        balances: topic("LEDGERLINE_BALANCES_TOPIC", "ledger.balances"),
        anomalies: topic("LEDGERLINE_ANOMALIES_TOPIC", "ledger.anomalies"),
        rejections: topic("LEDGERLINE_REJECTIONS_TOPIC", "ledger.rejections"),
    }
}

/// Assets `ledgerline migrate` adds to the assets table when missing
/// (`LEDGERLINE_EXTRA_CURRENCIES`, e.g. `USDC:6,BTC:8`: how extra currencies were configured
/// before the table existed).
pub fn extra_currencies() -> String {
    std::env::var("LEDGERLINE_EXTRA_CURRENCIES").unwrap_or_default()
}

/// Who runs an administrative command, when not given (`$USER`).
pub fn operator() -> Option<String> {
    std::env::var("USER").ok()
}

/// This machine's name for the poster heartbeat and group instance ids (`$HOSTNAME`, else the
/// kernel's host name, else "localhost"), read once.
pub fn host_name() -> String {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
            .map(|name| name.trim().to_string())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "localhost".into())
    })
    .clone()
}

/// Whether Kafka takes `c` in a `group.instance.id`: letters, digits, '.', '_' and '-'.
pub fn is_group_instance_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// Log lines as JSON objects (`LEDGERLINE_LOG_FORMAT=json`).
pub fn log_as_json() -> bool {
    std::env::var("LEDGERLINE_LOG_FORMAT").as_deref() == Ok("json")
}

/// The benchmark's poster process log filter (`LEDGERLINE_BENCH_POSTER_LOG`, default "warn";
/// "info" shows its batches).
pub fn bench_poster_log() -> String {
    std::env::var("LEDGERLINE_BENCH_POSTER_LOG").unwrap_or_else(|_| "warn".into())
}

/// Where the benchmark writes its per-message trace, if anywhere (`LEDGERLINE_BENCH_TRACE`).
pub fn bench_trace_path() -> Option<String> {
    std::env::var("LEDGERLINE_BENCH_TRACE").ok()
}

/// The PostgreSQL connection URL from `LEDGERLINE_DATABASE_URL` (or `..._FILE`).
pub fn database_url() -> Result<Secret, ConfigError> {
    secret_from_env("LEDGERLINE_DATABASE_URL")?.ok_or(ConfigError::Missing {
        name: "LEDGERLINE_DATABASE_URL",
    })
}

/// Kafka client settings: `LEDGERLINE_KAFKA_BROKERS`, plus every librdkafka property given as
/// `LEDGERLINE_RDKAFKA_<PROPERTY>` with dots written as underscores, e.g.
/// `LEDGERLINE_RDKAFKA_SECURITY_PROTOCOL=SASL_SSL`, `LEDGERLINE_RDKAFKA_SASL_PASSWORD_FILE=/run/pw`.
#[derive(Clone)]
pub struct KafkaSettings {
    pub brokers: String,
    /// librdkafka property -> value. Values of `*password*` keys are secrets.
    pub properties: BTreeMap<String, Secret>,
}

impl std::fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str(),
                    if is_secret_key(k) { "***" } else { v.expose() },
                )
            })
            .collect();
        f.debug_struct("KafkaSettings")
            .field("brokers", &self.brokers)
            .field("properties", &shown)
            .finish()
    }
}

fn is_secret_key(key: &str) -> bool {
    key.contains("password")
        || key.contains("secret")
        || key.ends_with(".pem")
        || key.contains("key.pem")
}

const RDKAFKA_PREFIX: &str = "LEDGERLINE_RDKAFKA_";

impl KafkaSettings {
    pub fn from_env() -> Result<Self, ConfigError> {
        let brokers =
            std::env::var("LEDGERLINE_KAFKA_BROKERS").map_err(|_| ConfigError::Missing {
                name: "LEDGERLINE_KAFKA_BROKERS",
            })?;
        let mut properties = BTreeMap::new();
        for (name, value) in std::env::vars() {
            let Some(rest) = name.strip_prefix(RDKAFKA_PREFIX) else {
                continue;
            };
            let (rest, value) = match rest.strip_suffix("_FILE") {
                Some(base) => {
                    let text =
                        std::fs::read_to_string(&value).map_err(|e| ConfigError::SecretFile {
                            name: name.clone(),
                            path: value.clone(),
                            reason: e.to_string(),
                        })?;
                    (base, text.trim_end_matches(['\n', '\r']).to_string())
                }
                None => (rest, value),
            };
            properties.insert(rest.to_ascii_lowercase().replace('_', "."), Secret(value));
        }
        let settings = KafkaSettings {
            brokers,
            properties,
        };
        settings.check_owned_properties()?;
        Ok(settings)
    }

    /// Refuses librdkafka properties that ledgerline owns, because another value would break
    /// exactly-once or the checkpoint design, instead of silently taking (or dropping) them.
    pub fn check_owned_properties(&self) -> Result<(), ConfigError> {
        for (key, value) in &self.properties {
            if let Some(reason) = owned_property_refusal(key, value.expose()) {
                return Err(ConfigError::Invalid {
                    name: format!(
                        "{RDKAFKA_PREFIX}{}",
                        key.to_ascii_uppercase().replace('.', "_")
                    ),
                    value: value.expose().to_string(),
                    reason: reason.to_string(),
                });
            }
        }
        Ok(())
    }

    /// A librdkafka client config with these settings applied.
    pub fn client_config(&self) -> rdkafka::ClientConfig {
        self.client_config_with(&[])
    }

    /// A client config with the program's `defaults` first, then the operator's properties,
    /// so that the environment can override any of them (e.g. `session.timeout.ms`).
    pub fn client_config_with(&self, defaults: &[(&str, String)]) -> rdkafka::ClientConfig {
        let mut config = rdkafka::ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in defaults {
            config.set(*key, value);
        }
        for (key, value) in &self.properties {
            config.set(key, value.expose());
        }
        // librdkafka logs its config at debug level; never let that include secrets.
        if !self.properties.contains_key("debug") {
            config.set_log_level(rdkafka::config::RDKafkaLogLevel::Warning);
        }
        config
    }
}

/// Why `key=value` may not be passed through to librdkafka, if it may not.
fn owned_property_refusal(key: &str, value: &str) -> Option<&'static str> {
    let value = value.trim().to_ascii_lowercase();
    match key {
        "group.id" => Some("the consumer group is set with --group (LEDGERLINE_GROUP), so that positions in PostgreSQL and the group agree"),
        "enable.auto.commit" | "enable.auto.offset.store" => Some(
            "offsets are committed by the poster after each PostgreSQL commit (positions live in PostgreSQL); automatic commits would report progress that was never posted",
        ),
        "auto.offset.reset" => Some("where a partition is read from is decided by its PostgreSQL checkpoint; another reset policy could skip messages"),
        "isolation.level" if value != "read_committed" => Some(
            "only read_committed is supported: an aborted transactional message must never be posted",
        ),
        "partition.assignment.strategy"
            if value.split(',').any(|s| !matches!(s.trim(), "range" | "roundrobin")) =>
        {
            Some("only the eager strategies range and roundrobin are supported: each assignment is read at its PostgreSQL checkpoint, which cooperative (incremental) assignment bypasses")
        }
        "group.protocol" if value != "classic" => Some(
            "only the classic group protocol is supported: the poster assigns each partition at its PostgreSQL checkpoint in the rebalance callback",
        ),
        "enable.partition.eof" if value != "false" => {
            Some("partition EOF events are not consume errors and would stop a partition")
        }
        "check.crcs" if value != "true" => Some("a corrupt record must be detected, never posted"),
        _ => None,
    }
}

/// Reads an optional environment variable and parses it.
pub fn env_parse<T: std::str::FromStr>(name: &str, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(v) => v.parse().map_err(|e: T::Err| ConfigError::Invalid {
            name: name.into(),
            value: v,
            reason: e.to_string(),
        }),
        Err(_) => Ok(default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug_output() {
        let s = KafkaSettings {
            brokers: "b:9092".into(),
            properties: [
                ("sasl.password".to_string(), Secret::new("hunter2")),
                ("security.protocol".to_string(), Secret::new("SASL_SSL")),
            ]
            .into(),
        };
        let shown = format!("{s:?} {:?}", Secret::new("hunter2"));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("SASL_SSL"));
    }

    /// `http_token_from` over a fixed environment.
    fn token_with(vars: &[(&str, &str)]) -> Result<Option<Secret>, ConfigError> {
        let vars: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        http_token_from(|name| vars.get(name).cloned())
    }

    #[test]
    fn an_empty_or_blank_http_token_is_refused_naming_the_setting() {
        assert_eq!(token_with(&[]).unwrap(), None, "unset: no token");
        assert_eq!(
            token_with(&[("LEDGERLINE_HTTP_TOKEN", "tok-1")]).unwrap(),
            Some(Secret::new("tok-1"))
        );
        for value in ["", " ", "\t \n"] {
            let err = token_with(&[("LEDGERLINE_HTTP_TOKEN", value)]).unwrap_err();
            let text = err.to_string();
            assert!(
                text.starts_with("LEDGERLINE_HTTP_TOKEN is empty"),
                "{value:?}: {text}"
            );
            assert!(text.contains("refusing to start"), "{text}");
        }

        let dir = std::env::temp_dir().join(format!("ledgerline-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path.to_str().unwrap().to_string()
        };
        let good = file("good", "tok-2\n");
        assert_eq!(
            token_with(&[("LEDGERLINE_HTTP_TOKEN_FILE", &good)]).unwrap(),
            Some(Secret::new("tok-2")),
            "a file's trailing newline is not part of the token"
        );
        for (name, text) in [("empty", ""), ("newline", "\n"), ("blank", "  \t\r\n")] {
            let path = file(name, text);
            let err = token_with(&[("LEDGERLINE_HTTP_TOKEN_FILE", &path)]).unwrap_err();
            let text = err.to_string();
            assert!(
                text.starts_with(&format!("LEDGERLINE_HTTP_TOKEN_FILE ({path}) is empty")),
                "{name}: {text}"
            );
        }
        let missing = dir.join("missing").to_str().unwrap().to_string();
        assert!(matches!(
            token_with(&[("LEDGERLINE_HTTP_TOKEN_FILE", &missing)]),
            Err(ConfigError::SecretFile { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn with(key: &str, value: &str) -> KafkaSettings {
        KafkaSettings {
            brokers: "b:9092".into(),
            properties: [(key.to_string(), Secret::new(value))].into(),
        }
    }

    #[test]
    fn properties_the_poster_owns_are_refused_with_the_reason() {
        for (key, value, needle) in [
            ("group.id", "other", "--group"),
            ("enable.auto.commit", "true", "PostgreSQL"),
            ("enable.auto.offset.store", "true", "PostgreSQL"),
            ("auto.offset.reset", "latest", "checkpoint"),
            ("isolation.level", "read_uncommitted", "aborted"),
            (
                "partition.assignment.strategy",
                "cooperative-sticky",
                "eager",
            ),
            (
                "partition.assignment.strategy",
                "range,cooperative-sticky",
                "eager",
            ),
            ("group.protocol", "consumer", "classic"),
            ("check.crcs", "false", "corrupt"),
            ("enable.partition.eof", "true", "EOF"),
        ] {
            let err = with(key, value).check_owned_properties().unwrap_err();
            let text = err.to_string();
            assert!(text.contains(needle), "{key}={value}: {text}");
            let env_name = format!(
                "LEDGERLINE_RDKAFKA_{}",
                key.to_ascii_uppercase().replace('.', "_")
            );
            assert!(text.contains(&env_name), "{text}");
        }
        for (key, value) in [
            ("isolation.level", "read_committed"),
            ("partition.assignment.strategy", "range"),
            ("group.protocol", "classic"),
            ("check.crcs", "true"),
            ("security.protocol", "SASL_SSL"),
            ("session.timeout.ms", "10000"),
        ] {
            assert!(
                with(key, value).check_owned_properties().is_ok(),
                "{key}={value}"
            );
        }
    }
}
