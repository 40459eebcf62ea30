//! The core's architecture invariants, checked from its own files: no I/O or async dependencies,
//! no serde, and no floating point anywhere in its source.

use std::path::Path;

#[test]
fn core_depends_on_no_io_async_or_serde_crate() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .unwrap()
        .split("\n[")
        .next()
        .unwrap();
    for banned in [
        "tokio", "axum", "reqwest", "sqlx", "rusqlite", "serde", "hyper", "chrono",
    ] {
        assert!(
            !deps.lines().any(|l| l.trim_start().starts_with(banned)),
            "paycode-core must not depend on {banned}"
        );
    }
}

#[test]
fn core_has_no_floating_point() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut checked = 0;
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap();
            for ty in ["f32", "f64"] {
                let found = code.match_indices(ty).any(|(i, _)| {
                    !code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_')
                        && !code[i + 3..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
                });
                assert!(
                    !found,
                    "{}:{}: floating point in the core: {line}",
                    path.display(),
                    n + 1
                );
            }
        }
        checked += 1;
    }
    assert!(checked >= 5);
}
