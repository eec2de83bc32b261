//! Parsing the APP value: `pkg.module`, `pkg.module:callable`, `pkg.module:factory()`,
//! `path/to/file.py[:callable]` (or any file, such as a cgi-bin drop-in) and `builtin:NAME`.

use crate::error::ConfigError;
use std::path::{Path, PathBuf};

/// Where the WSGI callable comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppTarget {
    /// An importable module name.
    Module(String),
    /// A Python source file, run as a module that is not `__main__`.
    File(PathBuf),
    /// An app built into cgi2wsgi (`builtin:doctor`).
    Builtin(Builtin),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    Doctor,
}

/// A parsed APP value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSpec {
    pub target: AppTarget,
    /// Attribute path of the callable; `None` means `application`, then `app`.
    pub callable: Option<String>,
    /// `callable()` was written: call it once to get the app.
    pub factory: bool,
}

/// The names tried, in order, when the spec names no callable.
pub const DEFAULT_CALLABLES: [&str; 2] = ["application", "app"];

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_alphabetic()) && chars.all(|c| c == '_' || c.is_alphanumeric())
}

fn is_dotted(s: &str) -> bool {
    !s.is_empty() && s.split('.').all(is_identifier)
}

impl std::fmt::Display for AppSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.target {
            AppTarget::Module(m) => write!(f, "{m}")?,
            AppTarget::File(p) => write!(f, "{}", p.display())?,
            AppTarget::Builtin(Builtin::Doctor) => return write!(f, "builtin:doctor"),
        }
        match (&self.callable, self.factory) {
            (Some(c), true) => write!(f, ":{c}()"),
            (Some(c), false) => write!(f, ":{c}"),
            (None, _) => Ok(()),
        }
    }
}

impl AppSpec {
    pub fn parse(spec: &str) -> Result<AppSpec, ConfigError> {
        let bad = |why: &str| ConfigError::BadAppSpec { spec: spec.to_owned(), why: why.to_owned() };
        if let Some(name) = spec.strip_prefix("builtin:") {
            return match name {
                "doctor" => Ok(AppSpec { target: AppTarget::Builtin(Builtin::Doctor), callable: None, factory: false }),
                _ => Err(bad("the only built-in app is builtin:doctor")),
            };
        }
        // A trailing `:callable` or `:factory()` is split off only when it looks like one,
        // so a path that merely contains a colon still works.
        let (target, callable) = match spec.rsplit_once(':') {
            Some((t, c)) if is_dotted(c.strip_suffix("()").unwrap_or(c)) => (t, Some(c)),
            Some((_, c)) if !Path::new(spec).is_file() => {
                return Err(bad(&format!("{c:?} is not a callable name (write module:callable or module:factory())")))
            }
            _ => (spec, None),
        };
        if target.is_empty() {
            return Err(bad("the module or file part is empty"));
        }
        let factory = callable.is_some_and(|c| c.ends_with("()"));
        let callable = callable.map(|c| c.trim_end_matches("()").to_owned());
        // Python imports `.py` files only (lower case), so `.PY` is not taken for a file. An
        // existing file is a file, whatever it looks like: run as a script's interpreter,
        // cgi2wsgi gets the script's bare name (suEXEC runs `app.cgi` in its directory),
        // which would otherwise read as module `app`, submodule `cgi`.
        #[allow(clippy::case_sensitive_file_extension_comparisons, reason = "Python's own rule")]
        let looks_like_path = target.contains('/') || target.ends_with(".py") || !is_dotted(target) || Path::new(target).is_file();
        let target = if looks_like_path { AppTarget::File(PathBuf::from(target)) } else { AppTarget::Module(target.to_owned()) };
        Ok(AppSpec { target, callable, factory })
    }

    /// The file this app is loaded from, if it is one.
    pub fn file(&self) -> Option<&Path> {
        match &self.target {
            AppTarget::File(p) => Some(p),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(m: &str, c: Option<&str>, factory: bool) -> AppSpec {
        AppSpec { target: AppTarget::Module(m.into()), callable: c.map(Into::into), factory }
    }

    #[test]
    fn module_forms() {
        assert_eq!(AppSpec::parse("pkg.mod").unwrap(), module("pkg.mod", None, false));
        assert_eq!(AppSpec::parse("pkg.mod:app").unwrap(), module("pkg.mod", Some("app"), false));
        assert_eq!(AppSpec::parse("pkg.mod:create_app()").unwrap(), module("pkg.mod", Some("create_app"), true));
        assert_eq!(AppSpec::parse("bench:application").unwrap(), module("bench", Some("application"), false));
        assert_eq!(AppSpec::parse("m:obj.wsgi_app").unwrap(), module("m", Some("obj.wsgi_app"), false));
    }

    #[test]
    fn file_forms() {
        let s = AppSpec::parse("./bench.py").unwrap();
        assert_eq!(s.target, AppTarget::File("./bench.py".into()));
        let s = AppSpec::parse("/srv/app/wsgi.py:make()").unwrap();
        assert_eq!((s.file(), s.callable.as_deref(), s.factory), (Some(Path::new("/srv/app/wsgi.py")), Some("make"), true));
        let s = AppSpec::parse("/usr/lib/cgi-bin/app.cgi").unwrap();
        assert_eq!(s.target, AppTarget::File("/usr/lib/cgi-bin/app.cgi".into()));
        assert_eq!(AppSpec::parse("hello.py").unwrap().target, AppTarget::File("hello.py".into()));
    }

    #[test]
    fn an_existing_file_is_a_file_even_with_a_bare_dotted_name() {
        // Cargo runs unit tests in the package root, where Cargo.toml and README.md exist.
        assert_eq!(AppSpec::parse("Cargo.toml").unwrap().target, AppTarget::File("Cargo.toml".into()));
        assert_eq!(
            AppSpec::parse("README.md:application").unwrap(),
            AppSpec { target: AppTarget::File("README.md".into()), callable: Some("application".into()), factory: false }
        );
        assert_eq!(AppSpec::parse("no_such.module").unwrap().target, AppTarget::Module("no_such.module".into()));
    }

    #[test]
    fn builtin_and_errors() {
        assert_eq!(AppSpec::parse("builtin:doctor").unwrap().target, AppTarget::Builtin(Builtin::Doctor));
        assert!(AppSpec::parse("builtin:nope").is_err());
        assert!(AppSpec::parse(":app").is_err());
        assert!(AppSpec::parse("mod:not a name").is_err());
    }
}
