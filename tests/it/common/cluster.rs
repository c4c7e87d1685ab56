//! Apache Kafka brokers of a test's own (authentication, three-node failover), started with the
//! project's `ops/kafka.sh` from the same cached modules as the stack, on free ports, with data
//! under the test's target directory. Every node is killed when the cluster is dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub struct Cluster {
    pub dir: PathBuf,
    pub nodes: u32,
    /// Node n listens on `base_port + 2(n-1)`, its controller on the next port.
    pub base_port: u16,
}

fn kafka_sh(args: &[&str]) -> std::process::Output {
    Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/ops/kafka.sh"))
        .args(args)
        .output()
        .expect("ops/kafka.sh runs")
}

fn run_kafka_sh(args: &[&str]) -> String {
    let out = kafka_sh(args);
    assert!(
        out.status.success(),
        "ops/kafka.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A run of `count` free ports on 127.0.0.1 (checked by binding each).
pub fn free_port_run(count: u16) -> u16 {
    use rand::Rng;
    loop {
        let base: u16 = rand::thread_rng().gen_range(20_000..40_000);
        if (base..base + count).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return base;
        }
    }
}

impl Cluster {
    /// Formats and starts `nodes` nodes, each with its server.properties followed by
    /// `extra(node)` (later lines win), and waits for all of them.
    pub fn start(
        name: &str,
        nodes: u32,
        extra_ports: u16,
        extra: &dyn Fn(u32, &Cluster) -> String,
        format_args: &[String],
    ) -> Cluster {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(super::unique(name));
        std::fs::create_dir_all(&dir).unwrap();
        let base_port = free_port_run(2 * nodes as u16 + extra_ports);
        let cluster = Cluster {
            dir,
            nodes,
            base_port,
        };
        for n in 1..=nodes {
            let node = cluster.node_dir(n);
            std::fs::create_dir_all(&node).unwrap();
            let mut props = run_kafka_sh(&[
                "properties",
                &n.to_string(),
                &nodes.to_string(),
                &base_port.to_string(),
                node.join("data").to_str().unwrap(),
            ]);
            props.push_str(&extra(n, &cluster));
            std::fs::write(node.join("server.properties"), props).unwrap();
            let mut args = vec!["start", node.to_str().unwrap()];
            args.extend(format_args.iter().map(String::as_str));
            run_kafka_sh(&args);
        }
        for n in 1..=nodes {
            cluster.wait(n);
        }
        cluster
    }

    pub fn node_dir(&self, n: u32) -> PathBuf {
        self.dir.join(format!("node-{n}"))
    }

    pub fn port(&self, n: u32) -> u16 {
        self.base_port + 2 * (n as u16 - 1)
    }

    /// A port after the nodes' own, for extra listeners (`i` from 0).
    pub fn extra_port(&self, i: u16) -> u16 {
        self.base_port + 2 * self.nodes as u16 + i
    }

    pub fn bootstrap(&self) -> String {
        (1..=self.nodes)
            .map(|n| format!("127.0.0.1:{}", self.port(n)))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn wait(&self, n: u32) {
        run_kafka_sh(&["wait", self.node_dir(n).to_str().unwrap(), "120"]);
    }

    /// SIGKILL node `n`.
    pub fn kill(&self, n: u32) {
        run_kafka_sh(&["kill", self.node_dir(n).to_str().unwrap()]);
    }

    /// SIGTERM node `n` (a controlled shutdown) and wait for it to exit.
    pub fn stop(&self, n: u32) {
        run_kafka_sh(&["stop", self.node_dir(n).to_str().unwrap()]);
    }

    /// Starts node `n` again on its existing storage and waits for it.
    pub fn restart(&self, n: u32) {
        run_kafka_sh(&["start", self.node_dir(n).to_str().unwrap()]);
        self.wait(n);
    }

    pub fn running(&self, n: u32) -> bool {
        kafka_sh(&["pid", self.node_dir(n).to_str().unwrap()])
            .status
            .success()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in 1..=self.nodes {
            let _ = kafka_sh(&["kill", self.node_dir(n).to_str().unwrap()]);
        }
    }
}

/// Runs one of Kafka's own command-line tools (`ops/kafka.sh tool CLASS ...`) and returns its
/// standard output; panics with its error output when it fails.
pub fn kafka_tool(class: &str, args: &[&str]) -> String {
    let mut all = vec!["tool", class];
    all.extend_from_slice(args);
    run_kafka_sh(&all)
}

/// Waits until `check` holds, polling every 250 ms; panics with `what` after `timeout`.
pub async fn eventually(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let started = std::time::Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < timeout,
            "{what}: not within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
