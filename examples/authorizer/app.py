"""A Flask app that is both a small site with a login page (the FastCGI responder) and the
gate the web server asks before it serves /downloads/* as plain files (the authorizer).

    cgi2wsgi --bind unix:/run/cgi2wsgi/gate.sock --roles responder,authorizer \\
             --env AUTHZ_SECRET_KEY=... --env AUTHZ_USERS=ann:... app.py

In the authorizer role cgi2wsgi gives the app SCRIPT_NAME '' and PATH_INFO the path the
client asked for, so the same routes match in both roles; environ['FCGI_ROLE'] says which
role a request is in. An authorizer allows with a 200 and nothing else: every other answer
(this app's redirect to the login page, a 403, a 404, an exception) is a denial that goes
to the client as it is.

Settings (environment): AUTHZ_SECRET_KEY signs the session cookie (required: without it the
app does not import, and every request is denied); AUTHZ_USERS is `user:password,...`
(a demo: keep real users in a database, with hashed passwords); AUTHZ_STAFF is
`user,...`, who may read /reports; AUTHZ_LOGIN_URL is where the login page is as browsers
see it (default /auth/login).
"""

import hmac
import os

from flask import Flask, abort, redirect, request, session
from markupsafe import escape

app = Flask(__name__)
app.secret_key = os.environ["AUTHZ_SECRET_KEY"]
# The responder is mounted below /auth, the files are at /downloads: the cookie must be
# sent for both, so its path is the site root, not the mount.
app.config.update(SESSION_COOKIE_PATH="/", SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax")
USERS = dict(pair.split(":", 1) for pair in os.environ.get("AUTHZ_USERS", "").split(",") if ":" in pair)
STAFF = set(filter(None, os.environ.get("AUTHZ_STAFF", "").split(",")))
LOGIN_URL = os.environ.get("AUTHZ_LOGIN_URL", "/auth/login")

# The only views allowed to answer in the authorizer role: anything else asked of the gate
# (a web server config that sends it more than /downloads) is denied, never allowed by a
# page that happens to answer 200.
GATE_VIEWS = {"downloads", "reports"}


def authorizing():
    return request.environ.get("FCGI_ROLE") == "AUTHORIZER"


@app.before_request
def gate_only_gates():
    if authorizing() and request.endpoint not in GATE_VIEWS:
        abort(403)
    if not authorizing() and request.endpoint in GATE_VIEWS:
        # The web server serves the files itself; this app only decides.
        abort(404)


@app.route("/downloads/<path:name>")
def downloads(name):
    user = session.get("user")
    if user not in USERS:
        # A denial the browser follows: to the login page, and back here after it.
        return redirect(f"{LOGIN_URL}?next={request.full_path.rstrip('?')}")
    # 200 allows. Variable-NAME: value becomes the variable NAME for the rest of the
    # request: REMOTE_USER for Apache (UserExpr) and the access log, X_USER for a responder
    # behind the gate. Other headers and any body of a 200 are not passed on.
    return "", 200, {"Variable-REMOTE_USER": user, "Variable-X_USER": user}


def password_ok(user, password):
    known = USERS.get(user)
    return known is not None and hmac.compare_digest(known.encode(), password.encode())


@app.route("/reports/<path:name>")
@app.route("/staff/<path:name>")
def reports(name):
    """Apache with Basic auth (mod_authnz_fcgi, mod_fcgid): asked once per phase."""
    env = request.environ
    user = env.get("REMOTE_USER", "")
    if env.get("FCGI_APACHE_ROLE") == "AUTHENTICATOR":
        # AuthBasicProvider: are these credentials right? (401: wrong password.)
        return ("", 200) if password_ok(user, env.get("REMOTE_PASSWD", "")) else ("", 401)
    # `Require`: may this user have this URL?
    if user in STAFF:
        return "", 200, {"Variable-X_GROUP": "staff"}
    return "", 403


@app.route("/login", methods=["GET", "POST"])
def login():
    next_url = request.values.get("next", "/")
    if not next_url.startswith("/") or next_url.startswith("//"):
        next_url = "/"
    if request.method == "POST":
        user, password = request.form.get("user", ""), request.form.get("password", "")
        if password_ok(user, password):
            session.clear()
            session["user"] = user
            return redirect(next_url)
        return login_page(next_url, "Wrong user or password."), 403
    return login_page(next_url, "")


@app.route("/logout", methods=["POST"])
def logout():
    session.clear()
    return redirect(LOGIN_URL)


@app.route("/whoami")
def whoami():
    return {"user": session.get("user"), "role": request.environ.get("FCGI_ROLE")}


def login_page(next_url, error):
    return (
        "<!doctype html><title>Log in</title>"
        f"<p>{escape(error)}</p>"
        f'<form method="post"><input type="hidden" name="next" value="{escape(next_url)}">'
        '<label>User <input name="user"></label> '
        '<label>Password <input name="password" type="password"></label> '
        "<button>Log in</button></form>"
    )
