//! Real Apache running cgi2wsgi drop-ins as CGI programs: mod_cgid under mpm_event
//! (Debian's default) and mod_cgi under mpm_prefork, with the repo's `apache/` configs.

mod common;

use common::servers::{self, ApacheMpm};
use common::{http, scenarios, Fixture};

fn start(mpm: ApacheMpm) -> (Fixture, servers::Server) {
    let fx = Fixture::new(true);
    let cgi_bin = fx.path().join("cgi-bin");
    for name in ["hello.cgi", "echo.cgi", "doctor.cgi"] {
        fx.install_drop_in(name, &cgi_bin, name);
    }
    fx.install_drop_in("flask.cgi", &cgi_bin, "app.cgi");
    // The shared-hosting shape: a drop-in and the .htaccess from apache/ in the document root.
    let htdocs = fx.path().join("htdocs");
    fx.install_drop_in("echo.cgi", &htdocs, "echo.cgi");
    std::fs::copy(common::repo().join("apache/htaccess"), htdocs.join(".htaccess")).unwrap();
    let site = servers::render_snippet("apache/cgi.conf", &[("/usr/lib/cgi-bin", servers::path_str(&cgi_bin))]);
    let server = servers::apache(&fx, mpm, &site);
    (fx, server)
}

fn apache_matrix(mpm: ApacheMpm) {
    let (_fx, server) = start(mpm);
    let mut c = scenarios::Checks::new(&server);
    let port = server.port;
    c.check("Authorization reaches the app (CGIPassAuth)", || {
        let r = http::request(port, "GET", "/cgi-bin/echo.cgi", &[("Authorization", "Bearer t0ken")], b"");
        assert_eq!(r.json()["HTTP_AUTHORIZATION"], "Bearer t0ken");
    });
    c.check(".htaccess drop-in in the document root", || {
        let r = http::request(port, "GET", "/echo.cgi/x?y=1", &[("Authorization", "Basic eDp5")], b"");
        assert_eq!(r.status, 200, "{}", r.text());
        let j = r.json();
        assert_eq!((j["SCRIPT_NAME"].as_str(), j["PATH_INFO"].as_str()), (Some("/echo.cgi"), Some("/x")));
        assert_eq!(j["HTTP_AUTHORIZATION"], "Basic eDp5");
    });
    scenarios::cgi_matrix(&server, &mut c);
    c.finish();
}

#[test]
fn apache_mod_cgid_event() {
    apache_matrix(ApacheMpm::EventCgid);
}

#[test]
fn apache_mod_cgi_prefork() {
    apache_matrix(ApacheMpm::PreforkCgi);
}
