import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leadfunnel.settings")
application = get_wsgi_application()

# gunicorn runs no system checks: invalid settings stop the web process here, with their
# messages (gunicorn then stops: "Worker failed to boot").
from leadfunnel.checks import refuse_to_start_on_errors  # noqa: E402

refuse_to_start_on_errors("web server")
