//! Guarding argv against query-string words (RFC 3875 §4.4, CVE-2012-1823).
//!
//! Apache passes a query string with no `=` to a CGI program as extra argv words:
//! `/app.cgi?--app+evil:x` runs `cgi2wsgi /srv/app.cgi --app evil:x`. Those words come
//! from the client and must never be parsed as options, so before clap sees argv in a CGI
//! context we cut everything from the script onwards.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Environment lookup, so tests can pass a synthetic environment.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<OsString>;

/// The same file (by device and inode), however each is named.
pub fn same_file(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// The argv words a server derives from QUERY_STRING (none when it holds an `=`).
pub fn query_words(query: &[u8]) -> Vec<Vec<u8>> {
    if query.is_empty() || query.contains(&b'=') {
        return Vec::new();
    }
    query.split(|&b| b == b'+').map(crate::http::request::percent_decode).collect()
}

/// Apache shell-escapes each word with backslashes; compare without them.
fn word_matches(arg: &OsStr, word: &[u8]) -> bool {
    let arg = arg.as_bytes();
    if arg == word {
        return true;
    }
    let mut unescaped = Vec::with_capacity(arg.len());
    let mut it = arg.iter();
    while let Some(&c) = it.next() {
        if c == b'\\' {
            if let Some(&n) = it.next() {
                unescaped.push(n);
            }
        } else {
            unescaped.push(c);
        }
    }
    unescaped == word
}

/// Return argv without the words a CGI server appended. Outside CGI (no GATEWAY_INTERFACE)
/// argv is returned unchanged.
pub fn strip_server_words(mut args: Vec<OsString>, env: Env, exe: Option<&Path>) -> Vec<OsString> {
    if env("GATEWAY_INTERFACE").is_none() || args.is_empty() {
        return args;
    }
    if let Some(script) = env("SCRIPT_FILENAME") {
        let script = Path::new(&script);
        // cgi2wsgi itself is the CGI program: every argument after argv[0] is the server's.
        if exe.is_some_and(|exe| same_file(exe, script)) {
            args.truncate(1);
            return args;
        }
        // A `#!` drop-in: the kernel runs `cgi2wsgi [shebang-arg] SCRIPT words...`.
        if let Some(i) = args.iter().skip(1).position(|a| same_file(Path::new(a), script)) {
            args.truncate(i + 2);
            return args;
        }
    }
    // A wrapper that passed "$@" along: cut the tail if it is exactly the query words.
    let words = query_words(env("QUERY_STRING").unwrap_or_default().as_bytes());
    if !words.is_empty() && args.len() > words.len() {
        let tail = &args[args.len() - words.len()..];
        if tail.iter().zip(&words).all(|(a, w)| word_matches(a, w)) {
            args.truncate(args.len() - words.len());
        }
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn run(args: &[&str], vars: &[(&str, &str)], exe: Option<&Path>) -> Vec<String> {
        let map: HashMap<String, OsString> = vars.iter().map(|(k, v)| (k.to_string(), OsString::from(v))).collect();
        let env = move |k: &str| map.get(k).cloned();
        strip_server_words(args.iter().map(OsString::from).collect(), &env, exe).into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    #[test]
    fn words_are_decoded_like_apache() {
        assert_eq!(query_words(b"--app+evil%3Ax"), vec![b"--app".to_vec(), b"evil:x".to_vec()]);
        assert!(query_words(b"a=b").is_empty());
        assert!(query_words(b"").is_empty());
    }

    #[test]
    fn drop_in_script_cuts_everything_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("app.cgi");
        std::fs::write(&script, "").unwrap();
        let s = script.to_str().unwrap();
        let vars = [("GATEWAY_INTERFACE", "CGI/1.1"), ("SCRIPT_FILENAME", s), ("QUERY_STRING", "--app+evil:x")];
        assert_eq!(run(&["cgi2wsgi", s, "--app", "evil:x"], &vars, None), vec!["cgi2wsgi", s]);
    }

    #[test]
    fn binary_as_the_cgi_program_keeps_only_argv0() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("cgi2wsgi.cgi");
        std::fs::write(&exe, "").unwrap();
        let e = exe.to_str().unwrap();
        let vars = [("GATEWAY_INTERFACE", "CGI/1.1"), ("SCRIPT_FILENAME", e), ("QUERY_STRING", "--mode+fastcgi")];
        assert_eq!(run(&["cgi2wsgi.cgi", "--mode", "fastcgi"], &vars, Some(&exe)), vec!["cgi2wsgi.cgi"]);
    }

    #[test]
    fn wrapper_passing_its_args_has_the_query_tail_cut() {
        let vars = [("GATEWAY_INTERFACE", "CGI/1.1"), ("QUERY_STRING", "--app+x%3By")];
        assert_eq!(run(&["cgi2wsgi", "--app", "good:app", "--app", "x\\;y"], &vars, None), vec!["cgi2wsgi", "--app", "good:app"]);
    }

    #[test]
    fn untouched_outside_cgi_or_when_words_differ() {
        assert_eq!(run(&["cgi2wsgi", "--app", "x"], &[("QUERY_STRING", "--app+x")], None), vec!["cgi2wsgi", "--app", "x"]);
        let vars = [("GATEWAY_INTERFACE", "CGI/1.1"), ("QUERY_STRING", "other")];
        assert_eq!(run(&["cgi2wsgi", "app.py"], &vars, None), vec!["cgi2wsgi", "app.py"]);
    }
}
