"""Stage 1: read a campaign folder into frozen dataclasses.

A mail file is TOML front matter between ``+++`` lines, then a Markdown body.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .i18n import _
from .errors import ContentError
from .headers import TEXT_MAX, length_problem, value_problem
from .settings import CampaignSettings, load_campaign_settings

FRONT_MATTER_FIELDS = {"number": int, "theme": str, "subject": str, "preheader": str}
# Optional: `campaign new` writes ``draft = true``; `check` lists drafts and `schedule` refuses them.
OPTIONAL_FIELDS = {"draft": bool}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True)
class Mail:
    """One mail of the series, as written: front matter plus Markdown body."""

    number: int
    theme: str
    subject: str
    preheader: str
    body: str
    path: Path
    body_line: int  # the file line on which the body starts, for error messages
    draft: bool = False  # written by `campaign new`; a person removes it after the editing pass

    @property
    def slug(self) -> str:
        return self.path.stem


@dataclass(frozen=True)
class Campaign:
    """A campaign folder: its settings, the series introduction and the mails in order."""

    settings: CampaignSettings
    intro: str
    mails: tuple[Mail, ...]

    @property
    def slug(self) -> str:
        return self.settings.slug

    @property
    def folder(self) -> Path:
        return self.settings.folder

    def mail(self, number: int) -> Mail:
        for m in self.mails:
            if m.number == number:
                return m
        raise ContentError(_("{slug}: there is no mail {number} (mails are 1 to {count})").format(
            slug=self.slug, number=number, count=len(self.mails)))

    def source_files(self) -> list[Path]:
        """Every file whose change changes the rendered mails (the templates aside)."""
        files = [self.folder / "campaign.toml"] + [m.path for m in self.mails]
        intro = self.folder / "intro.md"
        if intro.exists():
            files.append(intro)
        return files


def parse_mail(path: Path) -> Mail:
    """Read one mail file; errors name the file, line and field."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ContentError(_("{path}: not UTF-8 text ({reason} at byte {start})").format(
            path=path, reason=exc.reason, start=exc.start)) from None
    lines = text.splitlines()
    if not lines or lines[0].strip() != "+++":
        raise ContentError(_("{path}:1: the file must start with a '+++' line opening the front matter").format(
            path=path))
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "+++")
    except StopIteration:
        raise ContentError(_("{path}:1: the front matter opened here is never closed with '+++'").format(
            path=path)) from None
    try:
        meta = tomllib.loads("\n".join(lines[1:end]))
    except tomllib.TOMLDecodeError as exc:
        # tomllib reports "(at line N, column M)" relative to the front matter.
        m = re.search(r"line (\d+)", str(exc))
        line = int(m.group(1)) + 1 if m else 2
        raise ContentError(_("{path}:{line}: front matter: {exc}").format(path=path, line=line, exc=exc)) from None

    def field_line(name: str) -> int:
        for i in range(1, end):
            if lines[i].lstrip().startswith(name):
                return i + 1
        return 1

    for name, kind in FRONT_MATTER_FIELDS.items():
        if name not in meta:
            raise ContentError(_("{path}:{line}: field '{name}': missing from the front matter").format(
                path=path, line=end + 1, name=name))
        value = meta[name]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ContentError(_("{path}:{line}: field '{name}': expected {expected_type}, got {given}").format(
                path=path, line=field_line(name), name=name, expected_type=kind.__name__, given=repr(value)))
        if kind is str and (not value.strip() or _CONTROL.search(value) or "\n" in value):
            raise ContentError(_("{path}:{line}: field '{name}': empty or holds a line break").format(
                path=path, line=field_line(name), name=name))
        if name == "subject":
            problem = value_problem(value) or length_problem(value.strip(), TEXT_MAX)
            if problem:
                raise ContentError(_("{path}:{line}: field 'subject': {problem}").format(
                    path=path, line=field_line(name), problem=problem))
    for name, kind in OPTIONAL_FIELDS.items():
        if name in meta and not isinstance(meta[name], kind):
            raise ContentError(_("{path}:{line}: field '{name}': expected true or false, got {meta}").format(
                path=path, line=field_line(name), name=name, meta=repr(meta[name])))
    unknown = sorted(set(meta) - set(FRONT_MATTER_FIELDS) - set(OPTIONAL_FIELDS))
    if unknown:
        raise ContentError(_("{path}:{line}: field '{unknown}': unknown (expected {items})").format(
            path=path, line=field_line(unknown[0]), unknown=unknown[0],
            items=', '.join([*FRONT_MATTER_FIELDS, *OPTIONAL_FIELDS])))
    body = "\n".join(lines[end + 1 :]).strip("\n") + "\n"
    if not body.strip():
        raise ContentError(_("{path}:{line}: the mail has no body").format(path=path, line=end + 2))
    return Mail(
        number=meta["number"],
        theme=meta["theme"].strip(),
        subject=meta["subject"].strip(),
        preheader=meta["preheader"].strip(),
        body=body,
        path=path,
        # The line of the body's first text: the blank lines that strip("\n") removed are skipped.
        body_line=end + 2 + next((i for i, line in enumerate(lines[end + 1:]) if line), 0),
        draft=meta.get("draft", False),
    )


def load_campaign(folder: Path) -> Campaign:
    """Read a campaign folder: ``campaign.toml``, ``intro.md`` and ``mails/*.md``."""
    settings = load_campaign_settings(folder)
    intro_path = folder / "intro.md"
    intro = intro_path.read_text(encoding="utf-8") if intro_path.exists() else ""
    files = sorted((folder / "mails").glob("*.md"))
    if not files:
        raise ContentError(_("{folder}: no mail files (*.md)").format(folder=folder / 'mails'))
    mails = sorted((parse_mail(p) for p in files), key=lambda m: m.number)
    seen: dict[int, Mail] = {}
    for m in mails:
        if m.number in seen:
            raise ContentError(_("{path}:2: field 'number': {number} is also the number of {name}").format(
                path=m.path, number=m.number, name=seen[m.number].path.name))
        seen[m.number] = m
    expected = list(range(1, len(mails) + 1))
    if [m.number for m in mails] != expected:
        missing = sorted(set(expected) - set(seen))
        raise ContentError(_("{folder}: mails must be numbered 1 to {count} without gaps; missing {missing}").format(
            folder=folder / 'mails', count=len(mails), missing=missing))
    subjects: dict[str, Mail] = {}
    for m in mails:
        key = m.subject.casefold()
        if key in subjects:
            raise ContentError(_("{path}: field 'subject': the same as in {name}").format(
                path=m.path, name=subjects[key].path.name))
        subjects[key] = m
    return Campaign(settings=settings, intro=intro, mails=tuple(mails))


def find_campaign(root: Path, name: str) -> Path:
    """The folder of campaign ``name`` under ``root/campaigns``."""
    folder = root / "campaigns" / name
    if not folder.is_dir():
        available = sorted(p.parent.name for p in (root / "campaigns").glob("*/campaign.toml"))
        hint = f" (available: {', '.join(available)})" if available else ""
        raise ContentError(_("no campaign '{name}' in {folder}{hint}").format(
            name=name, folder=root / 'campaigns', hint=hint))
    return folder
