#!/usr/local/bin/cgi2wsgi
# examples/authorizer/app.py as a mod_fcgid authorizer and authenticator
# (apache/fcgid-authorizer.conf): mod_fcgid runs this file itself, with no arguments, so
# the settings are here. `roles = authorizer`: this process is only ever asked to decide.
# cgi2wsgi: roles = authorizer
# cgi2wsgi: venv = /srv/gate/venv
# cgi2wsgi: pythonpath = .
# cgi2wsgi: app = app:app
# Demo values: replace them (the secret key with a long random string, known only here).
# cgi2wsgi: env = AUTHZ_SECRET_KEY=replace-with-a-long-random-string
# cgi2wsgi: env = AUTHZ_USERS=ann:ann-pw,bob:bob-pw
# cgi2wsgi: env = AUTHZ_STAFF=ann
