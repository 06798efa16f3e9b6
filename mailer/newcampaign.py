"""``campaign new``: write a campaign folder for another election, from a checklist document
(:mod:`mailer.checklist`) or from an existing campaign, and say what a person must look at.

Everything is written into a temporary folder beside the target, read back with the same
loader that ``build`` uses, and only then moved into place: a refusal leaves nothing behind.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
import shutil
import tomllib
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .i18n import _
from .checklist import Block, Checklist, Footnote, ListBlock, Paragraph, Run, Subheading, Theme, plain, slug_of
from .errors import CampaignError, ChecklistError, OutputError

SUBJECT_MAX = 50
PREHEADER_MIN, PREHEADER_MAX = 40, 100
RECOMMENDATIONS = "Onze aanbevelingen"
SOURCES = "Noten"
# Query parameters that only say where a click came from: dropped from every link.
TRACKING = re.compile(r"^(utm_\w+|fbclid|gclid|dclid|gbraid|wbraid|msclkid|mc_cid|mc_eid|_hsenc|_hsmi|igshid|yclid|"
                      r"mkt_tok|_ga|_gl)$", re.I)
_SUPER = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")

# What a campaign.toml holds when no campaign is given to copy from: the bundled campaign's
# organisation, links, salutations and sending policy (its election facts aside).
DEFAULTS: dict[str, Any] = {
    "name": "",
    "election_name": "gemeenteraadsverkiezingen",
    "election_day": dt.date(2030, 3, 20),
    "list_id": "",
    "organisation": {"name": "Leger des Heils", "article": "het", "website": "https://www.legerdesheils.nl"},
    "links": {"own_domains": ["legerdesheils.nl"],
              "utm": {"utm_source": "", "utm_medium": "email", "utm_campaign": ""}},
    "copy": {"salutation": "Geachte {name},", "salutation_fallback": "Geachte heer, mevrouw,", "fact_years": []},
    "contacts": {"default_basis": "published-address"},
    "schedule": {"timezone": "Europe/Amsterdam", "cadence_days": 7, "weekdays": ["tue", "wed", "thu"],
                 "window": ["09:00", "16:00"], "public_holidays": True, "min_days_before_election": 14,
                 "rate_per_minute": 60, "blackouts": []},
}


@dataclass(frozen=True)
class NewMail:
    number: int
    file: str
    theme: str
    subject: str
    draft: bool


@dataclass(frozen=True)
class NewCampaign:
    """What ``campaign new`` wrote, and what a person must look at before it can be scheduled."""

    folder: Path
    source: str  # the document or the campaign it came from
    mails: tuple[NewMail, ...]
    review: tuple[str, ...]

    def as_dict(self) -> dict:
        return {"folder": str(self.folder), "source": self.source, "review": list(self.review),
                "mails": [{"number": m.number, "file": m.file, "theme": m.theme, "subject": m.subject,
                           "draft": m.draft} for m in self.mails]}


# --- entry point ----------------------------------------------------------------------------

def new_campaign(root: Path, name: str, *, election_day: dt.date, election_name: str | None = None,
                 checklist: Path | None = None, base: str | None = None, force: bool = False) -> NewCampaign:
    """Write ``campaigns/NAME/`` from a checklist document (and/or a base campaign)."""
    from .content import find_campaign, load_campaign

    if checklist is None and base is None:
        raise CampaignError(_("give a checklist document (--checklist FILE) or a campaign to copy (--from-campaign "
                               "NAME)"))
    campaigns = root / "campaigns"
    target = campaigns / name
    if base is not None and base == name:
        raise OutputError(_("the new campaign cannot replace the campaign it is made from ({base}); choose another "
                             "name").format(base=base))
    if (target.exists() or target.is_symlink()) and not force:
        raise OutputError(_("{target} exists already; choose another name, or give --force to replace it").format(
            target=target))
    if target.exists() and not target.is_dir():
        raise OutputError(_("{target} is a file, not a campaign folder; move it away first").format(target=target))
    review: list[str] = []
    base_campaign = None
    config = copy.deepcopy(DEFAULTS)
    config["election_day"] = election_day
    if base is not None:
        folder = find_campaign(root, base)
        base_campaign = load_campaign(folder)
        config = tomllib.loads((folder / "campaign.toml").read_text(encoding="utf-8"))
    else:
        _fill_missing(config, _bundled_settings(root))
    document = read_document(checklist) if checklist is not None else None
    settings = _settings(config, name=name, base=base_campaign, document=document, election_day=election_day,
                         election_name=election_name, review=review)
    if document is not None:
        intro, mails = _from_document(document, settings, review)
        source = str(checklist)
    else:
        assert base_campaign is not None
        intro, mails = _from_base(base_campaign, settings, review)
        source = _("campaign {name}").format(name=base)
    _election_mentions(intro, mails, settings, review)
    origin = f"campaign {base}" if base is not None else "the defaults"
    return _write(root, target, settings, intro, mails, source=source, origin=origin, review=review, force=force)


def read_document(path: Path) -> Checklist:
    from .checklist import read_checklist

    return read_checklist(path)


# --- campaign.toml --------------------------------------------------------------------------

def _settings(config: dict[str, Any], *, name: str, base, document: Checklist | None, election_day: dt.date,
              election_name: str | None, review: list[str]) -> dict[str, Any]:
    """The new campaign.toml: the base's (or default) organisation, links, salutations and policy,
    with this campaign's own election facts, List-Id and UTM values."""
    from .headers import CAMPAIGN_NAME_MAX

    old_slug = base.slug if base is not None else None
    old_day = base.settings.election_day if base is not None else None
    config["election_day"] = election_day
    if election_name:
        config["election_name"] = election_name
    title = document.title if document is not None else ""
    if title:
        if len(title) > CAMPAIGN_NAME_MAX:
            cut = _cut(title, CAMPAIGN_NAME_MAX)
            review.append(_("campaign.toml: name: the document's title was shortened to '{name}'").format(name=cut))
            title = cut
        config["name"] = title
    elif not config.get("name"):
        config["name"] = f"Campagne {name}"
        review.append(_("campaign.toml: name: the document has no title; the name is '{name}': give a real "
                        "one").format(name=config["name"]))
    list_id = str(config.get("list_id") or "")
    rest = list_id.split(".", 1)[1] if "." in list_id else "campaign.legerdesheils"
    config["list_id"] = f"{name.lower()}.{rest}"
    links = config.setdefault("links", {})
    utm = links.setdefault("utm", {})
    for key in ("utm_source", "utm_campaign"):
        value = str(utm.get(key) or "")
        if old_slug and old_slug in value:
            utm[key] = value.replace(old_slug, name)
        elif key == "utm_source":
            utm[key] = f"checklist-{name}"
        else:
            utm[key] = f"{name}-checklist"
    utm.setdefault("utm_medium", "email")
    schedule = config.setdefault("schedule", {})
    blackouts = schedule.get("blackouts") or []
    if blackouts and old_day is not None and old_day.year != election_day.year:
        years = election_day.year - old_day.year
        shifted = []
        for b in blackouts:
            shifted.append({**b, "from": _shift(b["from"], years), "to": _shift(b["to"], years)})
        schedule["blackouts"] = shifted
        review.append(_("campaign.toml: schedule.blackouts moved {years} year(s) with the election; check the "
                        "dates (school holidays differ from year to year)").format(years=f"{years:+d}"))
    return config


def _bundled_settings(root: Path) -> dict[str, Any]:
    """The bundled campaign's campaign.toml, when the project has it (else nothing)."""
    from .project import DEFAULT_CAMPAIGN

    try:
        return tomllib.loads((root / "campaigns" / DEFAULT_CAMPAIGN / "campaign.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}


def _fill_missing(config: dict[str, Any], reference: dict[str, Any]) -> None:
    """Keys the bundled campaign has and the defaults lack (added since) are taken from it."""
    for key, value in reference.items():
        if key not in config:
            config[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(config[key], dict):
            _fill_missing(config[key], value)


def _shift(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value):
            return "[\n" + "".join(f"  {_toml_value(v)},\n" for v in value) + "]"
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(_("no TOML for {given}").format(given=repr(value)))


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key, ensure_ascii=False)


def dump_toml(data: dict[str, Any], *, header: str = "") -> str:
    """TOML for a campaign.toml: scalars first, then each table (nested tables as [a.b])."""
    out = [header] if header else []

    def table(prefix: str, values: dict[str, Any]) -> None:
        scalars = [(k, v) for k, v in values.items() if not isinstance(v, dict)]
        tables = [(k, v) for k, v in values.items() if isinstance(v, dict)]
        if prefix:
            out.append(f"\n[{prefix}]")
        for k, v in scalars:
            out.append(f"{_toml_key(k)} = {_toml_value(v)}")
        for k, v in tables:
            table(f"{prefix}.{_toml_key(k)}" if prefix else _toml_key(k), v)

    table("", data)
    return "\n".join(out).strip("\n") + "\n"


# --- mails from a document ------------------------------------------------------------------

def _cut(text: str, limit: int) -> str:
    """At most ``limit`` characters, cut at a word (never within one)."""
    if len(text) <= limit:
        return text
    cut = text[: limit + 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > 0 else text[:limit]).rstrip(" ,;:-–(")


def draft_subject(theme: Theme) -> tuple[str, bool]:
    """The theme's title as subject; shortened at a word when it is longer than phones show."""
    title = " ".join(theme.title.split())
    if len(title) <= SUBJECT_MAX:
        return title, False
    return _cut(title, SUBJECT_MAX), True


def draft_preheader(theme: Theme) -> tuple[str, bool]:
    """The first sentences of the theme's text, 40 to 100 characters, cut at a word with '…'."""
    texts = [plain(b.runs) for b in theme.blocks if isinstance(b, Paragraph)]
    texts += [plain(i.runs) for b in theme.blocks if isinstance(b, ListBlock) for i in b.items]
    text = " ".join(" ".join(texts).split()) or theme.title
    sentences = re.split(r"(?<=[.!?])\s+", text)
    chosen = ""
    for s in sentences:
        candidate = f"{chosen} {s}".strip()
        if len(candidate) > PREHEADER_MAX:
            break
        chosen = candidate
        if len(chosen) >= PREHEADER_MIN:
            break
    if len(chosen) >= PREHEADER_MIN:
        return chosen, False
    if len(text) <= PREHEADER_MAX:
        return text, False
    return _cut(text, PREHEADER_MAX - 1) + "…", True


_ESCAPE = re.compile(r"([\\`*_\[\]<>|])")


def _escape(text: str) -> str:
    # Content is expanded by Jinja ({{ election.year }}): a brace pair of the document's own stays text.
    text = re.sub(r"\{(?=[{%#])", '{{ "{" }}', text)
    return _ESCAPE.sub(r"\\\1", text)


def _escape_start(text: str) -> str:
    """A block must not start with what Markdown reads as a heading, list or quote marker."""
    m = re.match(r"^(\s*)(#{1,6}(?=\s|$)|[-+](?=\s)|\d{1,9}(?=[.)]\s)|>|=+\s*$)", text)
    if not m:
        return text
    head = m.group(2)
    if head[0].isdigit():
        return text[: m.end()] + "\\" + text[m.end() :]
    return m.group(1) + "\\" + text[len(m.group(1)) :]


def clean_link(url: str) -> tuple[str, list[str]]:
    """The link without parameters that say where a click came from; and the names dropped."""
    parts = urllib.parse.urlsplit(url)
    if not parts.query:
        return url, []
    pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    kept = [(k, v) for k, v in pairs if not TRACKING.match(k)]
    dropped = [k for k, _ in pairs if TRACKING.match(k)]
    if not dropped:
        return url, []
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(kept))), dropped


class _Writer:
    """Markdown for one mail; footnotes renumbered from ¹ in the order they are referenced."""

    def __init__(self, where: str, settings: dict[str, Any], review: list[str]) -> None:
        self.where = where
        self.review = review
        self.own = tuple(d.lower() for d in settings.get("links", {}).get("own_domains", []))
        self.notes: dict[str, int] = {}

    def runs(self, runs: tuple[Run, ...]) -> str:
        out = []
        for r in runs:
            if r.note is not None:
                n = self.notes.setdefault(r.note, len(self.notes) + 1)
                out.append(str(n).translate(_SUPER))
            elif r.href:
                out.append(self.link(r.text, r.href))
            else:
                out.append(_escape(r.text))
        return _escape_start("".join(out).strip())

    def link(self, text: str, href: str) -> str:
        clean, dropped = clean_link(href.strip())
        if dropped:
            host = (urllib.parse.urlsplit(clean).hostname or "").lower()
            own = any(host == d or host.endswith("." + d) for d in self.own)
            if own:
                self.review.append(_("{where}: dropped the tracking parameters {parameters} from the link to {link}; "
                                     "the organisation's own links get this campaign's UTM values when "
                                     "rendered").format(where=self.where, parameters=", ".join(dropped), link=clean))
            else:
                self.review.append(_("{where}: dropped the tracking parameters {parameters} from the link to "
                                     "{link}").format(where=self.where, parameters=", ".join(dropped), link=clean))
        if text.strip() == href.strip() or text.strip() == clean:
            return f"<{clean}>"
        target = clean if re.fullmatch(r"[^\s()<>]+", clean) else f"<{clean}>"
        return f"[{_escape(text.strip())}]({target})"

    def list(self, block: ListBlock, indent: str = "") -> list[str]:
        lines = []
        for n, item in enumerate(block.items, start=1):
            marker = f"{n}." if block.ordered else "-"
            lines.append(f"{indent}{marker} {self.runs(item.runs)}")
            if item.children:
                lines += self.list(item.children, indent + " " * (len(marker) + 1))
        return lines

    def blocks(self, blocks: tuple[Block, ...], *, recommendations: bool) -> list[str]:
        out: list[str] = []
        previous: Block | None = None
        for b in blocks:
            if isinstance(b, Paragraph):
                out.append(self.runs(b.runs))
            elif isinstance(b, Subheading):
                out.append(f"{'#' * min(b.level + 1, 4)} {_escape(b.text)}")
            elif isinstance(b, ListBlock):
                if recommendations and isinstance(previous, Paragraph) and not any(
                        isinstance(x, ListBlock) for x in blocks[: blocks.index(b)]):
                    out.append(f"## {RECOMMENDATIONS}")
                out.append("\n".join(self.list(b)))
            previous = b
        return out

    def sources(self, footnotes: tuple[Footnote, ...]) -> list[str]:
        by_label = {f.label: f for f in footnotes}
        for f in footnotes:  # unreferenced ones (a scan lost the mark) go last
            self.notes.setdefault(f.label, len(self.notes) + 1)
        lines = []
        for label, n in sorted(self.notes.items(), key=lambda kv: kv[1]):
            note = by_label.get(label)
            if note is not None:
                lines.append(f"{str(n).translate(_SUPER)} {self.runs(note.runs)}")
        return [f"## {SOURCES}", *lines] if lines else []


def _front_matter(values: dict[str, Any]) -> str:
    lines = ["+++"] + [f"{k} = {_toml_value(v)}" for k, v in values.items()] + ["+++", ""]
    return "\n".join(lines)


def _from_document(document: Checklist, settings: dict[str, Any], review: list[str]) -> tuple[str, list[tuple[str, str]]]:
    review.extend(document.warnings)
    intro_writer = _Writer("intro.md", settings, review)
    intro_parts = intro_writer.blocks(document.intro, recommendations=False)
    intro = "\n\n".join(intro_parts).strip() + "\n" if intro_parts else ""
    year, name = settings["election_day"].year, str(settings.get("election_name") or "")
    intro, _changed = election_placeholders(intro, year=year, name=name)
    mails: list[tuple[str, str]] = []
    slugs: set[str] = set()
    subjects: set[str] = set()
    width = max(2, len(str(len(document.themes))))
    for theme in document.themes:
        slug = slug_of(theme.title)
        while slug in slugs:
            slug = f"{slug}-{theme.number}"
        slugs.add(slug)
        file = f"{theme.number:0{width}d}-{slug}.md"
        where = f"mails/{file}"
        subject, shortened = draft_subject(theme)
        if subject.casefold() in subjects:
            subject = _cut(subject, SUBJECT_MAX - 4) + f" ({theme.number})"
        subjects.add(subject.casefold())
        if shortened:
            review.append(_("{where}: subject shortened to '{subject}' (the theme is {length} characters; "
                            "phones show about {max})").format(where=where, subject=subject, length=len(theme.title),
                                                               max=SUBJECT_MAX))
        preheader, cut = draft_preheader(theme)
        if cut:
            review.append(_("{where}: preheader cut at a word: '{preheader}'").format(where=where, preheader=preheader))
        elif not PREHEADER_MIN <= len(preheader) <= PREHEADER_MAX:
            review.append(_("{where}: preheader is {length} characters; {min} to {max} show best: write "
                            "one").format(where=where, length=len(preheader), min=PREHEADER_MIN, max=PREHEADER_MAX))
        writer = _Writer(where, settings, review)
        parts = writer.blocks(theme.blocks, recommendations=True)
        if not parts:
            parts = [_escape(theme.title)]
            review.append(_("{where}: the theme has no text in the document; the mail holds only its "
                            "title").format(where=where))
        parts += ["\n\n".join(writer.sources(theme.footnotes))] if theme.footnotes else []
        front = _front_matter({"number": theme.number, "theme": " ".join(theme.title.split()), "subject": subject,
                               "preheader": preheader, "draft": True})
        body, _changed = election_placeholders("\n\n".join(p for p in parts if p), year=year, name=name)
        mails.append((file, front + "\n" + body + "\n"))
    years = fact_years([intro] + [text for _, text in mails], year=year)
    settings.setdefault("copy", {})["fact_years"] = years
    if years:
        review.append(_("campaign.toml: copy.fact_years is {years}: the years the document names outside a "
                        "sentence about the election (a study, a law), which `check` allows; check that none is an "
                        "election").format(years=years))
    return intro, mails


# --- mails from a base campaign -------------------------------------------------------------

def _from_base(base, settings: dict[str, Any], review: list[str]) -> tuple[str, list[tuple[str, str]]]:
    """The base campaign's intro and mails, with its election year and name replaced by the new ones."""
    old_year = str(base.settings.election_day.year)
    new_year = str(settings["election_day"].year)
    old_name, new_name = base.settings.election_name, settings.get("election_name", base.settings.election_name)

    def renew(text: str, where: str) -> str:
        # A text that names the old election literally names it by the campaign's fact instead.
        text, changed = election_placeholders(text, year=old_year, name=old_name)
        if changed:
            review.append(_("{where}: {count} literal mention(s) of the old election ({old_name} {old_year}) now "
                            "name this campaign's election ({new_name} {new_year}) through {{{{ election.year }}}} "
                            "and {{{{ election.name }}}}; check each").format(
                where=where, count=changed, old_name=old_name, old_year=old_year, new_name=new_name,
                new_year=new_year))
        return text

    intro_path = base.folder / "intro.md"
    intro = renew(intro_path.read_text(encoding="utf-8"), "intro.md") if intro_path.exists() else ""
    mails = [(m.path.name, renew(m.path.read_text(encoding="utf-8"), f"mails/{m.path.name}")) for m in base.mails]
    return intro, mails


_LINKS = re.compile(r"\]\([^)]*\)|<https?://[^>]*>|https?://\S+")
_YEAR = re.compile(r"(?<![\d.,/-])(1[89]\d\d|2[01]\d\d)(?!\d)")
_SENTENCES = re.compile(r"(?<=[.!?;])\s+|\n\s*\n")


def _prose(text: str, fn) -> str:
    """Apply ``fn`` to each sentence of ``text`` outside link targets."""
    out, pos = [], 0
    for m in _LINKS.finditer(text):
        out.append(fn(text[pos : m.start()]))
        out.append(m.group(0))
        pos = m.end()
    out.append(fn(text[pos:]))
    return "".join(out)


def election_placeholders(text: str, *, year: int | str, name: str) -> tuple[str, int]:
    """The election named by the campaign's single fact: in a sentence about the election its year
    becomes ``{{ election.year }}``; its name becomes ``{{ election.name }}`` wherever it stands."""
    count = 0

    def sentence(part: str) -> str:
        nonlocal count
        pieces = _SENTENCES.split(part)
        seps = _SENTENCES.findall(part)
        done = []
        for piece in pieces:
            if "verkiezing" in piece.lower():
                piece, n = re.subn(rf"(?<![\d.,/-]){year}(?!\d)", "{{ election.year }}", piece)
                count += n
            if name:
                piece, n = re.subn(rf"\b{re.escape(name)}\b", "{{ election.name }}", piece)
                count += n
            done.append(piece)
        return "".join(p + (seps[i] if i < len(seps) else "") for i, p in enumerate(done))

    return _prose(text, sentence), count


def fact_years(texts: list[str], *, year: int) -> list[int]:
    """Years the texts name outside sentences about an election: facts (a study, a law)."""
    found: set[int] = set()

    def collect(part: str) -> str:
        for piece in _SENTENCES.split(part):
            if "verkiezing" not in piece.lower():
                found.update(int(y) for y in _YEAR.findall(piece) if int(y) != year)
        return part

    for text in texts:
        _prose(re.sub(r"^\+\+\+.*?\+\+\+", "", text, flags=re.S), collect)
    return sorted(found)


def _election_mentions(intro: str, mails: list[tuple[str, str]], settings: dict[str, Any], review: list[str]) -> None:
    """A year named beside the word 'verkiezingen' that is not this election's year."""
    year = settings["election_day"].year
    for where, text in [("intro.md", intro)] + [(f"mails/{f}", t) for f, t in mails]:
        for m in re.finditer(r"verkiezing\w*\D{0,40}?((?:19|20)\d\d)", text, re.I):
            if int(m.group(1)) != year:
                review.append(_("{where}: the text names the election of {named}, but this campaign's election "
                                "day is in {year}: correct the text").format(where=where, named=m.group(1), year=year))


# --- writing --------------------------------------------------------------------------------

HEADER = """\
# Written by `campaign new`. The election facts, List-Id and UTM values are this campaign's;
# organisation, links, salutations and the sending policy come from {origin}.
# Sender, test recipients and SMTP are deployment settings ($CAMPAIGN_HOME/settings.toml).
"""


def _write(root: Path, target: Path, settings: dict[str, Any], intro: str, mails: list[tuple[str, str]], *,
           source: str, origin: str, review: list[str], force: bool) -> NewCampaign:
    import os

    from .content import load_campaign

    campaigns = target.parent
    campaigns.mkdir(parents=True, exist_ok=True)
    temp = campaigns / f".{target.name}.new-{os.getpid()}"
    if temp.exists():
        shutil.rmtree(temp)
    try:
        (temp / "mails").mkdir(parents=True)
        (temp / "campaign.toml").write_text(dump_toml(settings, header=HEADER.format(origin=origin)), encoding="utf-8")
        if intro:
            (temp / "intro.md").write_text(intro, encoding="utf-8")
        for file, text in mails:
            (temp / "mails" / file).write_text(text, encoding="utf-8")
        try:
            loaded = load_campaign(temp)
        except CampaignError as exc:
            raise ChecklistError(_("the campaign made from {source} does not read back, so nothing was written: "
                                   "{reason}").format(
                source=source, reason=str(exc).replace(str(temp), str(target)))) from None
        if target.exists():
            if force:
                shutil.rmtree(target)
            else:
                raise OutputError(_("{target} exists already; choose another name, or give --force to replace "
                                    "it").format(
                    target=target))
        temp.rename(target)
    except OSError as exc:
        raise OutputError(_("could not write {target}: {strerror}; nothing was written").format(
            target=target, strerror=exc.strerror)) from None
    finally:
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)
    drafts = [m for m in loaded.mails if m.draft]
    if drafts:
        review.append(_("{count} mail(s) carry draft = true: edit each (subject, preheader, text), then delete "
                        "that line; `campaign schedule` refuses while any mail is a draft").format(count=len(drafts)))
    return NewCampaign(
        folder=target, source=source,
        mails=tuple(NewMail(m.number, m.path.name, m.theme, m.subject, m.draft) for m in loaded.mails),
        review=tuple(review),
    )
