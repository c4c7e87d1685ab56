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
    if let Ok(value) = std::env::var(name) {
        return Ok(Some(Secret(value)));
    }
    let file_var = format!("{name}_FILE");
    match std::env::var(&file_var) {
        Ok(path) => std::fs::read_to_string(&path)
            .map(|s| Some(Secret(s.trim_end_matches(['\n', '\r']).to_string())))
            .map_err(|e| ConfigError::SecretFile {
                name: name.into(),
                path,
                reason: e.to_string(),
            }),
        Err(_) => Ok(None),
    }
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
        Ok(KafkaSettings {
            brokers,
            properties,
        })
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
}
