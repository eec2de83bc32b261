//! Keeps `ARCHITECTURE.md` true. It reads the layer table and the `unsafe` list from that
//! file, then every source file under `src/`, and fails when an invariant breaks: a
//! `crate::` path (in a `use` or inline) that runs up the layers, a cycle between the
//! modules of one layer, pyo3 outside `src/wsgi/`, `unsafe` outside the files allowed it,
//! I/O named in the sans-IO codec (`src/fastcgi/`), a top-level module the
//! map does not place, a file over 600 lines (its `#[cfg(test)]`
//! module aside) or a function over 80 lines. The checker itself is tested on made-up
//! sources, so a broken checker cannot pass the tree by finding nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const MAX_FILE_LINES: usize = 600;
const MAX_FN_LINES: usize = 80;

/// What the sans-IO codec (`src/fastcgi/`) must not name: the OS plumbing, the body spool
/// (a file), sockets, files, raw syscalls, Python. Plain data of the ground (`http`'s types,
/// `error`) it may use.
const SANS_IO: &[&str] = &["crate::sys", "crate::http::spool", "std::net", "std::fs", "std::os", "libc::", "pyo3"];

/// What `ARCHITECTURE.md` lays down.
struct Map {
    /// Top-level module → its layer (0 = the top, the entry).
    layer: BTreeMap<String, usize>,
    /// Files (or folders, ending in `/`) under `src/` where `unsafe` may appear.
    unsafe_allowed: Vec<String>,
}

/// The rows of the table after the `<!-- layers -->` marker: `| N. name | `a`, `b` | … |`;
/// the line after the `<!-- unsafe -->` marker lists the paths allowed `unsafe`.
fn read_map(doc: &str) -> Map {
    let mut layer = BTreeMap::new();
    let mut lines = doc.lines().skip_while(|l| !l.contains("<!-- layers -->")).skip(1);
    let mut index = 0;
    for line in lines.by_ref() {
        let line = line.trim();
        if !line.starts_with('|') {
            if index > 0 {
                break;
            }
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if cells.len() < 2 || cells[0].starts_with('-') || cells[0].eq_ignore_ascii_case("layer") {
            continue;
        }
        for module in backticked(cells[1]) {
            layer.insert(module.trim_end_matches('/').trim_end_matches(".rs").to_owned(), index);
        }
        index += 1;
    }
    let unsafe_line = doc.lines().skip_while(|l| !l.contains("<!-- unsafe -->")).nth(1).unwrap_or("");
    let unsafe_allowed = backticked(unsafe_line).into_iter().map(|p| p.trim_start_matches("src/").to_owned()).collect();
    Map { layer, unsafe_allowed }
}

fn backticked(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// The source with comments, string and char literals blanked (newlines kept, so line
/// numbers hold): only code is left to search.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, s: &[u8]| out.extend(s.iter().map(|&c| if c == b'\n' { b'\n' } else { b' ' }));
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest.starts_with(b"/*") {
            let (mut depth, mut j) = (0usize, 0);
            while j < rest.len() {
                if rest[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if rest[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, &rest[..j]);
            i += j;
        } else if let Some(len) = raw_string_len(rest) {
            blank(&mut out, &rest[..len]);
            i += len;
        } else if rest[0] == b'"' || rest.starts_with(b"b\"") {
            let start = usize::from(rest[0] == b'b');
            let mut j = start + 1;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest[0] == b'\'' {
            // A char literal ('x', '\n', '\u{..}'), or a lifetime ('a), which is left alone.
            let len = if rest.get(1) == Some(&b'\\') {
                rest.iter().skip(2).position(|&c| c == b'\'').map(|p| p + 3)
            } else if rest.get(2) == Some(&b'\'') {
                Some(3)
            } else {
                // A multi-byte char: up to the closing quote within 6 bytes.
                rest.iter().skip(1).take(5).position(|&c| c == b'\'').filter(|&p| p > 0 && !rest[1].is_ascii()).map(|p| p + 2)
            };
            let len = len.unwrap_or(1);
            if len == 1 {
                out.push(b'\'');
            } else {
                blank(&mut out, &rest[..len]);
            }
            i += len;
        } else {
            out.push(rest[0]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `r"…"`, `r#"…"#`, `br"…"` …: the length of the literal, if one starts here.
fn raw_string_len(s: &[u8]) -> Option<usize> {
    let start = if s.starts_with(b"br") {
        2
    } else if s.starts_with(b"r") {
        1
    } else {
        return None;
    };
    let hashes = s[start..].iter().take_while(|&&c| c == b'#').count();
    if s.get(start + hashes) != Some(&b'"') {
        return None;
    }
    let mut close = vec![b'"'];
    close.extend(std::iter::repeat_n(b'#', hashes));
    let body = start + hashes + 1;
    let end = s[body..].windows(close.len()).position(|w| w == close.as_slice())?;
    Some(body + end + close.len())
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Every `crate::x` path in the code, as (line, x): the first segment, which names the
/// top-level module. `crate::{a, b::c}` yields a and b.
fn crate_paths(code: &str) -> BTreeSet<(usize, String)> {
    let b = code.as_bytes();
    let mut found = BTreeSet::new();
    let mut at = 0;
    while let Some(pos) = code[at..].find("crate::") {
        let p = at + pos;
        at = p + 7;
        if p > 0 && (is_ident(b[p - 1]) || b[p - 1] == b'$') {
            continue;
        }
        let line = code[..p].matches('\n').count() + 1;
        let rest = code[at..].trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_alphanumeric() || c == '_') => {
                        let name: String = group[i..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                        found.insert((line, name));
                        item_start = false;
                    }
                    c if !c.is_whitespace() => item_start = false,
                    _ => {}
                }
            }
        } else {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                found.insert((line, name));
            }
        }
    }
    found
}

fn has_word(code: &str, word: &str) -> Option<usize> {
    let b = code.as_bytes();
    let mut at = 0;
    while let Some(pos) = code[at..].find(word) {
        let p = at + pos;
        at = p + word.len();
        let before = p == 0 || !is_ident(b[p - 1]);
        let after = b.get(at).is_none_or(|&c| !is_ident(c));
        if before && after {
            return Some(code[..p].matches('\n').count() + 1);
        }
    }
    None
}

/// The line where the file's `#[cfg(test)]` part starts (its end if none).
fn test_start(code: &str) -> usize {
    code.lines().position(|l| l.trim_start().starts_with("#[cfg(test)]")).unwrap_or_else(|| code.lines().count())
}

/// Functions over the limit, before the test part: (name, first line, lines).
fn long_functions(code: &str, limit: usize) -> Vec<(String, usize, usize)> {
    let end_line = test_start(code);
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(pos) = code[at..].find("fn ") {
        let p = at + pos;
        at = p + 3;
        if p > 0 && is_ident(b[p - 1]) {
            continue;
        }
        let line = code[..p].matches('\n').count() + 1;
        if line > end_line {
            break;
        }
        let name: String = code[at..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if name.is_empty() {
            continue; // `fn(` types
        }
        // The body: the first `{` at bracket depth 0 before any `;` (a declaration has none).
        let mut depth = 0i32;
        let mut open = None;
        for (i, c) in code[at..].char_indices() {
            match c {
                '(' | '[' | '<' => depth += 1,
                ')' | ']' => depth -= 1,
                '>' if !code[at..][..i].ends_with('-') => depth -= 1,
                ';' if depth <= 0 => break,
                '{' if depth <= 0 => {
                    open = Some(at + i);
                    break;
                }
                _ => {}
            }
        }
        let Some(open) = open else { continue };
        let mut braces = 0;
        let mut close = open;
        for (i, c) in code[open..].char_indices() {
            match c {
                '{' => braces += 1,
                '}' => {
                    braces -= 1;
                    if braces == 0 {
                        close = open + i;
                        break;
                    }
                }
                _ => {}
            }
        }
        let lines = code[p..close].matches('\n').count() + 1;
        if lines > limit {
            out.push((name, line, lines));
        }
    }
    out
}

/// The top-level module a file under `src/` belongs to.
fn module_of(rel: &str) -> String {
    let first = rel.split('/').next().unwrap_or(rel);
    first.trim_end_matches(".rs").to_owned()
}

/// Every broken invariant, one line each.
fn check(map: &Map, files: &BTreeMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, src) in files {
        let code = code_only(src);
        let module = module_of(rel);
        let Some(&from) = map.layer.get(&module) else {
            problems.push(format!("src/{rel}: module `{module}` is not placed in ARCHITECTURE.md's layer table"));
            continue;
        };
        for (line, target) in crate_paths(&code) {
            if target == module {
                continue;
            }
            match map.layer.get(&target) {
                Some(&to) if to < from => {
                    problems.push(format!("src/{rel}:{line}: `crate::{target}` runs upward (layer {} imports layer {}, see ARCHITECTURE.md)", from + 1, to + 1))
                }
                Some(&to) if to == from => {
                    edges.entry(module.clone()).or_default().insert(target.clone());
                }
                Some(_) => {}
                None => {
                    // `crate::SomeItem` re-exported at the root belongs to the entry layer.
                    if from > 0 && target.chars().next().is_some_and(char::is_lowercase) {
                        problems.push(format!("src/{rel}:{line}: `crate::{target}` names no module of the map"));
                    }
                }
            }
        }
        if !rel.starts_with("wsgi/") {
            if let Some(line) = has_word(&code, "pyo3") {
                problems.push(format!("src/{rel}:{line}: pyo3 outside src/wsgi/"));
            }
        }
        if rel.starts_with("fastcgi/") {
            for word in SANS_IO {
                if let Some(p) = code.find(word) {
                    let line = code[..p].matches('\n').count() + 1;
                    problems.push(format!("src/{rel}:{line}: `{word}` in the sans-IO codec"));
                }
            }
        }
        let allowed = map.unsafe_allowed.iter().any(|a| if a.ends_with('/') { rel.starts_with(a.as_str()) } else { rel == a });
        if !allowed {
            if let Some(line) = has_word(&code, "unsafe") {
                problems.push(format!("src/{rel}:{line}: `unsafe` in a file ARCHITECTURE.md does not allow it"));
            }
            if code.contains("allow(unsafe_code)") {
                problems.push(format!("src/{rel}: allow(unsafe_code) in a file ARCHITECTURE.md does not allow it"));
            }
        }
        let lines = test_start(&code);
        if lines > MAX_FILE_LINES {
            problems.push(format!("src/{rel}: {lines} lines before its tests (the limit is {MAX_FILE_LINES})"));
        }
        for (name, line, n) in long_functions(&code, MAX_FN_LINES) {
            problems.push(format!("src/{rel}:{line}: fn {name} has {n} lines (the limit is {MAX_FN_LINES})"));
        }
    }
    if let Some(cycle) = find_cycle(&edges) {
        problems.push(format!("a cycle between modules of one layer: {}", cycle.join(" → ")));
    }
    if !files.get("lib.rs").is_some_and(|l| l.contains("#![deny(unsafe_code)]")) {
        problems.push("src/lib.rs: no #![deny(unsafe_code)] at the crate root".into());
    }
    problems
}

fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(n: &str, edges: &BTreeMap<String, BTreeSet<String>>, path: &mut Vec<String>, done: &mut BTreeSet<String>) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut cycle = path[i..].to_vec();
            cycle.push(n.to_owned());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_owned());
        for next in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(next, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    edges.keys().find_map(|n| visit(n, edges, &mut Vec::new(), &mut done))
}

fn read_tree(dir: &Path, rel: &str, out: &mut BTreeMap<String, String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("read src/").filter_map(Result::ok).collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        let rel_name = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
        if path.is_dir() {
            read_tree(&path, &rel_name, out);
        } else if name.ends_with(".rs") {
            out.insert(rel_name, std::fs::read_to_string(&path).expect("read a source file"));
        }
    }
}

#[test]
fn the_tree_keeps_architecture_md() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md at the repo root");
    let map = read_map(&doc);
    assert!(map.layer.len() >= 8, "ARCHITECTURE.md's layer table was not found or is nearly empty: {:?}", map.layer);
    let mut files = BTreeMap::new();
    read_tree(&root.join("src"), "", &mut files);
    let problems = check(&map, &files);
    assert!(problems.is_empty(), "{} broken invariant(s) of ARCHITECTURE.md:\n{}", problems.len(), problems.join("\n"));
}

/// The checker on made-up sources: each kind of breach is found, and clean code passes.
#[test]
fn the_checker_finds_each_breach() {
    let doc = "x\n<!-- layers -->\n| layer | modules |\n|---|---|\n| 1. entry | `lib` |\n| 2. gateways | `gate/`, `serve` |\n| 3. ground | `base.rs`, `fastcgi/` |\n\n<!-- unsafe -->\n`src/base.rs`, `src/gate/fd.rs`\n";
    let map = read_map(doc);
    assert_eq!(map.layer.get("gate"), Some(&1));
    assert_eq!(map.layer.get("base"), Some(&2));
    let clean: BTreeMap<String, String> = [
        ("lib.rs", "#![deny(unsafe_code)]\nmod gate;\nuse crate::gate::run;\n"),
        ("gate/mod.rs", "use crate::{base::{A, B}, serve};\nfn f() { let s = \"crate::lib::x\"; // crate::lib\n}\n"),
        ("gate/fd.rs", "fn f() { unsafe { g() } }\n"),
        ("serve.rs", "fn g() -> crate::base::T { todo!() }\n"),
        ("base.rs", "fn h<'a>(x: &'a str) -> char { 'x' }\n"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(check(&map, &clean), Vec::<String>::new());
    let breach = |file: &str, text: &str, expect: &str| {
        let mut files = clean.clone();
        files.insert(file.to_owned(), text.to_owned());
        let problems = check(&map, &files);
        assert!(problems.iter().any(|p| p.contains(expect)), "{file}: expected {expect:?} in {problems:?}");
    };
    breach("base.rs", "fn f() { crate::gate::run() }\n", "runs upward");
    breach("base.rs", "use crate::{lib};\n", "runs upward");
    breach("serve.rs", "use crate::gate::x;\n", "a cycle");
    breach("gate/mod.rs", "use crate::serve;\nuse pyo3::prelude::*;\n", "pyo3 outside");
    breach("serve.rs", "fn f() { unsafe { g() } }\n", "`unsafe` in a file");
    breach("other.rs", "fn f() {}\n", "not placed");
    breach("serve.rs", &"fn x() {}\n".repeat(601), "lines before its tests");
    breach("serve.rs", &format!("fn long() {{\n{}}}\n", "    g();\n".repeat(80)), "fn long has 82 lines");
    breach("lib.rs", "mod gate;\n", "deny(unsafe_code)");
    breach("fastcgi/codec.rs", "fn f() { std::net::TcpStream::connect(\"x\"); }\n", "`std::net` in the sans-IO codec");
}
