//! The layering rules, checked on the source: the shared layer names no feature, and a feature
//! names another feature only through that feature's `facade` module. Every module at the top
//! of `src/` is a feature unless it is listed in `SHARED` (fail-closed: a new folder is a
//! feature until someone decides otherwise here).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The shared layer's top-level modules.
const SHARED: &[&str] = &["pg", "writer", "launcher", "telemetry", "gucs", "errors", "clock"];
/// Not a layer: the crate root wires the layers together, and this test reads them.
const ROOT: &[&str] = &["lib", "layering"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The top-level modules: `src/x.rs` and `src/x/`.
fn modules() -> BTreeSet<String> {
    std::fs::read_dir(src())
        .expect("src/ is readable")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let path = e.path();
            let name = path.file_stem()?.to_str()?.to_string();
            (path.is_dir() || path.extension().is_some_and(|x| x == "rs")).then_some(name)
        })
        .collect()
}

/// Every `.rs` file of a top-level module.
fn files_of(module: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let file = src().join(format!("{module}.rs"));
    if file.is_file() {
        out.push(file);
    }
    let mut dirs = vec![src().join(module)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                out.push(path);
            }
        }
    }
    out
}

/// The code of a file without its comments (line comments, doc comments, block comments) and
/// string literals, so that prose and SQL text cannot hide or fake a path.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'r'
            && matches!(b.get(i + 1), Some(b'#' | b'"'))
            && (!ident_before(b, i) || (b[i - 1] == b'b' && !ident_before(b, i - 1)))
        {
            // A raw string: r"..." or r#"..."# (any number of #), no escapes inside.
            let hashes = b[i + 1..].iter().take_while(|c| **c == b'#').count();
            if b.get(i + 1 + hashes) != Some(&b'"') {
                out.push('r');
                i += 1;
                continue;
            }
            let close: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat_n(b'#', hashes)).collect();
            let body = i + 2 + hashes;
            i = b[body..].windows(close.len()).position(|w| w == close).map_or(b.len(), |p| body + p + close.len());
            out.push_str("\"\"");
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && (b.get(i + 2) == Some(&b'\'') || b.get(i + 1) == Some(&b'\\')) {
            // A character literal ('"', '\'', '\n'); a lifetime ('a) has no closing quote.
            let end = b[i + 2..].iter().take(10).position(|c| *c == b'\'').map_or(i + 1, |p| i + 2 + p + 1);
            out.push_str("' '");
            i = end;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// Whether the byte before `i` continues an identifier (so an `r` there is not a raw string's).
fn ident_before(b: &[u8], i: usize) -> bool {
    i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')
}

/// Every module a file names through the crate root, with the next path segment:
/// `crate::a::b` gives (a, b); `crate::{a::b, c}` gives (a, b) and (c, "").
fn crate_paths(code: &str) -> Vec<(String, String)> {
    let re = regex::Regex::new(
        r"(?:\bcrate|::booking_engine)\s*::\s*(\{[^}]*\}|[A-Za-z_][A-Za-z0-9_]*(?:\s*::\s*[A-Za-z_][A-Za-z0-9_]*)?)",
    )
    .expect("valid pattern");
    let mut out = Vec::new();
    for c in re.captures_iter(code) {
        let path = c[1].to_string();
        let parts: Vec<String> = if let Some(group) = path.strip_prefix('{') {
            group
                .trim_end_matches('}')
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect()
        } else {
            vec![path]
        };
        for p in parts {
            let mut segs = p.split("::").map(str::trim);
            let first = segs.next().unwrap_or_default().to_string();
            let second = segs.next().unwrap_or_default().trim_start_matches('{').to_string();
            out.push((first, second));
        }
    }
    out
}

/// The violations of the rules in the tree as it is.
fn violations() -> Vec<String> {
    let shared: BTreeSet<&str> = SHARED.iter().copied().collect();
    let modules = modules();
    let mut found = Vec::new();
    for module in modules.iter().cloned() {
        if ROOT.contains(&module.as_str()) {
            continue;
        }
        let is_shared = shared.contains(module.as_str());
        for file in files_of(&module) {
            let code = code_only(&std::fs::read_to_string(&file).expect("readable"));
            for (target, next) in crate_paths(&code) {
                // The crate root's own items (`crate::register_features`) are the root's, not a layer's.
                if target == module || !modules.contains(&target) || shared.contains(target.as_str()) {
                    continue;
                }
                let shown = file.strip_prefix(src()).unwrap_or(&file).display();
                if is_shared {
                    found.push(format!("{shown}: the shared layer names the feature `{target}`"));
                } else if next != "facade" {
                    found.push(format!("{shown}: names `{target}::{next}`, not `{target}::facade`"));
                }
            }
        }
    }
    found
}

#[test]
fn the_shared_layer_names_no_feature_and_features_meet_only_through_facades() {
    let found = violations();
    assert!(found.is_empty(), "layering violations:\n{}", found.join("\n"));
}

#[test]
fn the_check_sees_every_form_of_path() {
    let code = code_only(
        "use crate::delivery::settings;\n\
         use crate::{jobs::naming::runner_name, clock};\n\
         // crate::admin::api in a comment\n\
         let s = \"crate::admin::api in a string\";\n\
         let q = '\"'; let r = br#\"crate::admin::raw \"quoted\"\"#; fn f<'a>(x: &'a str) {}\n\
         crate :: security :: api::x();\n",
    );
    let paths = crate_paths(&code);
    assert!(paths.contains(&("delivery".into(), "settings".into())), "{paths:?}");
    assert!(paths.contains(&("jobs".into(), "naming".into())), "{paths:?}");
    assert!(paths.contains(&("clock".into(), String::new())), "{paths:?}");
    assert!(paths.contains(&("security".into(), "api".into())), "{paths:?}");
    assert!(!paths.iter().any(|(m, _)| m == "admin"), "comments and strings are not code: {paths:?}");
}

#[test]
fn an_unlisted_folder_counts_as_a_feature() {
    let modules = modules();
    for m in ["admin", "availability", "delivery", "jobs", "metrics", "security", "slot_store"] {
        assert!(modules.contains(m), "{m} is found");
        assert!(!SHARED.contains(&m), "{m} is a feature");
    }
    for m in SHARED {
        assert!(modules.contains(*m), "{m} exists");
    }
}
