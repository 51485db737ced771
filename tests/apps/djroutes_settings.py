"""Settings of the route tests' Django project (djroutes.py serves it)."""

SECRET_KEY = "pytracer-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "djroutes_urls"
# CommonMiddleware for APPEND_SLASH: /health (no slash) is answered with a redirect to /health/.
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
APPEND_SLASH = True
INSTALLED_APPS = []
DATABASES = {}
USE_TZ = True
