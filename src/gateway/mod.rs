//! The gateways: where the web server's bytes meet a `Request` and `wsgi::serve`. `cgi`
//! serves one request from the CGI environment and stdin; `fastcgi` drives one FastCGI
//! connection between its socket and the sans-IO codec in `crate::fastcgi`.

pub mod cgi;
pub mod fastcgi;
