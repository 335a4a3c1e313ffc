"""gunicorn settings for the web process, read from the working folder (docker-compose's web
service and the beacon benchmark both run with it). Variables: see .env.example."""

import os

# Threads: a request spends part of its time waiting on PostgreSQL or Redis. A process per core
# (the GIL), a few threads each; more threads only lengthen the queue in front of the GIL.
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY") or os.cpu_count() or 2)
threads = int(os.environ.get("WEB_THREADS") or 4)
# Browsers and the tracking snippet keep connections open between page views.
keepalive = 5
