#!/usr/local/bin/cgi2wsgi
# The Flask drop-in with the CGI accelerator: the first request starts a persistent worker
# for this app, later ones are relayed to it (see "CGI accelerator" in the README).
# cgi2wsgi: venv = /srv/myapp/venv
# cgi2wsgi: pythonpath = ../flask
# cgi2wsgi: persist = on
# cgi2wsgi: persist-idle-timeout = 300
from flaskapp import app as application
