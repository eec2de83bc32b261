#!/usr/local/bin/cgi2wsgi
# A cgi-bin drop-in: copy it into cgi-bin, chmod 755, and fix the two paths below.
# cgi2wsgi: venv = /srv/myapp/venv
# cgi2wsgi: pythonpath = ../flask
from flaskapp import app as application
