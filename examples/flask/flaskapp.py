"""A small Flask app: the example users start from, and what the tests drive."""

from flask import Flask, jsonify, request, url_for

app = Flask(__name__)


@app.route("/")
def index():
    return "Hello from Flask\n"


@app.route("/users/<int:uid>")
def user(uid):
    # url_for must see SCRIPT_NAME right for the link to include the mount prefix.
    return jsonify(user=uid, link=url_for("user", uid=uid), script_root=request.script_root)


@app.route("/links")
def links():
    # What a page of this app would link to: every URL must work when the browser follows it.
    return jsonify(
        index=url_for("index"),
        user=url_for("user", uid=7),
        style=url_for("static", filename="style.css"),
        external=url_for("user", uid=7, _external=True),
        query=request.query_string.decode("latin-1"),
    )


# HTTP Basic auth done by the app itself: it only works if the web server passes the
# Authorization header on (Apache: CGIPassAuth On, FcgidPassHeader Authorization).
# The credentials are a demo's; keep real ones out of the code.
DEMO_USER, DEMO_PASSWORD = "demo", "s3cret"


@app.route("/private")
def private():
    auth = request.authorization
    if auth is None or (auth.username, auth.password) != (DEMO_USER, DEMO_PASSWORD):
        return "login required\n", 401, {"WWW-Authenticate": 'Basic realm="cgi2wsgi demo"'}
    return "hello %s\n" % auth.username


@app.route("/upload", methods=["POST"])
def upload():
    import hashlib

    data = request.get_data()
    return jsonify(length=len(data), sha256=hashlib.sha256(data).hexdigest())


if __name__ == "__main__":
    # Inert under cgi2wsgi: the app file is never run as __main__.
    app.run()
