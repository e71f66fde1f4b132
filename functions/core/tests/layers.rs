//! The module layers of txbridge-core and of txbridge-jose below it (their README.md and lib.rs):
//! a module uses only modules of lower layers of its own crate (and core any of txbridge-jose).
//! Read from the sources, so a new `use crate::...` that points upwards or sideways fails here,
//! not in review.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;

/// txbridge-core's layers, bottom first. Modules of one layer do not use each other.
const CORE: &[&[&str]] = &[
    &["identity", "logline"],
    &["condition", "subscriber"],
    &["policy"],
    &["workload"],
    &["config"],
    &["subject"],
    &["error"],
    &["form"],
    &["mint", "request"],
    &["explain", "replace"],
    &["service"],
    &["handler", "startup"],
];

/// txbridge-jose's layers, bottom first.
const JOSE: &[&[&str]] = &[
    &["glob", "ports", "trace", "urls"],
    &["alg", "encoding", "error"],
    &["crypto"],
    &["jws"],
    &["jwk"],
    &["claims"],
    &["keys"],
    &["txtoken"],
    &["reqwest", "workers"],
];

fn layer_of(layers: &[&[&str]], module: &str) -> Option<usize> {
    layers.iter().position(|l| l.contains(&module))
}

/// Every `crate::<module>` a source text names, `use crate::{a, b::c}` groups included.
fn used_modules(text: &str) -> Vec<String> {
    let mut used = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        // `$crate::` and `txbridge_crate::`-like names are not this crate's paths.
        if text[..i].ends_with(|c: char| c == '$' || c == '_' || c.is_ascii_alphanumeric()) {
            continue;
        }
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            used.extend(group.split(',').filter_map(|item| {
                let name = item.trim().split("::").next()?.trim();
                (!name.is_empty()).then(|| name.to_owned())
            }));
        } else {
            let end = rest
                .find(|c: char| !(c == '_' || c.is_ascii_alphanumeric()))
                .unwrap_or(rest.len());
            used.push(rest[..end].to_owned());
        }
    }
    used
}

/// The module a source file belongs to: `src/<m>.rs`, `src/<m>/...`, `src/<m>_tests.rs`.
fn module_of(path: &Path, src: &Path) -> String {
    let rel = path.strip_prefix(src).unwrap_or(path);
    let first = rel
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = first.trim_end_matches(".rs");
    stem.trim_end_matches("_tests").to_owned()
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_module_uses_one_above_it() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    check_layers(&crates.join("core/src"), CORE);
    check_layers(&crates.join("jose/src"), JOSE);
}

fn check_layers(src: &Path, layers: &[&[&str]]) {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut wrong = Vec::new();
    for file in &files {
        let module = module_of(file, src);
        if module == "lib" {
            continue;
        }
        let Some(own) = layer_of(layers, &module) else {
            wrong.push(format!(
                "{}: module `{module}` is in no layer",
                file.display()
            ));
            continue;
        };
        *seen.entry(module.clone()).or_default() += 1;
        let text = std::fs::read_to_string(file).unwrap();
        for used in used_modules(&text) {
            if used == module {
                continue;
            }
            match layer_of(layers, &used) {
                Some(l) if l < own => {}
                Some(_) => wrong.push(format!(
                    "{}: `{module}` uses `{used}`, which is not below it",
                    file.display()
                )),
                None => wrong.push(format!(
                    "{}: `{module}` uses `crate::{used}`, a module in no layer",
                    file.display()
                )),
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // Every module of the layers exists (the list is not stale).
    for module in layers.iter().flat_map(|l| l.iter()) {
        assert!(
            seen.contains_key(*module),
            "layer module `{module}` has no source"
        );
    }
}

#[test]
fn the_checker_sees_groups_and_paths() {
    let text = "use crate::jose::{self, X};\nuse crate::{keys, urls::check_url};\nlet y = crate::claims::check(); $crate::no; txbridge_crate::no;";
    assert_eq!(used_modules(text), ["jose", "keys", "urls", "claims"]);
}
