# The commands the README names. `make run` and `make test` need nothing but python3 (3.11+).
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
BENCH ?=
BENCH_SCALE ?= 1

.PHONY: install run test lint format browser imap-server bench messages clean

$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# Embedded default: SQLite file and file-system broker under var/, DEBUG on, console email.
run: install
	DEBUG=$${DEBUG:-true} $(PY) manage.py migrate --noinput
	DEBUG=$${DEBUG:-true} $(PY) manage.py demo
	DEBUG=$${DEBUG:-true} $(PY) manage.py serve --port $(PORT)

# Debian's Chromium for the browser tests (Playwright drives /usr/bin/chromium; no download).
browser:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }; \
	  else echo "Chromium is not installed: browser tests will be skipped (apt-get install chromium)"; fi; }

# Debian's Dovecot for the bounce mailbox tests (they start their own, unprivileged, on a free
# port; the package's system service is not used).
imap-server:
	@test -x /usr/sbin/dovecot || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -qq dovecot-imapd >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq dovecot-imapd >/dev/null; }; \
	  else echo "Dovecot is not installed: bounce mailbox tests will be skipped (apt-get install dovecot-imapd)"; fi; }

test: install browser imap-server
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# wrk loads the beacon benchmark's gunicorn from a second process.
bench: install
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq wrk >/dev/null 2>&1; } || echo "wrk is not installed: the beacon benchmark will stop (apt-get install wrk)"
	BENCH_SCALE=$(BENCH_SCALE) $(PY) bench/run.py $(BENCH)

messages: install
	DEBUG=true $(PY) manage.py makemessages -l fr -l en --no-obsolete --ignore '.venv/*' --ignore 'var/*'
	DEBUG=true $(PY) manage.py compilemessages --ignore '.venv/*'

clean:
	rm -rf var/ .pytest_cache .ruff_cache
