//! The image builds with the toolchain the project is built with: rust-toolchain.toml pins it,
//! ops/Dockerfile's build stage uses the same version, Cargo.toml's rust-version names it, and
//! .dockerignore keeps build output and the local stack's secrets out of the build context.

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The quoted value of `key = "..."` in a TOML file's text.
fn toml_value(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix(key)?
                .trim()
                .strip_prefix('=')?
                .trim()
                .strip_prefix('"')?
                .strip_suffix('"')
                .map(str::to_string)
        })
        .unwrap_or_else(|| panic!("no {key} = \"...\""))
}

#[test]
fn toolchain_dockerfile_and_rust_version_agree() {
    let pinned = toml_value(&read("rust-toolchain.toml"), "channel");
    let rust_version = toml_value(&read("Cargo.toml"), "rust-version");
    assert!(
        pinned.starts_with(&format!("{rust_version}.")) || pinned == rust_version,
        "Cargo.toml rust-version {rust_version} is the pinned toolchain {pinned}"
    );
    let dockerfile = read("ops/Dockerfile");
    let from = dockerfile
        .lines()
        .find(|l| l.starts_with("FROM rust:"))
        .expect("a rust build stage");
    assert!(
        from.starts_with(&format!("FROM rust:{pinned}-")),
        "ops/Dockerfile builds with {pinned}: {from}"
    );
    // What this test runs under is the pinned toolchain.
    let rustc = std::process::Command::new(std::env::var("RUSTC").unwrap_or("rustc".into()))
        .arg("--version")
        .current_dir(ROOT)
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&rustc.stdout).to_string();
    assert!(
        version.starts_with(&format!("rustc {pinned} ")),
        "{version}"
    );
}

#[test]
fn the_build_context_leaves_out_build_output_and_secrets() {
    let ignored: Vec<String> = read(".dockerignore")
        .lines()
        .map(|l| l.trim().trim_end_matches('/').to_string())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for needed in ["target", ".stack", "backups", ".git"] {
        assert!(
            ignored.iter().any(|i| i == needed),
            ".dockerignore leaves out {needed}"
        );
    }
    // The stack's env file (passwords) lives in .stack/ unless told otherwise.
    let lib = read("ops/lib.sh");
    assert!(
        lib.contains("LEDGERLINE_STACK_DIR:-$LEDGERLINE_ROOT/.stack}"),
        "ops/lib.sh keeps the stack's state in .stack/"
    );
}
