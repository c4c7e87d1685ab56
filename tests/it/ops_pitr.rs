//! ops/pitr-drill.sh: base backup + WAL archive, recovery to a timestamp, poster restart: the
//! ledger converges to the one before the disaster.

#[test]
fn pitr_drill_recovers_to_a_timestamp_and_replays_to_the_same_ledger() {
    let out = std::process::Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/ops/pitr-drill.sh"))
        .arg("300")
        .env("LEDGERLINE_BIN", env!("CARGO_BIN_EXE_ledgerline"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("identical to the ledger before the disaster"),
        "{stdout}"
    );
    let recovered = stdout
        .lines()
        .find(|l| l.contains("recovered to T"))
        .expect("recovery line");
    let before = stdout
        .lines()
        .find(|l| l.contains("entries before the disaster"))
        .expect("before line");
    assert_ne!(
        recovered.split_whitespace().nth(3),
        before.split_whitespace().next(),
        "the recovery target must lie between the two slices: {recovered} / {before}"
    );
    // The measured RTO, and an RPO of nothing lost: what the database lost, Kafka brought back.
    let rto: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RTO: "))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .expect("an RTO line with seconds");
    assert!(rto > 0.0, "{stdout}");
    let rpo = stdout
        .lines()
        .find(|l| l.starts_with("RPO: "))
        .expect("an RPO line");
    let numbers: Vec<i64> = rpo
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    assert_eq!(numbers.len(), 3, "{rpo}");
    assert!(numbers[0] > 0, "the disaster lost entries: {rpo}");
    assert_eq!(
        numbers[1], numbers[0],
        "the replay brought them all back: {rpo}"
    );
    assert_eq!(numbers[2], 0, "{rpo}");
}
