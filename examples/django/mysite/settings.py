"""Settings of the minimal Django example: no database, CSRF on, static files collected
into STATIC_ROOT (`manage.py collectstatic`) and served by the web server, not Django."""
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

# Set both in production (cgi2wsgi --env DJANGO_SECRET_KEY=..., or the service's
# Environment=); the fallback key is for trying the example only.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")
DEBUG = False

INSTALLED_APPS = ["django.contrib.staticfiles", "mysite"]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
ROOT_URLCONF = "mysite.urls"
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]
WSGI_APPLICATION = "mysite.wsgi.application"
DATABASES = {}
USE_TZ = True

# The web server maps /static/ to STATIC_ROOT (see the recipes beside this file).
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "static"
