#!/usr/local/bin/cgi2wsgi
# cgi2wsgi: pythonpath = ..
from stream import application
