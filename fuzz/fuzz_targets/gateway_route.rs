//! The gateway's path decoding and routing: whatever the request path, a
//! resolved script or static file lies inside the document root, and no
//! NUL, backslash, empty, `.` or `..` segment survives normalisation; with
//! hidden files denied, no resolved segment starts with a dot (but
//! `.well-known`).
#![no_main]

use std::path::{Component, Path};
use std::sync::OnceLock;

use fcgi::gateway::{Gateway, Route};
use libfuzzer_sys::fuzz_target;

struct Tree {
    _dir: tempfile::TempDir,
    gateway: Gateway,
}

/// A document root with scripts, static files, directories, an index, a
/// hidden file and a symbolic link inside the root.
fn tree() -> &'static Tree {
    static TREE: OnceLock<Tree> = OnceLock::new();
    TREE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (path, content) in [
            ("index.php", "<?php"),
            ("a/b.php", "<?php"),
            ("a/c.txt", "text"),
            ("a/d/index.php", "<?php"),
            ("uploads/x.jpg", "jpeg"),
            (".env", "SECRET=1"),
            (".well-known/acme", "token"),
            ("e%2e/f.php", "<?php"),
        ] {
            let file = root.join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, content).unwrap();
        }
        std::os::unix::fs::symlink(root.join("a"), root.join("link")).unwrap();
        let client = fcgi::AsyncClient::new("127.0.0.1:9").unwrap();
        let gateway = Gateway::builder(root).build(client).unwrap();
        Tree { _dir: dir, gateway }
    })
}

fn assert_inside(root: &Path, path: &Path) {
    let rest = path.strip_prefix(root).unwrap_or_else(|_| panic!("{path:?} outside {root:?}"));
    for component in rest.components() {
        match component {
            Component::Normal(name) => {
                let name = name.to_str().unwrap();
                assert!(!name.contains('\0') && !name.contains('\\'), "{path:?}");
                assert!(!name.starts_with('.') || name == ".well-known", "hidden {path:?}");
            }
            other => panic!("{other:?} in {path:?}"),
        }
    }
}

fuzz_target!(|path: &str| {
    let tree = tree();
    let root = tree.gateway.document_root();
    match tree.gateway.resolve(path) {
        Ok(Route::Script(script)) => {
            assert_inside(root, &script.filename);
            assert!(script.script_name.ends_with(".php"), "{script:?}");
            assert!(script.script_name.starts_with('/'), "{script:?}");
            assert_eq!(root.join(&script.script_name[1..]), script.filename);
            assert!(script.path_info.is_empty() || script.path_info.starts_with('/'));
            for text in [&script.script_name, &script.path_info] {
                assert!(!text.contains('\0') && !text.contains('\\'), "{script:?}");
                assert!(!text.split('/').any(|s| s == "." || s == ".."), "{script:?}");
            }
        }
        Ok(Route::Static(file)) => {
            assert_inside(root, &file);
            assert!(!file.to_string_lossy().ends_with(".php"), "{file:?} served as a file");
        }
        Ok(Route::AddSlash | Route::NotFound) | Err(_) => {}
    }
});
