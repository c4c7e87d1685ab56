//! The built-in status page at `/`, rendered by headless Chromium: it shows the partitions with
//! their checkpoints and lag, the counters and the rejections, refreshed by its own script. The
//! screenshot is kept in artifacts/status-page.png.

use crate::common;

use std::process::Command;
use std::time::Duration;

use common::{free_port, Ledger};
use ledgerline::generator::{generate, GeneratorSettings};

fn chromium(args: &[&str], profile: &std::path::Path) -> std::process::Output {
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1280,800",
            "--virtual-time-budget=6000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("chromium (Debian package) is installed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_shows_partitions_counters_and_rejections() {
    let ledger = Ledger::new(50, 2).await;
    let messages = generate(&GeneratorSettings {
        count: 400,
        accounts: 50,
        invalid_share: 0.1,
        duplicate_share: 0.05,
        key_prefix: common::unique("s"),
        ..Default::default()
    });
    ledger.produce(&messages).await;
    let port = free_port();
    let _poster = ledger.poster(port, &[]);
    ledger.wait_drained(Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(6)).await; // one lag update after the drain

    let profile =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(common::unique("chromium"));
    let url = format!("http://127.0.0.1:{port}/");
    let dom = tokio::task::spawn_blocking({
        let (url, profile) = (url.clone(), profile.clone());
        move || chromium(&["--dump-dom", &url], &profile)
    })
    .await
    .unwrap();
    let html = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    // Rendered by the page's script from /status, not present in the static HTML.
    for partition in 0..2 {
        assert!(
            html.contains(&format!("{} / {partition}", ledger.topic)),
            "partition {partition} row missing:\n{html}"
        );
    }
    assert!(html.contains(">yes<"), "the poster reports ready:\n{html}");
    assert!(
        html.contains("id=\"holds\">0<"),
        "no open holds, from /status:\n{html}"
    );
    assert!(
        html.contains("UNBALANCED") || html.contains("MALFORMED"),
        "rejections by reason:\n{html}"
    );
    let posted = messages
        .iter()
        .filter(|m| m.expected == ledgerline::generator::Expected::Posted)
        .count();
    assert!(
        html.contains(&format!(">{posted}<")),
        "posted count {posted}:\n{html}"
    );

    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let out = tokio::task::spawn_blocking(move || {
        chromium(
            &[&format!("--screenshot={}", shot.display()), &url],
            &profile,
        )
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(artifacts.join("status-page.png")).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real screenshot ({} bytes)",
        png.len()
    );
}
