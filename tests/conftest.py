from __future__ import annotations

import datetime as dt
import os
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
FIXED_NOW = dt.datetime(2026, 1, 6, 8, 0, tzinfo=dt.timezone.utc)
IN_CI = os.environ.get("CI", "").lower() == "true"


def pytest_sessionstart(session: pytest.Session) -> None:
    """The Dutch catalog as the install compiles it (make), recompiled here when the .po changed."""
    from mailer.i18n_extract import compile_catalogs

    compile_catalogs()


@pytest.fixture(autouse=True)
def english(monkeypatch: pytest.MonkeyPatch):
    """Tests read English unless they ask for Dutch (tests/test_i18n.py does, explicitly)."""
    from mailer import i18n

    monkeypatch.setenv("CAMPAIGN_LANG", "en")
    i18n.setup("en")
    yield
    i18n.setup("en")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh $CAMPAIGN_HOME for each test: real SQLite files on disk."""
    path = tmp_path / "var"
    monkeypatch.setenv("CAMPAIGN_HOME", str(path))
    monkeypatch.delenv("CAMPAIGN_SMTP_URL", raising=False)
    monkeypatch.delenv("CAMPAIGN_SMTP_PASSWORD", raising=False)
    return path


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """A copy of the project's content (campaigns, templates, contacts) to break on purpose."""
    return copy_project(tmp_path / "project")


def copy_project(dest: Path) -> Path:
    """Copy the project's content (campaigns, templates, the example contacts) to ``dest``."""
    for name in ("campaigns", "templates"):
        shutil.copytree(ROOT / name, dest / name)
    (dest / "contacts").mkdir()
    shutil.copy(ROOT / "contacts" / "example.csv", dest / "contacts" / "example.csv")
    return dest


# The bundled campaign is for an election that is past. Tests that plan on the real clock use a
# copy of it for an election this far ahead, made the way `campaign new --from-campaign` makes one:
# another election_day in campaign.toml, the same folder name (gr2026) and content.
ELECTION_AHEAD = (dt.date.today() + dt.timedelta(days=400)).isoformat()


def for_election(root: Path, day: str | dt.date, campaign: str = "gr2026") -> Path:
    """Make the campaign in the project copy ``root`` one for the election of ``day``."""
    path = root / "campaigns" / campaign / "campaign.toml"
    text = path.read_text(encoding="utf-8")
    changed = re.sub(r"(?m)^election_day = .*$", f"election_day = {day}", text)
    assert changed != text or f"election_day = {day}" in text
    path.write_text(changed, encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def project_ahead(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy (not to be changed) whose campaign is for the election of ELECTION_AHEAD."""
    return for_election(copy_project(tmp_path_factory.mktemp("ahead") / "project"), ELECTION_AHEAD)


@pytest.fixture
def run(home: Path):
    """Invoke ``campaign`` in-process against the real project; returns the click Result."""
    runner = CliRunner()

    def invoke(*args: str, root: Path = ROOT, input: str | None = None):
        return runner.invoke(__import__("cli").cli, ["--project", str(root), *args], input=input,
                             catch_exceptions=False)

    return invoke


CONFIGURED_SETTINGS = """\
[sender]
name = "Leger des Heils"
address = "campagne@zender.test-org.nl"
reply_to = "reacties@zender.test-org.nl"
contact = "Leger des Heils, Postbus 1234, 9999 ZZ Teststad"
optout_address = "afmelden@zender.test-org.nl"
optout_url = ""

[test]
recipients = ["staf@zender.test-org.nl"]

[signatory]
name = "Anne de Vries"
role = "beleidsadviseur"
phone = "+31 36 000 00 00"
email = "anne.devries@zender.test-org.nl"
"""


@pytest.fixture
def configured_home(home: Path) -> Path:
    """A home whose settings name a (test) sender that is not on an example domain."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "settings.toml").write_text(CONFIGURED_SETTINGS, encoding="utf-8")
    return home


def require_tool(path: str) -> None:
    """Skip when a system tool is missing, except under CI, where it is a failure."""
    if shutil.which(path) is None:
        if IN_CI:
            pytest.fail(f"{path} is not installed; .ci/run installs it (make browser)")
        pytest.skip(f"{path} is not installed")
