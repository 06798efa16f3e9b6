"""Where things are: the project root (content and templates) and the home folder (state)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from . import store
from .content import Campaign, find_campaign, load_campaign
from .settings import DeploymentSettings, campaign_home, load_deployment_settings

DEFAULT_CAMPAIGN = "gr2026"


@dataclass(frozen=True)
class Project:
    """A project root with ``campaigns/``, ``templates/`` and ``contacts/``, and its state folder."""

    root: Path
    home: Path
    campaign_name: str = DEFAULT_CAMPAIGN

    @classmethod
    def at(cls, root: Path | None = None, *, campaign: str = DEFAULT_CAMPAIGN) -> "Project":
        root = (root or Path.cwd()).resolve()
        return cls(root=root, home=campaign_home(root).resolve(), campaign_name=campaign)

    @property
    def templates(self) -> Path:
        return self.root / "templates"

    @property
    def outbox(self) -> Path:
        return self.home / "outbox"

    @property
    def render_cache(self) -> Path:
        """Rendered mails kept between commands; no personal data (contact fields are placeholders)."""
        return self.home / "cache" / "render"

    @property
    def simulation(self) -> Path:
        return self.home / "simulation" / self.campaign_name

    def owns_folder(self, path: Path) -> bool:
        """Whether ``path`` is one of the tool's own output folders (under the state folder or
        ``out/``), whose mode it may tighten, rather than a folder a person chose with ``--out``."""
        path = path.resolve()
        return any(path == base or base in path.parents for base in (self.home, self.root / "out"))

    @property
    def campaign_folder(self) -> Path:
        return find_campaign(self.root, self.campaign_name)

    def load_campaign(self) -> Campaign:
        return load_campaign(self.campaign_folder)

    def deployment(self) -> DeploymentSettings:
        from . import files

        # Older versions left the state folder and settings readable by others: tighten on use.
        files.tighten(self.home, files.DIR_MODE)
        files.tighten(self.home / "settings.toml", files.FILE_MODE)
        return load_deployment_settings(self.home)

    def connect(self) -> sqlite3.Connection:
        return store.connect(self.home)

    @contextmanager
    def db(self) -> Iterator[sqlite3.Connection]:
        """``with project.db() as conn:`` the state database, closed afterwards."""
        conn = store.connect(self.home)
        try:
            yield conn
        finally:
            conn.close()

    @cached_property
    def db_exists(self) -> bool:
        return store.db_path(self.home).exists()
