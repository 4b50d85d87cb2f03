//! The server's modules import downward only: the socket layer knows no backend, and neither
//! backend knows the hub above it or the other backend. Read from the source, so that a new
//! `use` pointing up fails here rather than in review.

use std::path::{Path, PathBuf};

/// The Rust files of `dir` (a file or a folder, searched recursively).
fn sources(dir: &Path) -> Vec<PathBuf> {
    if dir.is_file() {
        return vec![dir.to_path_buf()];
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("reading the source folder") {
        let path = entry.expect("a folder entry").path();
        if path.is_dir() {
            files.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// Fails if any file of `module` names one of `forbidden` (paths like `crate::hub`).
fn assert_imports_none(module: &str, forbidden: &[&str]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(module);
    let files = sources(&root);
    assert!(!files.is_empty(), "no sources found for {module}");
    for file in files {
        let text = std::fs::read_to_string(&file).expect("reading a source file");
        for path in forbidden {
            assert!(!text.contains(path), "{} names {path}, which sits above it or beside it", file.display());
        }
    }
}

#[test]
fn the_socket_layer_knows_no_backend() {
    assert_imports_none("sockets.rs", &["crate::hub", "crate::redis", "crate::memory", "Matchmaker"]);
    assert_imports_none("outbox.rs", &["crate::hub", "crate::redis", "crate::memory", "crate::sockets"]);
}

#[test]
fn backends_push_into_the_socket_layer_and_never_call_up() {
    assert_imports_none("memory.rs", &["crate::hub", "crate::redis"]);
    assert_imports_none("redis", &["crate::hub", "crate::memory", "Matchmaker::"]);
}
