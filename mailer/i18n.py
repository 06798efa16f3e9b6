"""The interface language: Dutch or English, through gettext catalogs.

The language follows the user's locale as gettext reads it (``LANGUAGE``, ``LC_ALL``,
``LC_MESSAGES``, ``LANG``), and ``CAMPAIGN_LANG=nl|en`` overrides it: Dutch for ``nl*``, English
otherwise. English is the msgid itself, so English needs no catalog, and a missing ``.mo``
falls back to English instead of failing.

Messages are whole sentences with named placeholders, translated where they are made:
``_("could not write {path}: {reason}").format(path=..., reason=...)``. Texts made at import
time (click help) are marked with :func:`N_` and translated when they are shown.

This module is imported by ``campaign --help``: it imports nothing heavy.
"""

from __future__ import annotations

import gettext
import os
from pathlib import Path

DOMAIN = "campaign"
LOCALEDIR = Path(__file__).resolve().parent / "locale"
LANGUAGES = ("nl", "en")

_translation: gettext.NullTranslations = gettext.NullTranslations()
_language = "en"


def choose_language(environ: dict[str, str] | os._Environ[str] | None = None) -> str:
    """``nl`` or ``en``: CAMPAIGN_LANG if set, else the first gettext locale variable that is set."""
    env = os.environ if environ is None else environ
    override = env.get("CAMPAIGN_LANG", "").strip().lower()
    if override:
        return "nl" if override.startswith("nl") else "en"
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = env.get(name, "")
        if value:
            # LANGUAGE may list several (nl:en); the first one counts, as for gettext.
            first = value.split(":")[0].strip().lower()
            return "nl" if first.startswith("nl") else "en"
    return "en"


def setup(language: str | None = None, *, localedir: Path | None = None) -> str:
    """Choose the language (``language``, else :func:`choose_language`) for this process.

    The domain is bound globally too (``bindtextdomain`` + ``textdomain``), and click's own texts
    ("Usage:", "Options:", its errors) are looked up in the same translation, so that they follow
    CAMPAIGN_LANG as well as the locale. Returns the language chosen.
    """
    global _translation, _language
    lang = language or choose_language()
    folder = str(localedir or LOCALEDIR)
    gettext.bindtextdomain(DOMAIN, folder)
    gettext.textdomain(DOMAIN)
    if lang == "en":
        _translation = gettext.NullTranslations()
    else:
        # fallback: a catalog that was not compiled (no .mo) means English, never a crash.
        _translation = gettext.translation(DOMAIN, folder, languages=[lang], fallback=True)
    # GNUTranslations derives from NullTranslations: only the bare fallback means "no catalog".
    _language = "en" if type(_translation) is gettext.NullTranslations else lang
    _route_click()
    return _language


def _route_click() -> None:
    """click binds ``gettext.gettext`` in each module at import; point those names at our catalog."""
    import sys

    for name in ("click.core", "click.decorators", "click.exceptions", "click.formatting", "click.parser",
                 "click.termui", "click.types", "click.utils", "click._termui_impl", "click.shell_completion"):
        module = sys.modules.get(name)
        if module is None:
            continue
        if hasattr(module, "_"):
            module._ = _  # type: ignore[attr-defined]
        if hasattr(module, "ngettext"):
            module.ngettext = ngettext  # type: ignore[attr-defined]


def language() -> str:
    """The language chosen by the last :func:`setup`: ``nl`` or ``en``."""
    return _language


def _(message: str) -> str:
    """The message in the chosen language."""
    return _translation.gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """The singular or plural message for ``n``, in the chosen language."""
    return _translation.ngettext(singular, plural, n)


def N_(message: str) -> str:
    """Mark a text for extraction only; it is translated with :func:`_` when it is shown."""
    return message


# --- moments as a person reads them ---------------------------------------------------------------

_DAYS = {"nl": ("ma", "di", "wo", "do", "vr", "za", "zo"), "en": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")}
_MONTHS = {
    "nl": ("jan.", "feb.", "mrt.", "apr.", "mei", "jun.", "jul.", "aug.", "sep.", "okt.", "nov.", "dec."),
    "en": ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
}


def format_day(value, *, lang: str | None = None) -> str:
    """``wo 3 feb. 2027`` (nl) or ``Wed 3 Feb 2027`` (en): a date as every table writes it."""
    lang = lang or _language
    return f"{_DAYS[lang][value.weekday()]} {value.day} {_MONTHS[lang][value.month - 1]} {value.year:04d}"


def format_moment(moment, timezone: str | None = None, *, lang: str | None = None, seconds: bool = False) -> str:
    """``wo 3 feb. 2027 09:00`` (nl) or ``Wed 3 Feb 2027 09:00`` (en), in the campaign's time zone.

    The one way a moment is written wherever a person reads it (status, plan, preview, the
    worker's last-seen, simulate, reschedule). A naive moment is taken as already local.
    """
    if timezone and moment.tzinfo is not None:
        from zoneinfo import ZoneInfo

        moment = moment.astimezone(ZoneInfo(timezone))
    clock = f"{moment:%H:%M:%S}" if seconds else f"{moment:%H:%M}"
    return f"{format_day(moment, lang=lang)} {clock}"


def shorten(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters at a word boundary, ending in "…" when it was cut."""
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    if " " in cut and not text[width - 1].isspace():
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:-–") + "…"
