//! Every `ledgerline ...` command in ops/RUNBOOK.md parses as a real command line of this
//! program, every `ops/...` script it names exists, and every alert has a section.

use clap::Parser;

#[test]
fn runbook_commands_are_real_commands() {
    let root = env!("CARGO_MANIFEST_DIR");
    let runbook = std::fs::read_to_string(format!("{root}/ops/RUNBOOK.md")).unwrap();
    let mut in_code = false;
    let mut checked = 0;
    for line in runbook.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if !in_code {
            continue;
        }
        // The command itself: without a trailing comment, redirection or pipe.
        let command = line
            .split(" #")
            .next()
            .unwrap()
            .split(" > ")
            .next()
            .unwrap()
            .split(" | ")
            .next()
            .unwrap()
            .trim();
        let words: Vec<&str> = command.split_whitespace().collect();
        match words.first() {
            Some(&"ledgerline") => {
                if let Err(e) = ledgerline::cli::Cli::try_parse_from(&words) {
                    panic!("RUNBOOK command `{command}` does not parse: {e}");
                }
                checked += 1;
            }
            Some(script) if script.starts_with("ops/") => {
                assert!(
                    std::path::Path::new(&format!("{root}/{script}")).exists(),
                    "{script} does not exist"
                );
                checked += 1;
            }
            _ => {}
        }
    }
    assert!(checked >= 15, "only {checked} commands found");
    // Every script named in prose exists too.
    for word in runbook.split(|c: char| c == '`' || c.is_whitespace()) {
        if word.starts_with("ops/") && word.ends_with(".sh") {
            assert!(
                std::path::Path::new(&format!("{root}/{word}")).exists(),
                "{word} does not exist"
            );
        }
    }
    let alerts = std::fs::read_to_string(format!("{root}/ops/prometheus/alerts.yml")).unwrap();
    let anchors: Vec<&str> = alerts
        .lines()
        .filter_map(|l| l.trim().strip_prefix("runbook_url: \"ops/RUNBOOK.md#"))
        .collect();
    let rules = alerts
        .lines()
        .filter(|l| l.trim().starts_with("- alert:"))
        .count();
    assert_eq!(
        anchors.len(),
        rules,
        "every alert has a runbook_url into ops/RUNBOOK.md"
    );
    for anchor in anchors {
        let anchor = anchor.trim_end_matches('"');
        let found = runbook
            .lines()
            .filter_map(|l| l.strip_prefix("## "))
            .any(|h| h.to_lowercase().replace(' ', "-") == anchor);
        assert!(found, "alert runbook link #{anchor} has no section");
    }
}
