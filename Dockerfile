# One image for web, worker and beat (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

RUN apt-get update && apt-get install -y --no-install-recommends gettext \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 leadfunnel

COPY pyproject.toml requirements.lock ./
COPY leadfunnel/__init__.py leadfunnel/__init__.py
COPY contacts/__init__.py contacts/__init__.py
COPY scoring/__init__.py scoring/__init__.py
COPY nurturing/__init__.py nurturing/__init__.py
RUN pip install --no-cache-dir -c requirements.lock -e .

COPY . .
ENV STATIC_ROOT=/app/var/staticfiles LEADFUNNEL_VAR_DIR=/app/var
# Static files are collected at build time; a throwaway key is enough for that.
RUN SECRET_KEY=build-only-not-secret READ_DOT_ENV=false python manage.py collectstatic --noinput \
    && SECRET_KEY=build-only-not-secret READ_DOT_ENV=false python manage.py compilemessages --ignore '.venv/*' \
    && mkdir -p /app/var && chown -R leadfunnel /app/var

USER leadfunnel
EXPOSE 8000
CMD ["gunicorn", "leadfunnel.wsgi", "--bind", "0.0.0.0:8000", "--access-logfile", "-"]
