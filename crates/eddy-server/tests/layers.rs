//! The crate's layering, checked: every module imports only modules listed before it in
//! `lib.rs` (never through a crate-root re-export, which would hide the layer), files inside
//! a folder import each other without a circle, and no file or function outgrows its size.
//!
//! It reads `src/` as text: `use` trees and `crate::` / `super::` / `self::` paths in code
//! (comments, string literals and the `#[cfg(test)]` module at the end of a file are left
//! out).

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

/// Longest file, in lines of code before its tests.
const MAX_FILE_LINES: usize = 600;
/// Longest function, in lines.
const MAX_FN_LINES: usize = 80;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src/`, as a path relative to it (`reactor/read.rs`).
fn files() -> Vec<String> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, base, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(base).unwrap();
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(&src(), &src(), &mut out);
    out.sort();
    out
}

/// The text of a file with comments and string and char literals blanked out, and its
/// `#[cfg(test)]` module (always at the end) cut off.
fn code(rel: &str) -> String {
    let text = fs::read_to_string(src().join(rel)).unwrap();
    let at = [
        "#[cfg(test)]\nmod tests",
        "#[cfg(test)]\npub(crate) mod tests",
    ]
    .iter()
    .filter_map(|start| text.find(start))
    .min();
    let text = at.map_or(&text[..], |at| &text[..at]);
    strip(text)
}

fn strip(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            let end = rest.find('\n').unwrap_or(rest.len());
            i += end;
        } else if rest.starts_with("/*") {
            let end = rest.find("*/").map_or(rest.len(), |e| e + 2);
            out.extend(rest[..end].chars().filter(|c| *c == '\n'));
            i += end;
        } else if rest.starts_with('"') {
            let mut j = 1;
            while j < rest.len() && rest.as_bytes()[j] != b'"' {
                j += if rest.as_bytes()[j] == b'\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            out.extend(
                rest[..(j + 1).min(rest.len())]
                    .chars()
                    .filter(|c| *c == '\n'),
            );
            i += (j + 1).min(rest.len());
        } else if let Some(len) = char_literal(rest) {
            out.push_str("' '");
            i += len;
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The length of a char literal at the start of `s` (`'x'`, `'\n'`, `'{'`), not a lifetime.
fn char_literal(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if b.first() != Some(&b'\'') {
        return None;
    }
    if b.get(1) == Some(&b'\\') {
        return s[2..].find('\'').map(|e| e + 3);
    }
    let c = s[1..].chars().next()?;
    let after = 1 + c.len_utf8();
    (b.get(after) == Some(&b'\'')).then_some(after + 1)
}

/// The top-level modules as the crate docs' layer table lists them, lowest first (rows
/// `//! | N | `module` | …`), checked against the modules `lib.rs` declares.
fn layers() -> Vec<String> {
    let text = fs::read_to_string(src().join("lib.rs")).unwrap();
    let mut layers = Vec::new();
    for line in text.lines() {
        let Some(row) = line.strip_prefix("//! | ") else {
            continue;
        };
        let cells: Vec<&str> = row.split(" | ").collect();
        if let (Some(n), Some(module)) = (cells.first(), cells.get(1)) {
            if n.parse::<usize>() == Ok(layers.len()) {
                layers.push(module.trim_matches('`').to_string());
            }
        }
    }
    let declared: BTreeSet<String> = code("lib.rs")
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let name = line
                .strip_prefix("mod ")
                .or(line.strip_prefix("pub mod "))?;
            Some(name.trim_end_matches(';').trim().to_string())
        })
        .collect();
    let listed: BTreeSet<String> = layers.iter().cloned().collect();
    assert_eq!(
        listed, declared,
        "the layer table lists every module of lib.rs, once"
    );
    layers
}

/// Every path a file names, as its segments: `use` trees expanded, and inline paths.
fn paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = find_use(rest) {
        let tail = &rest[at..];
        let end = tail.find(';').unwrap_or(tail.len());
        let tree: String = tail[..end].split_whitespace().collect();
        let tree = tree.strip_prefix("use").unwrap_or(&tree);
        expand(tree, &mut Vec::new(), &mut out);
        rest = &tail[end..];
    }
    // Inline paths (`crate::sys::coarse_ms()`), wherever they are.
    for root in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(root) {
            let start = from + at;
            from = start + root.len();
            let before = code[..start].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let segs: Vec<String> = code[start..]
                .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .next()
                .unwrap_or("")
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            if segs.len() >= 2 {
                out.push(segs);
            }
        }
    }
    out
}

/// The next `use` keyword at the start of a statement.
fn find_use(code: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = code[from..].find("use ") {
        let start = from + at;
        let before = code[..start].trim_end().chars().next_back();
        if matches!(before, None | Some(';' | '{' | '}' | ')' | ']')) {
            return Some(start);
        }
        from = start + 4;
    }
    None
}

/// Expand a use tree (`crate::{a::b,c::{d,e}}`) into its paths.
fn expand(tree: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim_start_matches("::");
    match tree.find('{') {
        Some(open) if tree.ends_with('}') => {
            let head: Vec<String> = tree[..open]
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            let depth = prefix.len();
            prefix.extend(head);
            for part in split_top(&tree[open + 1..tree.len() - 1]) {
                expand(part, prefix, out);
            }
            prefix.truncate(depth);
        }
        _ => {
            let mut path = prefix.clone();
            let name = tree.split(" as ").next().unwrap_or(tree);
            path.extend(
                name.split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            );
            if !path.is_empty() {
                out.push(path);
            }
        }
    }
}

/// Split on the commas of the outermost level.
fn split_top(s: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts.into_iter().filter(|p| !p.is_empty()).collect()
}

/// The folder a file's module lives in (`reactor` for `reactor/read.rs` and
/// `reactor/mod.rs`; empty for root files) and its top-level module.
fn module_of(rel: &str) -> (String, String) {
    let parts: Vec<&str> = rel.split('/').collect();
    let top = parts[0].trim_end_matches(".rs").to_string();
    let dir = parts[..parts.len() - 1].join("/");
    (dir, top)
}

/// The file a path inside folder `dir` names: `dir/x.rs`, `dir/x/mod.rs`, or (an item of
/// the folder's own module) `dir/mod.rs`.
fn file_in(dir: &str, seg: &str, all: &BTreeSet<String>) -> String {
    for candidate in [format!("{dir}/{seg}.rs"), format!("{dir}/{seg}/mod.rs")] {
        if all.contains(&candidate) {
            return candidate;
        }
    }
    format!("{dir}/mod.rs")
}

#[test]
fn modules_import_only_lower_layers_and_files_form_no_circle() {
    let layers = layers();
    assert!(layers.len() > 10, "lib.rs lists the modules: {layers:?}");
    let rank = |m: &str| layers.iter().position(|l| l == m);
    let all: BTreeSet<String> = files().into_iter().collect();
    let mut problems = Vec::new();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for rel in all.iter().filter(|f| *f != "lib.rs") {
        let (dir, top) = module_of(rel);
        let is_mod = rel.ends_with("mod.rs");
        for path in paths(&code(rel)) {
            let target = match path[0].as_str() {
                "crate" => {
                    let Some(rank_to) = rank(&path[1]) else {
                        problems.push(format!(
                            "{rel}: `crate::{}` is not a module: import it from the module \
                             that owns it",
                            path[1..].join("::")
                        ));
                        continue;
                    };
                    if path[1] != top {
                        if rank_to >= rank(&top).unwrap() {
                            problems.push(format!(
                                "{rel}: imports `{}` from a higher layer ({} is layer {}, {} \
                                 is layer {rank_to})",
                                path.join("::"),
                                top,
                                rank(&top).unwrap(),
                                path[1]
                            ));
                        }
                        continue;
                    }
                    // Inside its own folder: which file?
                    match path.get(2) {
                        Some(seg) if !dir.is_empty() => file_in(&dir, seg, &all),
                        _ => continue,
                    }
                }
                "super" if !is_mod && !dir.is_empty() => file_in(&dir, &path[1], &all),
                "self" if is_mod => file_in(&dir, &path[1], &all),
                _ => continue,
            };
            if &target != rel && all.contains(&target) {
                edges.entry(rel.clone()).or_default().insert(target);
            }
        }
    }
    if let Some(circle) = find_circle(&edges) {
        problems.push(format!(
            "files import each other in a circle: {}",
            circle.join(" -> ")
        ));
    }
    assert!(
        problems.is_empty(),
        "layering broken:\n{}",
        problems.join("\n")
    );
}

fn find_circle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        stack.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            match state.get(next.as_str()) {
                Some(1) => {
                    let from = stack.iter().position(|n| n == next).unwrap();
                    let mut circle = stack[from..].to_vec();
                    circle.push(next.clone());
                    return Some(circle);
                }
                Some(_) => {}
                None => {
                    if let Some(circle) = visit(next, edges, state, stack) {
                        return Some(circle);
                    }
                }
            }
        }
        stack.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        if !state.contains_key(node.as_str()) {
            if let Some(circle) = visit(node, edges, &mut state, &mut Vec::new()) {
                return Some(circle);
            }
        }
    }
    None
}

#[test]
fn no_file_or_function_outgrows_its_size() {
    let mut problems = Vec::new();
    for rel in files() {
        let code = code(&rel);
        let lines: Vec<&str> = code.lines().collect();
        if lines.len() > MAX_FILE_LINES {
            problems.push(format!(
                "{rel}: {} lines (at most {MAX_FILE_LINES})",
                lines.len()
            ));
        }
        for (start, line) in lines.iter().enumerate() {
            let Some(name) = fn_name(line) else { continue };
            if let Some(len) = body_lines(&lines[start..]) {
                if len > MAX_FN_LINES {
                    problems.push(format!(
                        "{rel}:{}: fn {name} is {len} lines (at most {MAX_FN_LINES})",
                        start + 1
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "too long:\n{}", problems.join("\n"));
}

/// The name of a function whose definition starts on this line.
fn fn_name(line: &str) -> Option<&str> {
    let at = line.find("fn ")?;
    let before = line[..at].trim();
    let words_ok = before.split_whitespace().all(|w| {
        matches!(w, "pub" | "const" | "unsafe" | "async" | "extern") || w.starts_with("pub(")
    });
    if !words_ok {
        return None;
    }
    let rest = &line[at + 3..];
    let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_'))?;
    Some(&rest[..end]).filter(|n| !n.is_empty())
}

/// Lines from a function's first line to its closing brace; `None` for a declaration
/// without a body.
fn body_lines(lines: &[&str]) -> Option<usize> {
    let mut depth = 0i32;
    let mut opened = false;
    for (i, line) in lines.iter().enumerate() {
        for c in line.chars() {
            match c {
                '{' => {
                    depth += 1;
                    opened = true;
                }
                '}' => depth -= 1,
                ';' if !opened && depth == 0 => return None,
                _ => {}
            }
        }
        if opened && depth <= 0 {
            return Some(i + 1);
        }
    }
    None
}

#[test]
fn the_checker_sees_grouped_imports_and_circles() {
    let mut out = Vec::new();
    expand("crate::{a::b,c::{d,e as f}}", &mut Vec::new(), &mut out);
    assert_eq!(
        out,
        vec![
            vec!["crate", "a", "b"],
            vec!["crate", "c", "d"],
            vec!["crate", "c", "e"]
        ]
    );
    let found = paths(&strip(
        "use super::{x::Y, Z};\nfn f() { crate::sys::now(); } // crate::no",
    ));
    assert!(found.contains(&vec!["super".into(), "x".into(), "Y".into()]));
    assert!(found.contains(&vec!["crate".into(), "sys".into(), "now".into()]));
    assert!(!found.iter().any(|p| p.contains(&"no".to_string())));
    let mut edges = BTreeMap::new();
    edges.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    edges.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    assert!(find_circle(&edges).is_some());
    edges.remove("b");
    assert!(find_circle(&edges).is_none());
}
