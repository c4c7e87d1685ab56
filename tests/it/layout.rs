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

/// The README's layout map names every file and folder under `src/` (by its name without
/// `.rs`; `mod.rs` is its folder's), so a new module cannot go unmapped.
#[test]
fn the_readme_layout_names_every_source_file() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let start = readme
        .find("## Layout")
        .expect("README has a Layout section");
    let map = &readme[start..];
    let map = &map[..map[3..].find("\n## ").map_or(map.len(), |i| i + 3)];
    let mut unnamed = Vec::new();
    let mut seen = 0;
    let mut dirs = vec![root.join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path.clone());
            }
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let name = name.strip_suffix(".rs").unwrap_or(&name).to_string();
            seen += 1;
            if name != "mod" && !map.contains(&name) {
                unnamed.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    assert!(seen > 100, "only {seen} entries under src/");
    assert!(
        unnamed.is_empty(),
        "not in the README's layout: {unnamed:?}"
    );
}
