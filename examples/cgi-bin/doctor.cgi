#!/usr/local/bin/cgi2wsgi
# The built-in diagnostic page: the environ exactly as an app sees it, with warnings for
# classic misconfigurations. Remove it after use: it exposes the whole environ.
# cgi2wsgi: app = builtin:doctor
