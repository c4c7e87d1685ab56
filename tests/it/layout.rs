//! The source tree's shape: no import circle anywhere in `src/` (`ops/module-graph.py` draws
//! the module graph from the imports and lists its strongly connected sets), every source file
//! on the layout map, and a README that fits a page with links that lead somewhere.

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

/// The layout map (docs/ARCHITECTURE.md) names every file and folder under `src/` (by its name without
/// `.rs`; `mod.rs` is its folder's), so a new module cannot go unmapped.
#[test]
fn the_layout_map_names_every_source_file() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md")).unwrap();
    let start = readme
        .find("## Layout")
        .expect("docs/ARCHITECTURE.md has a Layout section");
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
        "not in the layout map of docs/ARCHITECTURE.md: {unnamed:?}"
    );
}

/// The README fits a page (at most 300 lines), and every relative link of the README and of
/// `docs/` leads to a file that exists and, with a `#fragment`, to one of its headings (by
/// GitHub's rule for anchors).
#[test]
fn the_readme_fits_a_page_and_every_link_resolves() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(lines <= 300, "README.md has {lines} lines");
    let mut pages = vec![root.join("README.md"), root.join("SECURITY.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        for target in markdown_links(&text) {
            if target.starts_with("http://") || target.starts_with("https://") {
                continue;
            }
            checked += 1;
            let (file, fragment) = target.split_once('#').unwrap_or((&target, ""));
            let path = if file.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap().join(file)
            };
            let name = page.strip_prefix(root).unwrap().display().to_string();
            if !path.exists() {
                broken.push(format!("{name}: {target} (no such file)"));
            } else if !fragment.is_empty() && path.extension().is_some_and(|e| e == "md") {
                let headings = std::fs::read_to_string(&path).unwrap();
                if !headings
                    .lines()
                    .any(|l| l.starts_with('#') && anchor(l.trim_start_matches('#')) == fragment)
                {
                    broken.push(format!("{name}: {target} (no such heading)"));
                }
            }
        }
    }
    assert!(checked > 20, "only {checked} links found");
    assert!(broken.is_empty(), "broken links: {broken:#?}");
}

/// The targets of `[text](target)` links.
fn markdown_links(text: &str) -> Vec<String> {
    text.split("](")
        .skip(1)
        .filter_map(|rest| rest.split_once(')').map(|(t, _)| t.to_string()))
        .filter(|t| !t.contains(' '))
        .collect()
}

/// GitHub's anchor of a heading: lower case, spaces to hyphens, other punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}
