//! The source tree's shape: no import circle anywhere in `src/` (`ops/module-graph.py` draws
//! the module graph from the imports and lists its strongly connected sets).

#[test]
fn no_module_imports_its_way_back_to_itself() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/ops/module-graph.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .output()
        .expect("python3 runs ops/module-graph.py");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(" 0 circles"), "{text}");
    // The graph is not empty: a parser that found nothing would find no circle either.
    let edges: usize = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .find(|w| w[1] == "edges,")
        .and_then(|w| w[0].parse().ok())
        .unwrap_or(0);
    assert!(edges > 200, "{text}");
}
