//! Real lighttpd running cgi2wsgi drop-ins through mod_cgi, with the repo's `lighttpd/` config.

mod common;

use common::{scenarios, servers, Fixture};

#[test]
fn lighttpd_mod_cgi() {
    let fx = Fixture::new(true);
    let cgi_bin = fx.path().join("cgi-bin");
    for name in ["hello.cgi", "echo.cgi", "doctor.cgi"] {
        fx.install_drop_in(name, &cgi_bin, name);
    }
    fx.install_drop_in("flask.cgi", &cgi_bin, "app.cgi");
    let site = servers::render_snippet("lighttpd/cgi.conf", &[("/usr/lib/cgi-bin", servers::path_str(&cgi_bin))]);
    let server = servers::lighttpd(&fx, &site);
    let mut c = scenarios::Checks::new(&server);
    scenarios::cgi_matrix(&server, &mut c);
    c.finish();
}
