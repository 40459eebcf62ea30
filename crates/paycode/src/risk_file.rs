//! Risk rule files for `serve --risk-rules FILE` and `paycode admin risk set|try FILE`: a JSON
//! list of rules, or TOML with one `[[rule]]` table per rule, in the same camelCase keys (see
//! the acquirer's `risk` module for the kinds and their parameters):
//!
//! ```toml
//! [[rule]]
//! id = "buyer-burst"
//! kind = "CUSTOMER_VELOCITY"
//! windowMinutes = 10
//! max = 5
//! code = "PAYMENT_COUNT_EXCEED_LIMIT"
//! ```
//!
//! This module only turns the file into the JSON list; the acquirer validates it whole and
//! names the rule and field of the first error.

use anyhow::{Context, bail};
use std::path::Path;

/// The rules of `path` as the JSON list the acquirer takes.
pub fn rules_json(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the risk rules file {}", path.display()))?;
    let is_toml = path.extension().is_some_and(|e| e == "toml");
    if !is_toml {
        let list: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not JSON (or name it .toml)", path.display()))?;
        if !list.is_array() {
            bail!("{}: a JSON rules file is a list of rules", path.display());
        }
        return Ok(text);
    }
    let doc: toml::Table =
        toml::from_str(&text).with_context(|| format!("{}: not valid TOML", path.display()))?;
    if let Some(key) = doc.keys().find(|k| *k != "rule") {
        bail!(
            "{}: unknown top-level key {key:?}; each rule is a [[rule]] table",
            path.display()
        );
    }
    let rules = match doc.get("rule") {
        None => Vec::new(),
        Some(toml::Value::Array(list)) => list.clone(),
        Some(_) => bail!("{}: `rule` must be [[rule]] tables", path.display()),
    };
    let json = serde_json::to_string(&rules).context("rules as JSON")?;
    Ok(json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn toml_and_json_files_become_the_same_list_and_mistakes_are_named() {
        let (_d, toml_path) = file(
            "rules.toml",
            "[[rule]]\nid = \"a\"\nkind = \"CUSTOMER_VELOCITY\"\nwindowMinutes = 10\nmax = 5\n\n\
             [[rule]]\nid = \"b\"\nkind = \"UNUSUAL_AMOUNT\"\nscope = \"MCC\"\nminHistory = 3\nfactor = 2.5\n",
        );
        let got: serde_json::Value =
            serde_json::from_str(&rules_json(&toml_path).unwrap()).unwrap();
        assert_eq!(
            got,
            serde_json::json!([
                {"id": "a", "kind": "CUSTOMER_VELOCITY", "windowMinutes": 10, "max": 5},
                {"id": "b", "kind": "UNUSUAL_AMOUNT", "scope": "MCC", "minHistory": 3, "factor": 2.5}
            ])
        );
        let (_d, json_path) = file("rules.json", r#"[{"id": "a", "kind": "CODE_REPLAY"}]"#);
        assert_eq!(
            rules_json(&json_path).unwrap(),
            r#"[{"id": "a", "kind": "CODE_REPLAY"}]"#
        );
        let (_d, bad) = file("rules.toml", "[[rules]]\nid = \"a\"\n");
        let e = format!("{:#}", rules_json(&bad).unwrap_err());
        assert!(e.contains("unknown top-level key \"rules\""), "{e}");
        let (_d, bad) = file("rules.json", r#"{"id": "a"}"#);
        let e = format!("{:#}", rules_json(&bad).unwrap_err());
        assert!(e.contains("a JSON rules file is a list"), "{e}");
    }
}
