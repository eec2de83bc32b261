#!/usr/local/bin/cgi2wsgi
# The echo app (wrapped in wsgiref.validate) as a cgi-bin drop-in.
# cgi2wsgi: pythonpath = ..
from echo import application
