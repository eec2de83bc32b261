//! Real Apache running cgi2wsgi drop-ins as CGI programs: mod_cgid under mpm_event
//! (Debian's default) and mod_cgi under mpm_prefork, with the repo's `apache/` configs,
//! plus the doctor behind Basic auth (its Authorization warning on a stripped header).

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
    let recipe = servers::render_snippet("apache/cgi.conf", &[("/usr/lib/cgi-bin", servers::path_str(&cgi_bin))]);
    // Beside the recipe: the doctor behind Basic auth without CGIPassAuth, where Apache
    // authenticates the request (REMOTE_USER) and then hides its Authorization header.
    let basic = fx.path().join("cgi-bin-basic");
    fx.install_drop_in("doctor.cgi", &basic, "doctor.cgi");
    let users = fx.path().join("htpasswd");
    let out = std::process::Command::new("htpasswd").arg("-cbB").arg(&users).arg("ada").arg("pw").output().expect("htpasswd (apache2-utils)");
    assert!(out.status.success(), "htpasswd: {}", String::from_utf8_lossy(&out.stderr));
    let status = std::process::Command::new("chmod").arg("a+r").arg(&users).status().unwrap();
    assert!(status.success());
    let modules: String = ["auth_basic", "authn_core", "authn_file", "authz_user"]
        .iter()
        .map(|m| format!("LoadModule {m}_module /usr/lib/apache2/modules/mod_{m}.so\n"))
        .collect();
    let site = format!(
        "{recipe}\n{modules}ScriptAlias /basic/ {dir}/\n<Directory {dir}>\n    Options +ExecCGI\n    AuthType Basic\n    AuthName doctor\n    AuthUserFile {users}\n    Require valid-user\n</Directory>\n",
        dir = servers::path_str(&basic),
        users = servers::path_str(&users),
    );
    let server = servers::apache(&fx, mpm, &site);
    (fx, server)
}

/// The codes of a doctor JSON page's warnings.
fn warning_codes(r: &http::HttpResponse) -> Vec<String> {
    r.json()["warnings"].as_array().expect("warnings array").iter().filter_map(|w| w["code"].as_str().map(str::to_owned)).collect()
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
    c.check("doctor: no Authorization warning when none was sent (CGIPassAuth On)", || {
        let r = http::get(port, "/cgi-bin/doctor.cgi?format=json");
        assert_eq!(r.status, 200, "{}", r.text());
        let codes = warning_codes(&r);
        assert!(!codes.contains(&"authorization-header-absent".to_owned()), "{codes:?}");
        let r = http::request(port, "GET", "/cgi-bin/doctor.cgi?format=json&authorization=sent", &[("Authorization", "Basic YWRhOnB3")], b"");
        assert_eq!(r.json()["environ"]["HTTP_AUTHORIZATION"], "Basic YWRhOnB3");
        assert!(!warning_codes(&r).contains(&"authorization-header-absent".to_owned()), "{}", r.text());
    });
    c.check("doctor: Authorization warning when Apache authenticated and stripped it", || {
        let r = http::request(port, "GET", "/basic/doctor.cgi?format=json", &[("Authorization", "Basic YWRhOnB3")], b"");
        assert_eq!(r.status, 200, "{}", r.text());
        let j = r.json();
        assert_eq!((j["environ"]["REMOTE_USER"].as_str(), j["environ"].get("HTTP_AUTHORIZATION")), (Some("ada"), None), "{j}");
        assert!(warning_codes(&r).contains(&"authorization-header-absent".to_owned()), "{j}");
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
