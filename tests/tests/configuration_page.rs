//! `docs/configuration.md` against the code, in both directions: every `ORBIT_*` variable that
//! a process, a script, the benchmark or the test harness reads is on the page, and every
//! variable on the page is read somewhere. A setting added without its row, or a row left behind
//! by a setting that went, fails `just test`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use orbit_e2e::workspace_root;

/// Where the code that reads settings lives (folders are searched whole, `target` and
/// `node_modules` left out).
const CODE: &[&str] = &[
    "crates",
    "functions",
    "sinks",
    "stack.toml",
    "gateway",
    "bridge-kafka",
    "deploy/probe",
    "bench/src",
    "sdk/python/src",
    "bench/gpu.sh",
    "tests/src",
    "tests/tests/conformance.rs",
    "scripts",
    "justfile",
    "Dockerfile",
];

fn files_under(path: &Path, into: &mut Vec<PathBuf>) {
    if path.is_file() {
        into.push(path.to_path_buf());
        return;
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let skipped = path
            .file_name()
            .is_some_and(|name| name == "target" || name == "node_modules");
        if !skipped {
            files_under(&path, into);
        }
    }
}

/// The text of every file of [`CODE`].
fn code() -> String {
    let root = workspace_root();
    let mut files = Vec::new();
    for place in CODE {
        files_under(&root.join(place), &mut files);
    }
    files
        .iter()
        .filter_map(|file| std::fs::read_to_string(file).ok())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `ORBIT_...` name in `text`. One that ends with `_` is a prefix written before a suffix
/// (`ORBIT_KAFKA_PROP_` + a property, `ORBIT_FETCH_*` in prose).
fn orbit_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut at = 0;
    while let Some(found) = text[at..].find("ORBIT_") {
        let start = at + found;
        let boundary = start == 0 || {
            let before = bytes[start - 1];
            !(before.is_ascii_alphanumeric() || before == b'_')
        };
        let mut end = start + "ORBIT_".len();
        while end < bytes.len()
            && (bytes[end].is_ascii_uppercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'_')
        {
            end += 1;
        }
        let name = &text[start..end];
        if boundary && name.len() > "ORBIT_".len() {
            names.insert(name.to_string());
        }
        at = end.max(start + 1);
    }
    names
}

/// The names in the first column of the page's tables: `ORBIT_X`, or a family such as
/// `ORBIT_REPLICAS_<NAME>`, and the few others (`RUST_LOG`).
fn documented() -> BTreeSet<String> {
    let page =
        std::fs::read_to_string(workspace_root().join("docs/configuration.md")).unwrap_or_default();
    let mut names = BTreeSet::new();
    for line in page.lines().filter(|line| line.starts_with("| `")) {
        let first = line.split('|').nth(1).unwrap_or_default();
        for quoted in first.split('`').skip(1).step_by(2) {
            let is_name = quoted
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || "_<>".contains(c));
            if is_name && !quoted.is_empty() {
                names.insert(quoted.to_string());
            }
        }
    }
    names
}

/// Whether `name` is one of `documented`: itself, a member of a family (`ORBIT_REPLICAS_<NAME>`),
/// or, for a prefix, the start of a documented name.
fn is_documented(name: &str, documented: &BTreeSet<String>) -> bool {
    if name.ends_with('_') {
        return documented.iter().any(|entry| entry.starts_with(name));
    }
    documented.contains(name)
        || documented.iter().any(|entry| {
            entry
                .split_once('<')
                .is_some_and(|(prefix, _)| name.starts_with(prefix))
        })
}

#[test]
fn every_setting_the_code_reads_is_documented() {
    let documented = documented();
    assert!(
        documented.len() > 50,
        "docs/configuration.md lists {} settings",
        documented.len()
    );
    let missing: Vec<String> = orbit_names(&code())
        .into_iter()
        .filter(|name| !is_documented(name, &documented))
        .collect();
    assert!(
        missing.is_empty(),
        "read by the code but not in docs/configuration.md: {missing:?}"
    );
}

#[test]
fn every_documented_setting_is_read_by_the_code() {
    let code = code();
    let stale: Vec<String> = documented()
        .into_iter()
        .filter(|entry| {
            let name = entry
                .split_once('<')
                .map_or(entry.as_str(), |(prefix, _)| prefix);
            !code.contains(name.trim_end_matches('_'))
        })
        .collect();
    assert!(
        stale.is_empty(),
        "in docs/configuration.md but read nowhere: {stale:?}"
    );
}

#[test]
fn names_are_read_whole() {
    let names = orbit_names("x ORBIT_A_B=1 \"ORBIT_KAFKA_PROP_\" MY_ORBIT_X ORBIT_");
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["ORBIT_A_B", "ORBIT_KAFKA_PROP_"]
    );
}
