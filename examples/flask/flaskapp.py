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


@app.route("/upload", methods=["POST"])
def upload():
    import hashlib

    data = request.get_data()
    return jsonify(length=len(data), sha256=hashlib.sha256(data).hexdigest())


if __name__ == "__main__":
    # Inert under cgi2wsgi: the app file is never run as __main__.
    app.run()
