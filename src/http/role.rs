//! The roles a request can be asked in (FastCGI 1.0 §6: Responder, Authorizer), protocol
//! neutral, and the set this process serves (`--roles`). A role outside the set is refused
//! by the gateway before the app sees the request: a responder app suddenly asked to
//! authorize would answer 200 to everything, so the authorizer role is opt-in.

use std::fmt;

/// What the web server asks of the app for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Produce the response (every CGI, SCGI and uwsgi request, most FastCGI ones).
    Responder,
    /// Decide whether the request may proceed: 200 allows, any other status is the answer.
    Authorizer,
}

impl Role {
    /// The value of `FCGI_ROLE` in the environ.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Responder => "RESPONDER",
            Role::Authorizer => "AUTHORIZER",
        }
    }

    /// The name used on the command line (`--roles responder,authorizer`).
    #[must_use]
    pub fn flag_name(self) -> &'static str {
        match self {
            Role::Responder => "responder",
            Role::Authorizer => "authorizer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The roles this process serves. The default is the responder alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub responder: bool,
    pub authorizer: bool,
}

impl Default for Roles {
    fn default() -> Self {
        Roles { responder: true, authorizer: false }
    }
}

impl Roles {
    #[must_use]
    pub fn contains(self, role: Role) -> bool {
        match role {
            Role::Responder => self.responder,
            Role::Authorizer => self.authorizer,
        }
    }

    /// Parse `responder,authorizer` (any order, case-insensitive, spaces allowed; at least one).
    pub fn parse(list: &str) -> Result<Roles, String> {
        let mut roles = Roles { responder: false, authorizer: false };
        for word in list.split(',').map(str::trim) {
            match word.to_ascii_lowercase().as_str() {
                "responder" => roles.responder = true,
                "authorizer" => roles.authorizer = true,
                "" => {}
                "filter" => return Err("the FastCGI FILTER role is not supported (known roles: responder, authorizer)".into()),
                other => return Err(format!("unknown role {other:?} (known roles: responder, authorizer)")),
            }
        }
        if !roles.responder && !roles.authorizer {
            return Err(format!("{list:?} names no role: give responder, authorizer or both, e.g. responder,authorizer"));
        }
        Ok(roles)
    }

    /// `responder,authorizer` form, for logs.
    pub fn describe(self) -> String {
        [Role::Responder, Role::Authorizer].into_iter().filter(|r| self.contains(*r)).map(Role::flag_name).collect::<Vec<_>>().join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_roles() {
        assert_eq!(Roles::parse("responder").unwrap(), Roles::default());
        assert_eq!(Roles::parse("responder,authorizer").unwrap(), Roles { responder: true, authorizer: true });
        assert_eq!(Roles::parse(" Authorizer , RESPONDER ").unwrap(), Roles { responder: true, authorizer: true });
        let only = Roles::parse("authorizer").unwrap();
        assert!(only.contains(Role::Authorizer) && !only.contains(Role::Responder));
        assert_eq!(only.describe(), "authorizer");
        assert!(Roles::parse("").unwrap_err().contains("names no role"));
        assert!(Roles::parse("filter").unwrap_err().contains("FILTER"));
        assert!(Roles::parse("responder,authoriser").unwrap_err().contains("\"authoriser\""));
    }

    #[test]
    fn default_serves_the_responder_only() {
        assert!(Roles::default().contains(Role::Responder));
        assert!(!Roles::default().contains(Role::Authorizer));
        assert_eq!(Role::Authorizer.to_string(), "AUTHORIZER");
    }
}
