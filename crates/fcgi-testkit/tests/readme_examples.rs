//! The top-level README's Rust code is compiled code: every ```rust block in
//! README.md must be, byte for byte, one of `crates/fcgi/examples/*.rs`,
//! which `cargo test` builds. Edit the example and paste it into the README.

use std::fs;
use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The contents of every fenced block opened with ```rust (any attributes).
fn rust_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match current.as_mut() {
            None if line.trim_start().starts_with("```rust") => current = Some(String::new()),
            None => {}
            Some(_) if line.trim_start().starts_with("```") => blocks.push(current.take().unwrap()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    assert!(
        current.is_none(),
        "README.md: a ```rust block is never closed"
    );
    blocks
}

#[test]
fn every_readme_rust_block_is_a_compiled_example() {
    let root = workspace_root();
    let readme = fs::read_to_string(root.join("README.md")).expect("README.md");
    let examples_dir = root.join("crates/fcgi/examples");
    let examples: Vec<(PathBuf, String)> = fs::read_dir(&examples_dir)
        .expect("crates/fcgi/examples")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .map(|path| {
            let text = fs::read_to_string(&path).unwrap();
            (path, text)
        })
        .collect();
    let blocks = rust_blocks(&readme);
    assert!(
        blocks.len() >= 2,
        "README.md should show the blocking and the async example, found {} rust blocks",
        blocks.len()
    );
    for block in &blocks {
        let first_line = block.lines().next().unwrap_or_default();
        assert!(
            examples.iter().any(|(_, text)| text == block),
            "README.md: the rust block starting with {first_line:?} is not one of \
             crates/fcgi/examples/*.rs byte for byte; copy the example file into the README"
        );
    }
}

#[test]
fn rust_blocks_are_found_with_their_exact_text() {
    let markdown = "text\n```rust\nfn a() {}\n```\n```sh\nls\n```\n```rust,no_run\nb\n\nc\n```\n";
    assert_eq!(
        rust_blocks(markdown),
        vec!["fn a() {}\n".to_string(), "b\n\nc\n".to_string()]
    );
}
