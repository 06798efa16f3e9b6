# Two commands for a fresh machine (see README):
#   make demo   the main job on the embedded defaults
#   make test   the whole test suite (what .ci/run runs)
# Each installs what it needs first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test browser dovecot golden bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/campaign init
	$(BIN)/campaign contacts import contacts/example.csv
	$(BIN)/campaign build
	$(BIN)/campaign simulate
	$(BIN)/campaign status

# Debian's chromium for the browser tests; installed only when missing.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Installing Debian's chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# Debian's Dovecot (IMAP) for the XOAUTH2 tests (tests/test_oauth_imap.py); the tests start
# their own instance with their own configuration. Installed only when missing.
dovecot:
	@command -v dovecot >/dev/null 2>&1 || test -x /usr/sbin/dovecot || { \
	  echo "Installing Debian's dovecot-imapd for the IMAP tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd >/dev/null; \
	  systemctl disable --now dovecot >/dev/null 2>&1 || true; }

test: $(STAMP) browser dovecot
	$(BIN)/python -m pytest

golden: $(STAMP)
	$(BIN)/python -m tests.golden

bench: $(STAMP)
	$(BIN)/python bench/run.py --connections 2,4

clean:
	rm -rf $(VENV) out
