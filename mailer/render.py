"""Stage 2: render each mail once per campaign.

Jinja (campaign-level values) -> MJML -> HTML with mjml-python -> premailer, plus the text part
from the content itself. Contact fields are not known here: the templates see a
:class:`ContactFields` whose attributes render as placeholders, which :mod:`mailer.personalise`
fills in per contact, cheaply, without running MJML or premailer again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import json
import logging
import re
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .i18n import _
from .content import Campaign, Mail
from .errors import RenderError
from .settings import CampaignSettings, DeploymentSettings

HTML_TEMPLATE = "mail.mjml.j2"
TEXT_TEMPLATE = "mail.txt.j2"
CONTACT_FIELDS = ("salutation", "name", "email", "party", "municipality", "role")
# Placeholders survive Jinja, MJML and premailer untouched: ASCII, no markup, no '{'.
PLACEHOLDER = re.compile(r"%%([cu])\.([a-z_][a-z0-9_]*(?:\.[A-Za-z0-9_\-]+)?)%%")
# Email clients show about this much of the preheader; the rest is padded with invisible
# characters so that the body's first words do not trail into the inbox preview.
REWRAP_START, REWRAP_END = "\x02", "\x03"
PREHEADER_PAD = "&#847;&zwnj;&nbsp;" * 40


class Placeholder(str):
    """A contact field in a template: renders as ``%%c.name%%``; ``|urlencode`` gives ``%%u.name%%``."""

    __slots__ = ()

    def __html__(self) -> str:
        return str(self)


class ContactFields:
    """What templates see as ``contact``: one placeholder per field, extras under ``contact.extra``."""

    def __getattr__(self, name: str) -> Placeholder:
        if name == "extra":
            return _ExtraFields()  # type: ignore[return-value]
        if name not in CONTACT_FIELDS:
            raise AttributeError(_("contact has no field '{name}' (fields: {items}, extra.NAME)").format(
                name=name, items=', '.join(CONTACT_FIELDS)))
        return Placeholder(f"%%c.{name}%%")


class _ExtraFields:
    def __getattr__(self, name: str) -> Placeholder:
        return Placeholder(f"%%c.extra.{name}%%")


def _urlencode(value: Any) -> str:
    if isinstance(value, Placeholder):
        return Placeholder(value.replace("%%c.", "%%u.", 1))
    return urllib.parse.quote(str(value), safe="")


def dutch_date(value: dt.date | dt.datetime, fmt: str = "EEEE d MMMM y") -> str:
    """``woensdag 18 maart 2026``: the machines have no Dutch locale, so Babel formats it."""
    from babel.dates import format_date

    return format_date(value, fmt, locale="nl")


_NUMBERS = "nul een twee drie vier vijf zes zeven acht negen tien elf twaalf".split()


def dutch_number(value: int) -> str:
    """Small numbers in words, as Dutch prose writes them (``negen``); larger ones in digits."""
    return _NUMBERS[value] if 0 <= value < len(_NUMBERS) else str(value)


def with_campaign_utm(url: str, settings: CampaignSettings, *, content: str | None = None) -> str:
    """Links to the organisation's own site carry this campaign's UTM parameters, and no others'."""
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not any(
        host == d or host.endswith("." + d) for d in settings.links.own_domains
    ):
        return url
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if not k.startswith("utm_")]
    query += list(settings.links.utm)
    if content:
        query.append(("utm_content", content))
    scheme = "https" if parts.scheme == "http" else parts.scheme
    path = parts.path or "/"
    return urllib.parse.urlunsplit((scheme, parts.netloc, path, urllib.parse.urlencode(query), parts.fragment))


def wrap(text: str, width: int = 72) -> str:
    """Fill each paragraph of the text part to ``width``; never breaks a word or a link."""
    import textwrap

    out = []
    for paragraph in text.strip("\n").split("\n\n"):
        flat = " ".join(paragraph.split())
        if PLACEHOLDER.search(flat):
            # Its length is known only per contact: personalisation wraps it (see REWRAP).
            out.append(f"{REWRAP_START}{flat}{REWRAP_END}")
        else:
            out.append(textwrap.fill(flat, width=width, break_long_words=False, break_on_hyphens=False))
    return "\n\n".join(out)


@dataclass(frozen=True)
class RenderedMail:
    """One mail rendered for the whole campaign; contact fields are still placeholders."""

    number: int
    total: int
    slug: str
    theme: str
    subject: str
    preheader: str
    mjml: str
    html: str
    text: str
    source: Path

    @property
    def html_bytes(self) -> int:
        return len(self.html.encode("utf-8"))


@dataclass(frozen=True)
class Renderer:
    """The Jinja environment for a templates folder, and the campaign's shared values."""

    templates: Path
    campaign: Campaign
    deployment: DeploymentSettings
    # A folder that keeps rendered mails between processes (see :meth:`render`).
    cache: Path | None = None

    def render_all(self) -> list[RenderedMail]:
        """Render every mail, in order."""
        return [self.render(m) for m in self.campaign.mails]

    def render(self, mail: Mail) -> RenderedMail:
        """Render one mail: Jinja -> MJML -> HTML -> inlined CSS, and the text part.

        A mail whose inputs did not change since it was last rendered in this process comes
        from a cache: the preview re-renders only the mail that was edited. With ``cache``,
        also from a file written by an earlier process: the worker, ``status`` and ``check``
        then skip MJML and premailer (most of their start-up). That file is found by a hash
        of everything the output depends on: the mail and its neighbour's theme, the
        campaign's settings and intro, the sender, every template's bytes, the engine's source
        and the versions of the rendering libraries.
        """
        mails = self.campaign.mails
        index = mails.index(mail)
        following = mails[index + 1] if index + 1 < len(mails) else None
        # The first and the last mail list every theme.
        themes = tuple(m.theme for m in mails) if mail.number in (1, len(mails)) else ()
        inputs = (mail, following.theme if following else None, len(mails),
                  self.campaign.intro if mail.number == 1 else "", self.campaign.settings, self.deployment.sender,
                  self.deployment.signatory, themes)
        key = (_templates_stamp(self.templates), *inputs)
        cached = _RENDER_CACHE.get(key)
        if cached is None:
            stored = self._stored_path(inputs) if self.cache is not None else None
            cached = _load_rendered(stored) if stored is not None else None
            if cached is None:
                cached = self._render(mail)
                if stored is not None:
                    _store_rendered(stored, cached)
            if len(_RENDER_CACHE) > 64:
                _RENDER_CACHE.clear()
            _RENDER_CACHE[key] = cached
        return cached

    def _stored_path(self, inputs: tuple) -> Path:
        digest = hashlib.sha256(_engine_stamp().encode())
        digest.update(_templates_digest(self.templates, _templates_stamp(self.templates)).encode())
        # Frozen dataclasses of strings, numbers, dates and paths: their repr is the content.
        digest.update(repr(inputs).encode())
        return self.cache / f"{digest.hexdigest()}.json"

    def _render(self, mail: Mail) -> RenderedMail:
        from markupsafe import Markup

        from . import markdown

        env = _environment(self.templates)
        settings = self.campaign.settings

        def link(url: str) -> str:
            return with_campaign_utm(url, settings, content=mail.slug)

        facts = content_context(settings)
        intro = (expand(self.campaign.intro, facts, where=self.campaign.folder / "intro.md", first_line=1)
                 if mail.number == 1 and self.campaign.intro else "")
        body = expand(mail.body, facts, where=mail.path, first_line=mail.body_line)
        subject = expand(mail.subject, facts, where=mail.path, first_line=1, field="subject").strip()
        preheader = expand(mail.preheader, facts, where=mail.path, first_line=1, field="preheader").strip()
        intro_tokens = markdown.parse(intro, rewrite_link=link) if intro else []
        body_tokens = markdown.parse(body, rewrite_link=link)
        links: list[str] = []
        intro_text = markdown.to_text(intro_tokens, links) if intro_tokens else ""
        body_text = markdown.to_text(body_tokens, links)
        mails = self.campaign.mails
        index = mails.index(mail)
        sender = self.deployment.sender
        context = {
            "campaign": {
                "name": settings.name,
                "slug": settings.slug,
                "organisation": settings.organisation,
                "website": link(settings.website),
                "website_label": urllib.parse.urlsplit(settings.website).netloc,
                "organisation_in_sentence": settings.organisation_in_sentence,
                "election_name": settings.election_name,
                "election_day": settings.election_day,
                "total": len(mails),
                "themes": [m.theme for m in mails],
                "rhythm": rhythm(settings.schedule.cadence_days),
                "follow_up_opening": expand(settings.follow_up_opening, facts, where=settings.folder / "campaign.toml",
                                            first_line=1, field="copy.follow_up_opening"),
            },
            "election": facts["election"],
            "mail": {
                "number": mail.number,
                "theme": mail.theme,
                "subject": subject,
                "preheader": preheader,
                "slug": mail.slug,
            },
            "signatory": dataclasses.asdict(self.deployment.signatory),
            "next_mail": {"number": mails[index + 1].number, "theme": mails[index + 1].theme} if index + 1 < len(mails) else None,
            "sender": {
                "name": sender.name,
                "address": sender.address,
                "reply_to": sender.reply_to,
                "contact": sender.contact,
                "optout_address": sender.optout_address,
            },
            "contact": ContactFields(),
            "unsubscribe_mailto": unsubscribe_mailto(sender.optout_address, settings.name),
            "intro_html": Markup(markdown.to_html(intro_tokens)) if intro_tokens else "",
            "body_html": Markup(markdown.to_html(body_tokens)),
            "intro_text": intro_text,
            "body_text": body_text,
            "references": markdown.references(links),
            "preheader_pad": Markup(PREHEADER_PAD),
        }
        mjml_source = _render_template(env, HTML_TEMPLATE, context)
        text = _render_template(env, TEXT_TEMPLATE, context).strip() + "\n"
        html = mjml_to_html(mjml_source, where=self.templates / HTML_TEMPLATE)
        return RenderedMail(
            number=mail.number,
            total=len(mails),
            slug=mail.slug,
            theme=mail.theme,
            subject=subject,
            preheader=preheader,
            mjml=mjml_source,
            html=html,
            text=text,
            source=mail.path,
        )


def content_context(settings: CampaignSettings) -> dict[str, dict[str, Any]]:
    """What the content (intro, mails, their subjects) may name: the campaign's single facts.

    The election comes from ``campaign.toml`` only, so that a text that names it can never
    disagree with the election the campaign is scheduled for.
    """
    day = settings.election_day
    return {
        "election": {
            "name": settings.election_name,
            "day": day,
            "day_long": dutch_date(day),
            "date": dutch_date(day, "d MMMM y"),
            "year": day.year,
        },
        "organisation": {
            "name": settings.organisation,
            "in_sentence": settings.organisation_in_sentence,
        },
    }


_CONTENT_NAMES = ("election.name, election.day_long (woensdag 18 maart 2026), election.date (18 maart 2026), "
                  "election.year, organisation.name, organisation.in_sentence")


@functools.lru_cache(maxsize=1)
def _content_environment():
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    # Sandboxed: content is prose that staff edit; StrictUndefined: a misspelt name is an error.
    return SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


def expand(source: str, context: dict[str, Any], *, where: Path, first_line: int, field: str = "") -> str:
    """Fill ``{{ election.year }}`` and the like in content; errors name the file and line (or field)."""
    if "{" not in source:
        return source
    import jinja2

    def place(line: int | None) -> str:
        return f"{where}: field '{field}'" if field else f"{where}:{first_line + (line or 1) - 1}"

    try:
        return _content_environment().from_string(source).render(context)
    except jinja2.TemplateSyntaxError as exc:
        raise RenderError(_("{place}: {message}").format(place=place(exc.lineno), message=exc.message)) from None
    except jinja2.TemplateError as exc:
        line = None
        tb = exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == "<template>":
                line = tb.tb_lineno
            tb = tb.tb_next
        raise RenderError(_("{place}: {exc}; content may name {CONTENT_NAMES}").format(
            place=place(line), exc=exc, CONTENT_NAMES=_CONTENT_NAMES)) from None


def rhythm(cadence_days: int) -> str:
    """How often a mail comes, as a reader would say it: ``ongeveer één per week``."""
    if cadence_days % 7 == 0:
        weeks = cadence_days // 7
        return "ongeveer één per week" if weeks == 1 else f"ongeveer één per {dutch_number(weeks)} weken"
    return "ongeveer één per dag" if cadence_days == 1 else f"ongeveer één per {dutch_number(cadence_days)} dagen"


def unsubscribe_mailto(address: str, campaign_name: str) -> Placeholder:
    """The opt-out link: a mail to the opt-out mailbox that names the address to remove."""
    subject = urllib.parse.quote(f"Afmelden: {campaign_name}", safe="")
    return Placeholder(f"mailto:{address}?subject={subject}&body=%%u.email%%")


_RENDERING_LIBRARIES = ("Jinja2", "MarkupSafe", "mjml-python", "premailer", "cssutils", "cssselect", "lxml",
                        "markdown-it-py", "Babel")
_STORED_KEEP = 200  # rendered mails kept in the cache folder; older ones are removed


@functools.lru_cache(maxsize=1)
def _engine_stamp() -> str:
    """The engine's source and the rendering libraries' versions: a change to either renders anew."""
    from importlib.metadata import PackageNotFoundError, version

    digest = hashlib.sha256(sys.version.encode())
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    for name in _RENDERING_LIBRARIES:
        try:
            digest.update(f"{name}={version(name)}".encode())
        except PackageNotFoundError:
            digest.update(f"{name}=?".encode())
    return digest.hexdigest()


@functools.lru_cache(maxsize=8)
def _templates_digest(templates: Path, stamp: tuple) -> str:
    """Every template's bytes, read once per change of the folder (``stamp``), not once per mail."""
    digest = hashlib.sha256()
    for path in sorted(templates.iterdir()):
        if path.is_file():
            digest.update(f"\0{path.name}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _load_rendered(path: Path) -> RenderedMail | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return RenderedMail(**{**data, "source": Path(data["source"])})
    except (OSError, ValueError, TypeError, KeyError):
        return None  # absent or unreadable: render anew


def _store_rendered(path: Path, mail: RenderedMail) -> None:
    try:
        from . import files

        files.private_dir(path.parent)
        data = {f.name: getattr(mail, f.name) for f in dataclasses.fields(mail)}
        data["source"] = str(mail.source)
        # Atomic: another process reads all of it or nothing. Owner-only like all state.
        files.write_private(path, json.dumps(data, ensure_ascii=False), unique_tmp=True)
        stored = sorted(path.parent.glob("*.json"), key=lambda p: p.stat().st_mtime)
        for old in stored[:-_STORED_KEEP]:
            old.unlink(missing_ok=True)
    except OSError:
        pass  # a cache that cannot be written only costs time


_ENV_CACHE: dict[tuple[Path, tuple], Any] = {}
_RENDER_CACHE: dict[tuple, RenderedMail] = {}


def _templates_stamp(templates: Path) -> tuple:
    if not templates.is_dir():
        raise RenderError(_("{templates}: no templates folder").format(templates=templates))
    return tuple(sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in templates.iterdir()))


def _environment(templates: Path):
    import jinja2

    # The environment caches compiled templates; it is rebuilt when any template changes
    # so that the preview sees edits.
    key = (templates.resolve(), _templates_stamp(templates))
    env = _ENV_CACHE.get(key)
    if env is None:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(templates)),
            undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(enabled_extensions=("mjml", "html", "mjml.j2", "html.j2"), default=False),
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters["urlencode"] = _urlencode
        env.filters["dutch_date"] = dutch_date
        env.filters["dutch_number"] = dutch_number
        env.filters["wrap"] = wrap
        _ENV_CACHE.clear()
        _ENV_CACHE[key] = env
    return env


def _render_template(env, name: str, context: dict[str, Any]) -> str:
    import jinja2

    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateSyntaxError as exc:
        raise RenderError(_("{template}:{lineno}: {message}").format(
            template=exc.filename or name, lineno=exc.lineno, message=exc.message)) from None
    except jinja2.TemplateNotFound as exc:
        raise RenderError(_("template not found: {name}").format(name=exc.name)) from None
    except (jinja2.UndefinedError, AttributeError) as exc:
        line = _template_line(exc)
        raise RenderError(_("{searchpath}/{name}:{line}: {exc}").format(
            searchpath=env.loader.searchpath[0], name=name, line=line, exc=exc)) from None


def _template_line(exc: BaseException) -> str:
    tb = exc.__traceback__
    line = "?"
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith(".j2"):
            line = str(tb.tb_lineno)
        tb = tb.tb_next
    return line


def mjml_to_html(source: str, *, where: Path) -> str:
    """MJML to inlined HTML that keeps the doctype, the phone layout and Outlook's comments."""
    import mjml
    from premailer import Premailer

    try:
        # fonts={}: no Google Fonts import; the layout uses a web-safe font stack.
        html = mjml.mjml2html(source, fonts={})
    except ValueError as exc:
        raise RenderError(_("{where}: MJML: {exc}").format(where=where, exc=exc)) from None
    # Checked before premailer, which would fetch an @import even with allow_network=False.
    if re.search(r"@import|<link\b[^>]*stylesheet", html, re.I):
        raise RenderError(_("{where}: the layout loads a remote stylesheet; mails must not load anything "
                            "remote").format(
            where=where))
    try:
        inlined = Premailer(
            html,
            allow_network=False,
            # MJML's phone layout lives in @media rules that rely on !important.
            strip_important=False,
            keep_style_tags=False,
            remove_classes=False,
            disable_validation=True,
            cssutils_logging_level=logging.CRITICAL,
        ).transform()
    except Exception as exc:  # premailer raises bare exceptions from cssutils and lxml
        raise RenderError(_("{where}: CSS inlining: {exc}").format(where=where, exc=exc)) from None
    # premailer drops the doctype (premailer issue 156); without it clients fall back to quirks mode.
    if not inlined.lstrip().lower().startswith("<!doctype"):
        inlined = "<!doctype html>\n" + inlined
    return inlined
