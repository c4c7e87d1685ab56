//! Monitoring: the alert rules pass promtool's checks and unit tests, and a real Prometheus
//! scraping a running poster sees its metrics, evaluates every rule and every dashboard query,
//! and raises the not-ready alert when the broker stops answering.

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, Ledger, PosterProcess};
use ledgerline::generator::{generate, GeneratorSettings};

const OPS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/ops");

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let check = Command::new("promtool")
        .args(["check", "rules", &format!("{OPS}/prometheus/alerts.yml")])
        .output()
        .expect("promtool (Debian package prometheus) is installed");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let test = Command::new("promtool")
        .args(["test", "rules", "alerts_test.yml"])
        .current_dir(format!("{OPS}/prometheus"))
        .output()
        .unwrap();
    assert!(
        test.status.success(),
        "{}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
    // Every alert has a unit test.
    let rules = std::fs::read_to_string(format!("{OPS}/prometheus/alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(format!("{OPS}/prometheus/alerts_test.yml")).unwrap();
    for alert in rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        assert!(
            tests.contains(&format!("alertname: {alert}")),
            "{alert} has no unit test"
        );
    }
}

async fn query(port: u16, promql: &str) -> serde_json::Value {
    let path = format!("/api/v1/query?query={}", urlencode(promql));
    let (status, body) = common::http_get(port, &path)
        .await
        .expect("prometheus answers");
    let v: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(status, 200, "{promql}: {body}");
    v
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn wait_for(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < timeout, "{what} within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_prometheus_scrapes_the_poster_and_evaluates_rules_and_dashboard() {
    let ledger = Ledger::new(50, 2).await;
    let messages = generate(&GeneratorSettings {
        count: 500,
        accounts: 50,
        key_prefix: common::unique("m"),
        ..Default::default()
    });
    ledger.produce(&messages).await;
    let poster_port = free_port();
    let _poster = ledger.poster(poster_port, &[]);
    common::wait_ready(poster_port, true, Duration::from_secs(30)).await;

    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(common::unique("prometheus"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: ['{OPS}/prometheus/alerts.yml']\n\
         scrape_configs:\n  - job_name: ledgerline-poster\n    static_configs: [{{targets: ['127.0.0.1:{poster_port}']}}]\n"
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let prom_port = free_port();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let _prometheus = PosterProcess(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus (Debian package prometheus) is installed"),
    );

    // Prometheus answers queries once it is ready (the poster may drain the topic first).
    wait_for("Prometheus ready", Duration::from_secs(60), async || {
        common::http_get(prom_port, "/-/ready")
            .await
            .is_some_and(|(status, _)| status == 200)
    })
    .await;
    // The poster's metrics arrive and the lag metric reaches 0 once the topic is drained.
    ledger.wait_drained(Duration::from_secs(60)).await;
    wait_for(
        "all 500 messages counted by Prometheus",
        Duration::from_secs(60),
        async || {
            let v = query(prom_port, "sum(ledgerline_postings_total)").await;
            v["data"]["result"][0]["value"][1].as_str() == Some("500")
        },
    )
    .await;
    wait_for(
        "the lag of both partitions scraped, at 0",
        Duration::from_secs(60),
        async || {
            let v = query(prom_port, "ledgerline_consumer_lag_messages").await;
            let series = v["data"]["result"].as_array().cloned().unwrap_or_default();
            series.len() == 2 && series.iter().all(|s| s["value"][1] == "0")
        },
    )
    .await;

    // Every rule evaluates without error; no alert fires for a healthy poster. (A rule
    // evaluated before the poster's first scrape sees no `up` series and stays pending until
    // the next evaluation: wait for one after the scrape.)
    let rules_now = async || -> serde_json::Value {
        let (_, rules) = common::http_get(prom_port, "/api/v1/rules").await.unwrap();
        serde_json::from_str(&rules).unwrap()
    };
    wait_for(
        "every rule evaluated after the first scrape",
        Duration::from_secs(30),
        async || {
            !rules_now()
                .await
                .to_string()
                .contains("\"state\":\"pending\"")
        },
    )
    .await;
    let rules = rules_now().await;
    let all: Vec<&serde_json::Value> = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .collect();
    // Every alert of the rules file is loaded (the file's alerts, counted from its text).
    let in_file = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/ops/prometheus/alerts.yml"
    ))
    .unwrap()
    .lines()
    .filter(|l| l.trim_start().starts_with("- alert:"))
    .count();
    assert!(in_file >= 18, "{in_file} alerts in the file");
    assert_eq!(all.len(), in_file);
    for r in &all {
        assert_eq!(r["health"], "ok", "{r}");
        assert_eq!(r["state"], "inactive", "{r}");
    }

    // Every dashboard panel's query evaluates.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{OPS}/grafana/dashboards/ledgerline.json")).unwrap(),
    )
    .unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            p["targets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["expr"].as_str().unwrap().to_string())
        })
        .collect();
    assert!(exprs.len() >= 8);
    // Grafana's variables: the data source is chosen, not hard-coded, and group and topic
    // narrow the lag panels; evaluated here with every value ("All" is `.*`).
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .expect("the dashboard has variables")
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(variables, ["datasource", "group", "topic"]);
    for panel in dashboard["panels"].as_array().unwrap() {
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{}",
            panel["title"]
        );
    }
    assert!(exprs.iter().any(|e| e.contains("$group")));
    for e in &exprs {
        let e = e.replace("$group", ".*").replace("$topic", ".*");
        let v = query(prom_port, &e).await;
        assert_eq!(v["status"], "success", "{e}: {v}");
    }
    let build = query(prom_port, "ledgerline_build_info{service=\"poster\"}").await;
    assert_eq!(build["data"]["result"][0]["value"][1], "1", "{build}");

    // The broker stops answering: the poster says not ready and the alert becomes pending.
    let pid = common::broker_pid();
    let pid = pid.as_str();
    assert!(Command::new("kill")
        .args(["-STOP", pid])
        .status()
        .unwrap()
        .success());
    let pending = tokio::time::timeout(
        Duration::from_secs(45),
        wait_for(
            "LedgerlinePosterNotReady pending",
            Duration::from_secs(45),
            async || {
                let (_, alerts) = common::http_get(prom_port, "/api/v1/alerts")
                    .await
                    .unwrap_or_default();
                alerts.contains("LedgerlinePosterNotReady")
            },
        ),
    )
    .await;
    assert!(Command::new("kill")
        .args(["-CONT", pid])
        .status()
        .unwrap()
        .success());
    pending.expect("the not-ready alert evaluated");
}
