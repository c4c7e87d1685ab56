//! docker-compose.yml: valid for docker-compose, and wired the way the code expects (services,
//! ports without a clash, settings, health checks, volumes); `.env.example` names every secret
//! it requires; the image has a health check. No Docker engine is needed.

use std::process::Command;

fn compose_config(env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new("docker-compose");
    cmd.args([
        "-f",
        concat!(env!("CARGO_MANIFEST_DIR"), "/docker-compose.yml"),
        "config",
    ]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    for secret in [
        "POSTGRES_PASSWORD",
        "GRAFANA_ADMIN_PASSWORD",
        "LEDGERLINE_OWNER_PASSWORD",
        "LEDGERLINE_WRITER_PASSWORD",
        "LEDGERLINE_READER_PASSWORD",
    ] {
        cmd.env_remove(secret);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output()
        .expect("docker-compose (Debian package) is installed")
}

#[test]
fn compose_file_is_valid_and_matches_what_the_code_expects() {
    let secrets = [
        ("POSTGRES_PASSWORD", "pw"),
        ("GRAFANA_ADMIN_PASSWORD", "gpw"),
        ("LEDGERLINE_OWNER_PASSWORD", "opw"),
        ("LEDGERLINE_WRITER_PASSWORD", "wpw"),
        ("LEDGERLINE_READER_PASSWORD", "rpw"),
    ];
    let quiet = Command::new("docker-compose")
        .args([
            "-f",
            concat!(env!("CARGO_MANIFEST_DIR"), "/docker-compose.yml"),
            "config",
            "-q",
        ])
        .envs(secrets)
        .output()
        .unwrap();
    assert!(
        quiet.status.success(),
        "{}",
        String::from_utf8_lossy(&quiet.stderr)
    );

    let out = compose_config(&secrets);
    assert!(out.status.success());
    let mut yaml_to_json = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import yaml, json, sys; print(json.dumps(yaml.safe_load(sys.stdin)))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    yaml_to_json
        .stdin
        .take()
        .unwrap()
        .write_all(&out.stdout)
        .unwrap();
    let json = yaml_to_json.wait_with_output().unwrap();
    let c: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let services = c["services"].as_object().unwrap();
    let mut names: Vec<&str> = services.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "api",
            "create-topics",
            "grafana",
            "kafka",
            "migrate",
            "poster-1",
            "poster-2",
            "postgres",
            "prometheus",
            "reporter"
        ]
    );

    // The same Apache Kafka version as the local stack and the tests run.
    let conf =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/ops/stack.conf")).unwrap();
    let version = conf
        .lines()
        .find_map(|l| l.strip_prefix("LEDGERLINE_KAFKA_VERSION="))
        .unwrap();
    for name in ["kafka", "create-topics"] {
        assert_eq!(
            services[name]["image"],
            format!("apache/kafka:{version}"),
            "{name} runs the stack's Kafka version"
        );
    }

    // Every file that reads settings: the CLI modules and src/config.rs.
    let cli_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/cli");
    let mut source =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/config.rs")).unwrap();
    for entry in std::fs::read_dir(cli_dir).unwrap() {
        source += &std::fs::read_to_string(entry.unwrap().path()).unwrap();
    }
    for name in ["poster-1", "poster-2", "reporter", "api"] {
        let s = &services[name];
        let env = s["environment"].as_object().unwrap();
        assert_eq!(env["LEDGERLINE_KAFKA_BROKERS"], "kafka:9092", "{name}");
        let role = if name == "api" {
            "ledgerline_viewer:rpw"
        } else {
            "ledgerline_poster:wpw"
        };
        assert_eq!(
            env["LEDGERLINE_DATABASE_URL"],
            format!("postgres://{role}@postgres:5432/ledgerline"),
            "{name} logs in as its least-privileged role, not the superuser"
        );
        assert_eq!(
            s["depends_on"]["migrate"]["condition"], "service_completed_successfully",
            "{name} starts after the schema is migrated"
        );
        for key in env.keys().filter(|k| k.starts_with("LEDGERLINE_")) {
            assert!(
                source.contains(key.as_str()),
                "{name}: {key} is not read by the code"
            );
        }
        assert!(
            s["healthcheck"]["test"].to_string().contains("/ready"),
            "{name} is health-checked on /ready"
        );
    }
    let migrate = &services["migrate"];
    assert_eq!(migrate["command"][0], "migrate");
    assert_eq!(
        migrate["environment"]["LEDGERLINE_DATABASE_URL"],
        "postgres://ledgerline_owner:opw@postgres:5432/ledgerline",
        "migrations run as the owner role"
    );
    assert_eq!(
        migrate["depends_on"]["postgres"]["condition"],
        "service_healthy"
    );
    // The container makes the login roles with the same script as ops/stack.sh.
    let pg = &services["postgres"];
    assert!(
        pg["volumes"]
            .to_string()
            .contains("/docker-entrypoint-initdb.d"),
        "{}",
        pg["volumes"]
    );
    for key in [
        "LEDGERLINE_OWNER_PASSWORD",
        "LEDGERLINE_WRITER_PASSWORD",
        "LEDGERLINE_READER_PASSWORD",
    ] {
        assert!(
            pg["environment"].get(key).is_some(),
            "postgres gets {key} for ops/postgres-init"
        );
        let script = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/ops/postgres-init/10-roles.sh"
        ))
        .unwrap();
        assert!(script.contains(key), "10-roles.sh passes {key}");
    }
    // docker-compose 1.x prints ports as "127.0.0.1:HOST:CONTAINER/tcp".
    let port = |svc: &str| -> Option<u64> {
        let spec = services[svc]["ports"][0].as_str()?;
        assert!(
            spec.starts_with("127.0.0.1:"),
            "{svc} publishes on loopback only: {spec}"
        );
        spec.split(':').nth(1)?.parse().ok()
    };
    assert_eq!(
        port("postgres"),
        Some(55432),
        "same host port as ops/stack.conf"
    );
    assert_eq!(
        port("kafka"),
        Some(59092),
        "same host port as ops/stack.conf"
    );
    assert_eq!(
        port("poster-1"),
        Some(9464),
        "the poster's default HTTP port"
    );
    assert_eq!(
        port("reporter"),
        Some(9465),
        "the reporter's default HTTP port"
    );
    assert_eq!(port("api"), Some(9466), "the query API's default HTTP port");
    let mut host_ports: Vec<u64> = services.keys().filter_map(|s| port(s)).collect();
    let published = host_ports.len();
    host_ports.sort();
    host_ports.dedup();
    assert_eq!(
        host_ports.len(),
        published,
        "two services publish one host port"
    );
    // .env.example names every secret the file requires; the image checks its own health.
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example")).unwrap();
    for (secret, _) in &secrets {
        assert!(
            example.lines().any(|l| l == format!("{secret}=")),
            ".env.example lists {secret}"
        );
    }
    let image =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/ops/Dockerfile")).unwrap();
    assert!(
        image.contains("\nHEALTHCHECK "),
        "ops/Dockerfile has a HEALTHCHECK"
    );
    for v in [
        "kafka-data",
        "postgres-data",
        "prometheus-data",
        "grafana-data",
    ] {
        assert!(c["volumes"].get(v).is_some(), "named volume {v}");
    }
    let topics = services["create-topics"]["command"].to_string();
    for t in [
        "ledger.postings",
        "ledger.anomalies",
        "ledger.rejections",
        "ledger.balances",
        "cleanup.policy=compact",
    ] {
        assert!(topics.contains(t), "create-topics makes {t}");
    }
    // Secrets are required, not defaulted.
    let missing = compose_config(&[]);
    assert!(
        !missing.status.success(),
        "the compose file must refuse to run without POSTGRES_PASSWORD"
    );
    for (left_out, _) in &secrets {
        let partial: Vec<_> = secrets
            .iter()
            .copied()
            .filter(|(k, _)| k != left_out)
            .collect();
        assert!(
            !compose_config(&partial).status.success(),
            "the compose file must refuse to run without {left_out}"
        );
    }
}
