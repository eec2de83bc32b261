"""Imports Flask (only present in the --venv) and answers with its version and location."""

import importlib.metadata

import flask


def application(environ, start_response):
    body = f"{importlib.metadata.version('flask')} {flask.__file__}".encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
