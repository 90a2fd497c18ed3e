//! Tier 1: `src/decide` and `src/desired` stay pure. Decisions take the observed state and the time as inputs;
//! a decision that called the API server, spawned a task or read the clock could not be
//! tested with plain data and could not be replayed. This test reads the sources and fails
//! if a file under `src/decide` or `src/desired` names a kube client, tokio, or a clock.

use std::path::{Path, PathBuf};

/// What a pure decision must not name, and why.
const FORBIDDEN: &[(&str, &str)] = &[
    (
        "kube::",
        "a kube client or runtime (decisions get plain data)",
    ),
    ("tokio", "an async runtime (decisions do not wait)"),
    ("::now(", "the clock (the time is an input)"),
    ("std::env", "the process environment (settings are inputs)"),
    ("std::fs", "the file system (decisions get plain data)"),
    ("std::net", "the network (decisions get plain data)"),
];

fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/decide is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The lines of `source` that name something forbidden, skipping comments.
fn violations(source: &str) -> Vec<(usize, &'static str, &'static str)> {
    source
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim_start().starts_with("//"))
        .flat_map(|(number, line)| {
            FORBIDDEN
                .iter()
                .filter(move |(word, _)| line.contains(word))
                .map(move |(word, why)| (number + 1, *word, *why))
        })
        .collect()
}

#[test]
fn decisions_use_no_client_no_runtime_and_no_clock() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src.join("decide"), &mut files);
    sources(&src.join("desired"), &mut files);
    assert!(files.len() >= 7, "found only {files:?} under {src:?}");
    let mut problems = Vec::new();
    for file in &files {
        let source = std::fs::read_to_string(file).expect("a source file is readable");
        for (line, word, why) in violations(&source) {
            problems.push(format!("{}:{line} names `{word}`: {why}", file.display()));
        }
    }
    assert!(
        problems.is_empty(),
        "src/decide must stay pure:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_check_catches_what_it_forbids() {
    let impure = "use kube::Api;\nlet now = jiff::Timestamp::now();\ntokio::spawn(x);\n// tokio in a comment is fine\n";
    let found: Vec<&str> = violations(impure).iter().map(|(_, w, _)| *w).collect();
    assert_eq!(found, ["kube::", "::now(", "tokio"]);
}
