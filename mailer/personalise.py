"""Stage 3: fill a rendered mail in for one contact.

Cheap by design: the rendered HTML and text are split once at their placeholders, and each
contact only joins strings. Values are HTML-escaped in the HTML, URL-encoded inside links.
"""

from __future__ import annotations

import html
import re
import textwrap
import urllib.parse
from dataclasses import dataclass
from functools import lru_cache

from .contacts import Contact
from .errors import PersonaliseError
from .render import PLACEHOLDER, REWRAP_END, REWRAP_START, RenderedMail
from .settings import CampaignSettings


@dataclass(frozen=True)
class PersonalMail:
    """A rendered mail as one contact receives it."""

    mail: RenderedMail
    contact: Contact
    subject: str
    html: str
    text: str


def salutation(contact: Contact, settings: CampaignSettings) -> str:
    """``Beste Renée Jansen,``, or the campaign's fallback when the list has no name."""
    fields = {"name": contact.name, "party": contact.party, "municipality": contact.municipality}
    template = settings.salutation if contact.name else settings.salutation_fallback
    try:
        return template.format(**fields)
    except (KeyError, IndexError, ValueError) as exc:
        raise PersonaliseError(f"{settings.folder / 'campaign.toml'}: copy.salutation: {exc!r} is not a contact field") from None


_REWRAP = re.compile(re.escape(REWRAP_START) + "(.*?)" + re.escape(REWRAP_END), re.S)


def _rewrap(text: str) -> str:
    return _REWRAP.sub(
        lambda m: textwrap.fill(m.group(1), width=72, break_long_words=False, break_on_hyphens=False), text)


@lru_cache(maxsize=64)
def _split(document: str) -> tuple[str, ...]:
    # [literal, kind, field, literal, kind, field, ..., literal]
    return tuple(PLACEHOLDER.split(document))


def fill(document: str, values: dict[str, str], *, escape_html: bool) -> str:
    """Replace every placeholder in ``document`` with the contact's value, escaped for its place."""
    parts = _split(document)
    if len(parts) == 1:
        return document
    out = [parts[0]]
    for i in range(1, len(parts), 3):
        kind, name = parts[i], parts[i + 1]
        try:
            value = values[name]
        except KeyError:
            raise PersonaliseError(f"the template uses contact field '{name}', which this contact does not have") from None
        if kind == "u":
            out.append(urllib.parse.quote(value, safe="@"))
        elif escape_html:
            out.append(html.escape(value, quote=True))
        else:
            out.append(value)
        out.append(parts[i + 2])
    return "".join(out)


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


def personalise(mail: RenderedMail, contact: Contact, *, settings: CampaignSettings) -> PersonalMail:
    """The mail as ``contact`` gets it."""
    values = contact_values(contact, settings)
    try:
        return PersonalMail(
            mail=mail,
            contact=contact,
            subject=fill(mail.subject, values, escape_html=False),
            html=fill(mail.html, values, escape_html=True),
            text=_rewrap(fill(mail.text, values, escape_html=False)),
        )
    except PersonaliseError as exc:
        raise PersonaliseError(f"mail {mail.number} ({mail.source.name}) for {contact.masked}: {exc}") from None
