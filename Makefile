# Two commands for a fresh machine (see README):
#   make demo   the main job on the embedded defaults
#   make test   the whole test suite (what .ci/run runs)
# Each installs what it needs first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

PO     := mailer/locale/nl/LC_MESSAGES/campaign.po
MO     := $(PO:.po=.mo)

.PHONY: demo test browser mailservers golden bench clean catalog

# The install compiles the Dutch catalog: the .po is in git, the .mo is built (never committed).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/pybabel -q compile -D campaign -d mailer/locale
	touch $(STAMP)

$(MO): $(PO) $(STAMP)
	$(BIN)/pybabel -q compile -D campaign -d mailer/locale

# After adding or changing a message: extract, merge into the .po, then translate the new
# (empty or fuzzy) entries by hand; docs/glossary.md lists the words to use.
catalog: $(STAMP)
	$(BIN)/pybabel -q extract -F babel.cfg -k N_ --no-wrap -o mailer/locale/campaign.pot .
	$(BIN)/pybabel -q update -D campaign -i mailer/locale/campaign.pot -d mailer/locale --no-wrap

demo: $(STAMP) $(MO)
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

# Debian's Dovecot (IMAP) and Postfix for the inbox tests, which start their own on loopback
# ports from throwaway configurations; installed only when missing. Postfix is installed
# without a configuration of its own ("No configuration"), and neither is started here.
mailservers:
	@command -v dovecot >/dev/null 2>&1 && command -v postfix >/dev/null 2>&1 || { \
	  echo "Installing Debian's dovecot-imapd and postfix for the inbox tests"; \
	  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd postfix >/dev/null; }

test: $(STAMP) $(MO) browser mailservers
	$(BIN)/python -m pytest

golden: $(STAMP) $(MO)
	$(BIN)/python -m tests.golden

bench: $(STAMP) $(MO)
	$(BIN)/python bench/run.py --connections 2,4
	$(BIN)/python bench/inbox.py

clean:
	rm -rf $(VENV) out $(MO)
