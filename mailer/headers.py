"""The one place that decides whether a value may stand in a mail header, and how it is written.

Every header value, whatever its source (campaign.toml, settings.toml, a mail's front matter, a
contact row), passes :func:`value_problem`: line breaks, other control characters (C0 and C1,
tab and U+0085 included) and the invisible bidi controls that make a mail client show text in
another order than it is written are refused, with the file, line and field saying where.

Writing: a display name is left as it is only when it is plain atoms (RFC 5322 atext, single
spaces, no ``=?``); otherwise it is quoted or, when it holds ``=?`` or non-ASCII text,
RFC 2047-encoded, so that no reader decodes it into header syntax. Lines are folded within
RFC 5322's 78 characters where a fold is possible and never reach its 998.
"""

from __future__ import annotations

import base64
import re
from functools import lru_cache
from typing import TYPE_CHECKING

from .i18n import _
from .errors import CampaignError, HeaderError

if TYPE_CHECKING:
    from .contacts import Contact

LINE_MAX = 78  # RFC 5322 2.1.1: SHOULD
LINE_HARD_MAX = 998  # RFC 5322 2.1.1: MUST
# Import limits: generous for any real name, well short of what breaks a header or a layout.
CONTACT_VALUE_MAX = 200  # name, party, municipality, role
CONTACT_EXTRA_MAX = 1000  # extra columns: only templates use them
TEXT_MAX = 200  # sender.name, a subject
CAMPAIGN_NAME_MAX = 150  # it is URL-encoded into the List-Unsubscribe mailto: too
LIST_ID_MAX = 255  # RFC 2919 2
URL_MAX = 500

_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
# Invisible characters that hide text or glue words unseen (not U+200C/U+200D, which Persian,
# Indic scripts and emoji sequences need).
_ZERO_WIDTH = "\u200b\u2060-\u2064\ufeff"
_LINE_BREAKS = frozenset("\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
# C0, DEL, C1, the Unicode line and paragraph separators, bidi controls, zero-width characters,
# lone surrogates.
_FORBIDDEN = re.compile(f"[\x00-\x1f\x7f-\x9f\u2028\u2029{_BIDI}{_ZERO_WIDTH}\ud800-\udfff]")
_ATEXT = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]"
# A display name of single-spaced atoms is written as it is (the fast path for most names).
_ATOMS = re.compile(f"{_ATEXT}+(?: {_ATEXT}+)*")
_ATOM = re.compile(f"{_ATEXT}+")
# RFC 2919: list-label "." list-id-namespace, both dot-atom-text.
_LIST_ID = re.compile(f"{_ATEXT}+(?:\\.{_ATEXT}+)+")
# What an https opt-out URL may hold: RFC 3986 characters except ',' (it separates the
# List-Unsubscribe entries); no '<', '>', '"', whitespace or controls (those are not in the set).
_URL = re.compile(r"https://[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+;=%]+")
# 42 bytes -> 56 base64 characters -> a 68-character encoded-word: after "Reply-To: " the
# first line of a folded Subject still fits in 78.
_WORD_BYTES = 42
# One encoded-word in a display name holds up to this many bytes (base64: 4/3 of it).
_RUN_BYTES = 600


def value_problem(value: str) -> str | None:
    """Why ``value`` may not stand in a header (a phrase to follow the field name), or None."""
    m = _FORBIDDEN.search(value)
    if m is None:
        return None
    ch = m.group()
    code = f"U+{ord(ch):04X}"
    if ch in _LINE_BREAKS:
        return _("contains a line break")
    if re.fullmatch(f"[{_BIDI}]", ch):
        return _("contains a bidi control character ({code}), which makes mail programs show the text in another "
                 "order").format(code=code)
    if re.fullmatch(f"[{_ZERO_WIDTH}]", ch):
        return _("contains a zero-width character ({code}), which hides text or joins words unseen").format(code=code)
    if "\ud800" <= ch <= "\udfff":
        return _("contains an unpaired surrogate ({code})").format(code=code)
    return _("contains a control character ({code})").format(code=code)


def length_problem(value: str, limit: int) -> str | None:
    """Why ``value`` is too long (a phrase to follow the field name), or None."""
    if len(value) > limit:
        return _("is {length} characters long; at most {limit} are allowed").format(length=len(value), limit=limit)
    return None


def check_header_value(field: str, value: str, *, where: str, max_length: int | None = None,
                       error: type[CampaignError] = HeaderError) -> str:
    """``value`` when it may stand in a header; else raise ``error`` naming ``where`` and ``field``."""
    reason = value_problem(value)
    if reason is None and max_length is not None:
        reason = length_problem(value, max_length)
    if reason is not None:
        raise error(f"{where}: {field}: {reason}" if where else f"{field}: {reason}")
    return value


def list_id_problem(value: str) -> str | None:
    """Why ``value`` is not an RFC 2919 list id like ``gr2026.checklist.legerdesheils``, or None."""
    reason = value_problem(value) or length_problem(value, LIST_ID_MAX)
    if reason is None and not _LIST_ID.fullmatch(value):
        reason = (f"{value!r} is not a list id: use letters, digits and '-' in dot-separated parts, "
                  "like 'gr2026.checklist.legerdesheils'")
    return reason


def url_problem(value: str) -> str | None:
    """Why ``value`` cannot be the https one-click opt-out URL in List-Unsubscribe, or None."""
    reason = value_problem(value) or length_problem(value, URL_MAX)
    if reason is not None:
        return reason
    if not value.startswith("https://"):
        return f"{value!r} must be an https:// address (or empty)"
    if not _URL.fullmatch(value):
        bad = next(ch for ch in value if not _URL.fullmatch("https://" + ch))
        return (f"{value!r} holds {bad!r}, which cannot stand in the List-Unsubscribe header; "
                "percent-encode it (a ',' as %2C, a space as %20)")
    if "mailto:" in value.lower():
        return f"{value!r} holds a mailto: address; put the opt-out mailbox in sender.optout_address"
    return _url_authority_problem(value)


# A host of numbers only (127.1, 2130706433, 0x7f.1): browsers read it as an IP address.
_NUMERIC_HOST = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+))*\.?")


def _url_authority_problem(value: str) -> str | None:
    """Why the host part of an https URL cannot be published in every mail's List-Unsubscribe."""
    import ipaddress
    import urllib.parse

    netloc = urllib.parse.urlsplit(value).netloc
    if "@" in netloc:
        return (f"{value!r} holds a user name or password, which every mail would publish; "
                "give the address without them")
    host, port = netloc, ""
    if netloc.startswith("["):
        host, _, rest = netloc[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else rest
    elif ":" in netloc:
        host, _, port = netloc.partition(":")
    if port and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        shown = port if port.isascii() and port.isdigit() else repr(port)
        return f"{value!r} has port {shown}; a port is a number from 1 to 65535"
    host = host.lower()
    try:
        ipaddress.ip_address(host)
        literal = True
    except ValueError:
        literal = bool(_NUMERIC_HOST.fullmatch(host))
    if literal:
        return f"{value!r} names the host by its IP address ({host}); give its name (like www.example.nl)"
    if "." not in host.strip("."):
        return f"{value!r} has no full host name (like www.example.nl)"
    return None


def contact_problems(contact: Contact) -> list[str]:
    """Why the contact's stored values could not be imported (so are never sent), as phrases
    that follow the field name: ``["name contains a bidi control character (U+202E), ..."]``."""
    found = []
    fields = [("name", contact.name, CONTACT_VALUE_MAX), ("party", contact.party, CONTACT_VALUE_MAX),
              ("municipality", contact.municipality, CONTACT_VALUE_MAX), ("role", contact.role, CONTACT_VALUE_MAX)]
    fields += [(key, value, CONTACT_EXTRA_MAX) for key, value in contact.extra]
    for field, value, limit in fields:
        reason = value_problem(value) or length_problem(value, limit)
        if reason:
            found.append(f"{field} {reason}")
    if not contact.email.isascii() or value_problem(contact.email) or contact.email.count("@") != 1:
        found.append("address is not in the ASCII form this sender uses; import the contact list again")
    return found


def contact_problem(contact: Contact) -> str | None:
    """The first of :func:`contact_problems`, cheaply: most contacts have none."""
    if (_FORBIDDEN.search(contact.name) is None and _FORBIDDEN.search(contact.party) is None
            and _FORBIDDEN.search(contact.municipality) is None and _FORBIDDEN.search(contact.role) is None
            and max(len(contact.name), len(contact.party), len(contact.municipality),
                    len(contact.role)) <= CONTACT_VALUE_MAX
            and contact.email.isascii()
            and all(_FORBIDDEN.search(v) is None and len(v) <= CONTACT_EXTRA_MAX for _, v in contact.extra)):
        return None
    found = contact_problems(contact)
    return found[0] if found else None


# --- writing -----------------------------------------------------------------------------------

def encode_words(text: str, *, always: bool = False) -> str:
    """RFC 2047: ASCII without ``=?`` stays as it is (unless ``always``); anything else becomes
    UTF-8 base64 encoded-words, one per folded line (for unstructured fields like Subject)."""
    if not always and text.isascii() and "=?" not in text:
        return text
    data = text.encode("utf-8")
    if len(data) <= _WORD_BYTES:
        return _word(data)
    words, chunk = [], b""
    for ch in text:
        b = ch.encode("utf-8")
        if len(chunk) + len(b) > _WORD_BYTES:  # never split a character across two words
            words.append(chunk)
            chunk = b""
        chunk += b
    words.append(chunk)
    return "\r\n ".join(map(_word, words))


def _word(data: bytes) -> str:
    return f"=?utf-8?b?{base64.b64encode(data).decode('ascii')}?="


def _phrase_tokens(name: str) -> list[str]:
    """A display name as tokens to be joined by single spaces (each space a possible fold).

    Readers disagree about whitespace between two encoded-words in a phrase: RFC 2047 says
    ignore it, Python's email package keeps it. So two encoded-words never stand side by side
    here: plain words stay atoms, and each run of other words (with the spaces between them,
    and any extra spaces) becomes one encoded-word. Both kinds of reader then decode exactly
    the name. A run too long for one line stays one word (a long line, well within 998).
    """
    if name.isascii() and "=?" not in name:
        if _ATOMS.fullmatch(name):
            return name.split(" ")
        # A quoted-string may fold at its spaces: unfolding gives back exactly the name.
        return ('"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"').split(" ")
    words = name.split(" ")
    if "" in words:  # leading, trailing or double spaces: the spaces go inside one word
        return [_run(name)]
    tokens: list[str] = []
    run: list[str] = []
    for word in words:
        if "=?" not in word and _ATOM.fullmatch(word):
            if run:
                tokens.append(_run(" ".join(run)))
                run = []
            tokens.append(word)
        else:
            run.append(word)
    if run:
        tokens.append(_run(" ".join(run)))
    return tokens


def _run(text: str) -> str:
    data = text.encode("utf-8")
    if len(data) <= _RUN_BYTES:
        return _word(data)
    # Only for names of hundreds of non-Latin characters: folded the RFC 2047 way, which
    # Python's email package shows with extra spaces, but every line stays within 998.
    return encode_words(text, always=True)


def _fold_tokens(tokens: list[str], offset: int) -> str:
    """Tokens joined by single spaces, folded before a token that would pass 78 (never next to
    an empty token: a line of only whitespace is not allowed)."""
    out = [tokens[0]]
    width = offset + len(tokens[0])
    previous = tokens[0]
    for token in tokens[1:]:
        if width + 1 + len(token) > LINE_MAX and token and previous:
            out.append("\r\n " + token)
            width = 1 + len(token)
        else:
            out.append(" " + token)
            width += 1 + len(token)
        previous = token
    return "".join(out)


def phrase(name: str) -> str:
    """A display name as it may stand before ``<address>``, on one line: atoms as they are,
    other ASCII quoted, anything holding ``=?`` or non-ASCII text encoded (RFC 2047)."""
    return " ".join(_phrase_tokens(name))


def named(field: str, name: str, angle: str) -> str:
    """``name <angle>`` (or ``<angle>``) for header ``field`` (an address, or a List-Id), folded
    within 78 where the name has spaces to fold at."""
    if not name:
        return f"<{angle}>"
    if "=?" not in name and _ATOMS.fullmatch(name) and len(field) + len(name) + len(angle) + 5 <= LINE_MAX:
        return f"{name} <{angle}>"  # most names: plain words, short
    tokens = _phrase_tokens(name) + [f"<{angle}>"]
    if len(field) + 2 + sum(map(len, tokens)) + len(tokens) - 1 <= LINE_MAX:
        return " ".join(tokens)
    return _fold_tokens(tokens, len(field) + 2)


def _fold_ascii(text: str, offset: int) -> str | None:
    """``text`` folded at spaces into lines within 78 (the first after ``offset`` characters);
    None when a word is too long for that."""
    lines = []
    room = LINE_MAX - offset
    while len(text) > room:
        cut = text.rfind(" ", 1, room + 1)
        if cut <= 0 or not text[:cut].strip():
            return None
        lines.append(text[:cut])
        text = text[cut:]  # the space starts the next line: unfolding gives the text back
        room = LINE_MAX
    if lines and not text.strip():
        return None  # a last line of only whitespace is not allowed
    lines.append(text)
    return "\r\n".join(lines)


@lru_cache(maxsize=256)
def unstructured(field: str, text: str) -> str:
    """An unstructured value (Subject) for header ``field``: ASCII folded at spaces, else encoded."""
    if text.isascii() and "=?" not in text:
        if len(field) + 2 + len(text) <= LINE_MAX:
            return text
        folded = _fold_ascii(text, len(field) + 2)
        if folded is not None:
            return folded
    return encode_words(text, always=True)


def fold_list(field: str, value: str) -> str:
    """A comma-separated list of ``<...>`` entries (List-Unsubscribe), one entry a line when
    the list does not fit on one; a fold inside an entry is never needed for a valid entry."""
    if len(field) + 2 + len(value) <= LINE_MAX:
        return value
    return value.replace(">, <", ">,\r\n <")


def longest_line(head: bytes) -> int:
    """The longest line of a header block, in octets."""
    return max(map(len, head.split(b"\r\n")))
