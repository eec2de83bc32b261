#!/usr/local/bin/cgi2wsgi
# The Flask example as the whole site, behind apache/htaccess-rewrite (shared hosting):
# mod_rewrite sends /users/42 to this file, and script-name says the app is mounted at the
# site root, so url_for builds /users/42 rather than /app.cgi/users/42. In a subdirectory
# (public_html/blog/), say script-name = /blog.
# cgi2wsgi: venv = /srv/myapp/venv
# cgi2wsgi: pythonpath = ../flask
# cgi2wsgi: script-name = /
from flaskapp import app as application
