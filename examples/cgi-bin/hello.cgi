#!/usr/local/bin/cgi2wsgi
# The raw hello app as a cgi-bin drop-in (no venv needed).
# cgi2wsgi: pythonpath = ..
from hello import application
