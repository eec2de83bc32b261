"""An app factory, loaded as factory:make()."""


def make():
    def application(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"made by the factory\n"]

    return application
