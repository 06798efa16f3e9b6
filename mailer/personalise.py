"""Stage 3: fill a rendered mail in for one contact.

Cheap by design: the rendered HTML and text are split once at their placeholders, and each
contact only joins strings. Values are HTML-escaped in the HTML, URL-encoded inside links.
"""

from __future__ import annotations

import html
import re
import urllib.parse
from dataclasses import dataclass
from functools import cached_property, lru_cache

from .i18n import _
from .contacts import Contact
from .errors import PersonaliseError
from .render import PLACEHOLDER, REWRAP_END, REWRAP_START, RenderedMail
from .settings import CampaignSettings


@dataclass(frozen=True)
class PersonalMail:
    """A rendered mail as one contact receives it.

    Only the contact's values are computed per contact: ``html_values`` in the order of the
    placeholders in ``mail.html``, escaped for their place, and ``text_values`` between the
    fixed pieces of ``mail.text`` (see :func:`text_literals`). The message stage encodes the
    fixed parts once per mail; ``html`` and ``text`` are joined only when something reads them.
    """

    mail: RenderedMail
    contact: Contact
    subject: str
    html_values: tuple[str, ...]
    text_values: tuple[str, ...]

    @cached_property
    def html(self) -> str:
        return join(self.mail.html, self.html_values)

    @cached_property
    def text(self) -> str:
        fixed = text_literals(self.mail.text)
        out = [fixed[0]]
        for value, literal in zip(self.text_values, fixed[1:], strict=True):
            out += [value, literal]
        return "".join(out)


def salutation(contact: Contact, settings: CampaignSettings) -> str:
    """``Beste Renée Jansen,``, or the campaign's fallback when the list has no name."""
    # The fields of settings.SALUTATION_FIELDS; load_campaign_settings allows no other use of str.format.
    fields = {"name": contact.name, "party": contact.party, "municipality": contact.municipality, "role": contact.role}
    template = settings.salutation if contact.name else settings.salutation_fallback
    try:
        return template.format(**fields)
    except (KeyError, IndexError, ValueError) as exc:
        raise PersonaliseError(_("{path}: copy.salutation: {exc} is not a contact field").format(
            path=settings.folder / 'campaign.toml', exc=repr(exc))) from None


_REWRAP = re.compile(re.escape(REWRAP_START) + "(.*?)" + re.escape(REWRAP_END), re.S)


def fill_paragraph(text: str, width: int = 72) -> str:
    """Greedy word wrap: what ``textwrap.fill(..., break_long_words=False, break_on_hyphens=False)``
    gives for one paragraph, at a fraction of the cost (it runs for every contact).

    Each line is cut at the last space that keeps it within ``width``, found by ``rfind``
    instead of walking the words; a word longer than a line gets a line of its own.
    """
    text = " ".join(text.split())
    lines = []
    while len(text) > width:
        cut = text.rfind(" ", 0, width + 1)
        if cut < 0:
            cut = text.find(" ", width)
            if cut < 0:
                break
        lines.append(text[:cut])
        text = text[cut + 1:]
    lines.append(text)
    return "\n".join(lines)


@lru_cache(maxsize=64)
def _split(document: str) -> tuple[str, ...]:
    # [literal, kind, field, literal, kind, field, ..., literal]
    return tuple(PLACEHOLDER.split(document))


def substitutions(document: str, values: dict[str, str], *, escape_html: bool) -> list[str]:
    """The value for each placeholder of ``document``, in order, escaped for its place."""
    parts = _split(document)
    out = []
    for i in range(1, len(parts), 3):
        kind, name = parts[i], parts[i + 1]
        try:
            value = values[name]
        except KeyError:
            raise PersonaliseError(_("the template uses contact field '{name}', which this contact does not "
                                     "have").format(
                name=name)) from None
        if kind == "u":
            out.append(urllib.parse.quote(value, safe="@"))
        elif escape_html:
            out.append(html.escape(value, quote=True))
        else:
            out.append(value)
    return out


def join(document: str, substituted: list[str]) -> str:
    """``document`` with its placeholders replaced by ``substituted`` (from :func:`substitutions`)."""
    parts = _split(document)
    if len(parts) == 1:
        return document
    out = [parts[0]]
    for k, value in enumerate(substituted):
        out.append(value)
        out.append(parts[3 * k + 3])
    return "".join(out)


def fill(document: str, values: dict[str, str], *, escape_html: bool) -> str:
    """Replace every placeholder in ``document`` with the contact's value, escaped for its place."""
    return join(document, substitutions(document, values, escape_html=escape_html))


def literals(document: str) -> tuple[str, ...]:
    """The fixed text between the placeholders of ``document``."""
    return _split(document)[::3]


def contact_values(contact: Contact, settings: CampaignSettings) -> dict[str, str]:
    """Every field a template may use, by placeholder name."""
    values = {
        "salutation": salutation(contact, settings),
        "name": contact.name,
        "email": contact.email,
        "party": contact.party,
        "municipality": contact.municipality,
        "role": contact.role,
    }
    for key, value in contact.extra:
        values[f"extra.{key}"] = value
    return values


@lru_cache(maxsize=64)
def _text_plan(document: str) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """The fixed pieces of a text part, and what stands between them: ('wrap', paragraph
    template) for a paragraph whose length depends on the contact, else (kind, field)."""
    fixed: list[str] = []
    dynamic: list[tuple[str, str]] = []
    current = ""
    for i, piece in enumerate(_REWRAP.split(document)):
        if i % 2:
            fixed.append(current)
            dynamic.append(("wrap", piece))
            current = ""
            continue
        parts = PLACEHOLDER.split(piece)
        current += parts[0]
        for k in range(1, len(parts), 3):
            fixed.append(current)
            dynamic.append((parts[k], parts[k + 1]))
            current = parts[k + 2]
    fixed.append(current)
    return tuple(fixed), tuple(dynamic)


def text_literals(document: str) -> tuple[str, ...]:
    """The fixed text of a text part: everything but contact values and rewrapped paragraphs."""
    return _text_plan(document)[0]


def _text_values(document: str, values: dict[str, str]) -> tuple[str, ...]:
    out = []
    for kind, spec in _text_plan(document)[1]:
        if kind == "wrap":
            out.append(fill_paragraph(fill(spec, values, escape_html=False)))
            continue
        try:
            value = values[spec]
        except KeyError:
            raise PersonaliseError(_("the template uses contact field '{spec}', which this contact does not "
                                     "have").format(
                spec=spec)) from None
        out.append(urllib.parse.quote(value, safe="@") if kind == "u" else value)
    return tuple(out)


def personalise(mail: RenderedMail, contact: Contact, *, settings: CampaignSettings,
                optout_for: str | None = None) -> PersonalMail:
    """The mail as ``contact`` gets it. ``optout_for``: the address a test copy goes to; it takes
    the place of the contact's address everywhere in the copy, so that no opt-out link in it
    (and no line of the footer) names the contact: a tester who clicks one opts out themselves."""
    values = contact_values(contact, settings)
    if optout_for is not None:
        values["email"] = optout_for
    try:
        return PersonalMail(
            mail=mail,
            contact=contact,
            subject=fill(mail.subject, values, escape_html=False),
            html_values=tuple(substitutions(mail.html, values, escape_html=True)),
            text_values=_text_values(mail.text, values),
        )
    except PersonaliseError as exc:
        raise PersonaliseError(_("mail {number} ({name}) for {masked}: {exc}").format(
            number=mail.number, name=mail.source.name, masked=contact.masked, exc=exc)) from None
