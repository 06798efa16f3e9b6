"""Contact lists: reading spreadsheets as they really arrive, storing, opting out, erasing.

Contacts are personal data. Nothing here logs an address in full (see :attr:`Contact.masked`);
erasure leaves only a salted one-way hash on the suppression list.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import hashlib
import io
import json
import re
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import store
from .i18n import N_, _, ngettext

if TYPE_CHECKING:
    from .project import Project
from .errors import ContactsError, InvalidAddress, StateError, UnknownContact

STANDARD = ("email", "name", "party", "municipality", "role", "basis")
REQUIRED = ("email", "party", "municipality")
ALIASES = {
    "email": "email", "e-mail": "email", "e-mailadres": "email", "emailadres": "email",
    "email address": "email", "e-mail address": "email", "mail": "email",
    "name": "name", "naam": "name",
    "party": "party", "partij": "party",
    "municipality": "municipality", "gemeente": "municipality",
    "role": "role", "functie": "role",
    "basis": "basis", "grondslag": "basis",
}
STATUSES = ("active", "unsubscribed", "bounced", "removed")
OPT_OUT = "opt-out"  # the reason stored with the hash of an address that opted out while not a contact
# Appended to the reason of the hash of the mailbox an address reaches (no +tag, Gmail without dots),
# when that is not the address itself: that form never opted out or was erased by its own name.
ANOTHER_FORM = " (another form of the address)"


@dataclass(frozen=True)
class Contact:
    """One person at a local party, as the templates see them."""

    email: str
    party: str
    municipality: str
    name: str = ""
    role: str = ""
    extra: tuple[tuple[str, str], ...] = ()
    basis: str = ""
    id: int | None = None
    status: str = "active"

    @property
    def key(self) -> str:
        return email_key(self.email)

    @property
    def masked(self) -> str:
        """``r***@example.nl``: enough to tell contacts apart in a message, not to reveal them."""
        local, _, domain = self.email.partition("@")
        return f"{local[:1]}***@{domain}"


def normalise_address(address: str) -> str:
    """The one form in which an address is stored, compared and hashed, whoever typed it.

    Import, forget, unsubscribe and the test-mail guard all go through here, so that
    ``X@Bücher.nl`` and ``x@xn--bcher-kva.nl`` are the same person everywhere. The domain is
    kept in its ASCII (IDNA) form because that is what goes into the headers; a local part
    outside ASCII would need SMTPUTF8, which this sender does not use, so it is refused.
    Raises :class:`InvalidAddress` with email-validator's reason.
    """
    from email_validator import EmailNotValidError, validate_email

    try:
        checked = validate_email(address.strip(), check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise InvalidAddress(_("{address} is not a usable address: {reason}").format(
            address=mask(address) if '@' in address else repr(address), reason=validator_reason(exc))) from None
    return checked.ascii_email


# email-validator's reasons in English, as the library words them; the ones a list of contacts
# typically trips over are translated, any other stays English (it still names the problem).
_VALIDATOR_REASONS = {
    "An email address must have an @-sign.": N_("An email address must have an @-sign."),
    "The email address is not valid. It must have exactly one @-sign.":
        N_("The email address is not valid. It must have exactly one @-sign."),
    "There must be something before the @-sign.": N_("There must be something before the @-sign."),
    "There must be something after the @-sign.": N_("There must be something after the @-sign."),
    "An email address cannot have two periods in a row.": N_("An email address cannot have two periods in a row."),
    "The part after the @-sign is not valid. It should have a period.":
        N_("The part after the @-sign is not valid. It should have a period."),
    "The part after the @-sign is not valid. It is not within a valid top-level domain.":
        N_("The part after the @-sign is not valid. It is not within a valid top-level domain."),
    "The part after the @-sign is a special-use or reserved name that cannot be used with email.":
        N_("The part after the @-sign is a special-use or reserved name that cannot be used with email."),
    "An email address cannot have a period immediately after the @-sign.":
        N_("An email address cannot have a period immediately after the @-sign."),
    "An email address cannot end with a period.": N_("An email address cannot end with a period."),
    "An email address cannot start with a period.": N_("An email address cannot start with a period."),
    "An email address cannot have a period immediately before the @-sign.":
        N_("An email address cannot have a period immediately before the @-sign."),
    "Internationalized characters before the @-sign are not supported.":
        N_("Internationalized characters before the @-sign are not supported."),
    "The email address contains invalid characters before the @-sign.":
        N_("The email address contains invalid characters before the @-sign."),
}
_VALIDATOR_PREFIXES = {
    "The email address contains invalid characters before the @-sign: ":
        N_("The email address contains invalid characters before the @-sign: {characters}"),
    "The part after the @-sign contains invalid characters: ":
        N_("The part after the @-sign contains invalid characters: {characters}"),
    "Internationalized characters before the @-sign are not supported: ":
        N_("Internationalized characters before the @-sign are not supported: {characters}"),
}


def validator_reason(exc: Exception) -> str:
    """email-validator's reason for refusing an address, in the interface language where known."""
    text = str(exc)
    if text in _VALIDATOR_REASONS:
        return _(_VALIDATOR_REASONS[text])
    for prefix, message in _VALIDATOR_PREFIXES.items():
        if text.startswith(prefix):
            return _(message).format(characters=text[len(prefix):])
    return text


def email_key(address: str) -> str:
    """How addresses are compared: the normal form, case-folded (lookups on stored rows)."""
    return address.strip().casefold()


def address_key(address: str) -> str:
    """Validate and normalise what a person typed, then give its comparison key."""
    return email_key(normalise_address(address))


# A local part as it stands in typed text: up to the '@', after a space, ',', ';', '<' or the like.
_LOCAL_BEFORE_AT = re.compile(r"[^\s@,;:<>()\[\]\"']+(?=@)")


def mask(address: str) -> str:
    """``r***@example.nl``; in typed text that holds several addresses (``a@x.nl,b@y.nl``), each of them."""
    local, _, domain = address.partition("@")
    if "@" in domain:
        return _LOCAL_BEFORE_AT.sub(lambda m: m.group()[:1] + "***", address)
    return f"{local[:1]}***@{domain}"


@dataclass(frozen=True)
class ParsedRow:
    line: int
    contact: Contact


@dataclass(frozen=True)
class ParsedFile:
    path: Path
    rows: tuple[ParsedRow, ...]
    problems: tuple[str, ...]
    encoding: str
    delimiter: str
    extras: tuple[str, ...] = ()  # columns kept only as extra fields (header labels)
    name_from: tuple[str, ...] = ()  # split name columns that make the name
    empty: int = 0  # rows with no value in any field (``;;;`` or a blank line): skipped


def _decode(raw: bytes, path: Path) -> tuple[str, str]:
    """The text of a file as spreadsheets save it, and the name of its encoding.

    Refuses, naming the line, what would otherwise be stored garbled: bytes that are no
    known encoding, and files that mix UTF-8 with Windows-1252.
    """
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        # Excel's "Unicode text": UTF-16 with a byte order mark, tab-separated.
        try:
            return _refuse_mojibake(raw.decode("utf-16"), path), "utf-16"
        except UnicodeDecodeError as exc:
            raise ContactsError(_("{path}: starts as UTF-16 text but is not valid UTF-16 ({reason}); save it again as "
                                   "'Unicode text' or as 'CSV UTF-8'").format(path=path, reason=exc.reason)) from None
    if raw.startswith(codecs.BOM_UTF8):
        try:
            return _refuse_mojibake(raw[3:].decode("utf-8"), path), "utf-8 (BOM)"
        except UnicodeDecodeError as exc:
            line = raw[: exc.start + 3].count(b"\n") + 1
            raise ContactsError(_("{path}:{line}: this line is not UTF-8, although the file is marked as UTF-8: the "
                                  "file mixes encodings; save it again as 'CSV UTF-8' and import that file").format(
                                       path=path, line=line)) from None
    if b"\x00" in raw:
        utf16 = _utf16_without_mark(raw)
        if utf16 is None:
            line = raw[: raw.index(b"\x00")].count(b"\n") + 1
            raise ContactsError(_("{path}:{line}: contains NUL bytes, so it is not a text file; save the list as CSV "
                                  "or as an Excel workbook (.xlsx)").format(path=path, line=line))
        return _refuse_mojibake(utf16, path), "utf-16"
    try:
        return _refuse_mojibake(raw.decode("utf-8"), path), "utf-8"
    except UnicodeDecodeError as exc:
        first_bad = raw[: exc.start].count(b"\n") + 1
    # Dutch Excel saves "CSV (puntkomma)" in Windows-1252; five bytes are undefined there.
    try:
        text = raw.decode("cp1252")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ContactsError(_("{path}:{line}: neither UTF-8 nor Windows-1252 text").format(
            path=path, line=line)) from None
    found = _first_mojibake(text)
    if found is not None:
        line, garbled, meant = found
        raise ContactsError(
            _("{path}:{line}: this line is UTF-8 ('{meant}' written as '{garbled}'), but line "
               "{first_bad} is Windows-1252: the file mixes two encodings, so nothing was read; save it "
               "again as 'CSV UTF-8' and import that file").format(
                   path=path, line=line, meant=meant, garbled=garbled, first_bad=first_bad))
    return text, "windows-1252"


def _utf16_without_mark(raw: bytes) -> str | None:
    """UTF-16 text saved without a byte order mark, recognised by its NUL bytes; else None."""
    if len(raw) % 2:
        return None
    for encoding, nuls in (("utf-16-le", raw[1::2]), ("utf-16-be", raw[0::2])):
        if nuls.count(0) * 10 >= len(nuls) * 9:
            try:
                return raw.decode(encoding)
            except UnicodeDecodeError:
                return None
    return None


# A character from U+00C2..U+00F4 followed by what Windows-1252 makes of UTF-8 continuation
# bytes: "Ã©" for "é", "â€™" for "’". Checked by decoding before it counts as garbled.
_MOJIBAKE = re.compile("[\u00c2-\u00f4][\u00a0-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6"
                       "\u02dc\u2013\u2014\u2018\u2019\u201a\u201c\u201d\u201e\u2020-\u2022\u2026\u2030"
                       "\u2039\u203a\u20ac\u2122]+")


def _first_mojibake(text: str) -> tuple[int, str, str] | None:
    """(line, garbled, meant) for the first UTF-8 sequence that was read as Windows-1252."""
    for match in _MOJIBAKE.finditer(text):
        garbled = match.group()
        try:
            meant = garbled.encode("cp1252").decode("utf-8")
        except UnicodeError:
            continue
        line = len(io.StringIO(text[: match.start()], newline="").readlines()) or 1
        if text[: match.start()].endswith(("\n", "\r")):
            line += 1
        return line, garbled, meant
    return None


def _refuse_mojibake(text: str, path: Path) -> str:
    found = _first_mojibake(text)
    if found is not None:
        line, garbled, meant = found
        raise ContactsError(
            _("{path}:{line}: '{garbled}' is what '{meant}' looks like when UTF-8 is read as "
               "Windows-1252: the list was converted wrongly (or mixes encodings), so nothing was read; "
               "save it again as 'CSV UTF-8' from the original and import that file").format(
                   path=path, line=line, garbled=garbled, meant=meant))
    return text


def _delimiter(header: str) -> str:
    counts = {d: header.count(d) for d in (";", ",", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _column_key(header: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", header.strip().lower()).strip("_")


# A record read from a file: the line (or sheet row) it starts on, its fields, and, when it
# could not be read, None and the reason.
Record = tuple[int, "list[str] | None", str]

# Longer than any real name, party or note; what is longer is a broken export.
MAX_FIELD = 10_000
# A quoted field may run over a few lines (an address block); one that runs further is an
# unclosed quote, and the lines after it are read on their own.
MAX_RECORD_LINES = 100
_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


@dataclass(frozen=True)
class _Table:
    """A contact file opened for reading: its header and a stream of the records below it."""

    header: list[str]
    header_line: int
    records: Iterator[Record]
    encoding: str
    delimiter: str


def _read_regular_file(path: Path) -> bytes:
    """The bytes of a contact or address file; anything but a regular file is refused before it
    is opened, since opening a FIFO (or reading a device) waits forever."""
    import os
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ContactsError(_("{path}: cannot read: {strerror}").format(path=path, strerror=exc.strerror)) from None
    if not stat.S_ISREG(mode):
        raise ContactsError(_("{path}: is not a regular file (a pipe, device or socket), so it was not read and "
                               "nothing was changed; save the list as a file and name that file").format(path=path))
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ContactsError(_("{path}: cannot read: {strerror}").format(path=path, strerror=exc.strerror)) from None


def _open_table(path: Path, *, sheet: str | None) -> _Table:
    """Open a CSV/text file or an Excel workbook (recognised by its content, not its name)."""
    raw = _read_regular_file(path)
    if raw.startswith(_ZIP_MAGIC):
        return _xlsx_table(path, raw, sheet=sheet)
    if raw.startswith(_OLE_MAGIC):
        raise ContactsError(_("{path}: is an Excel 97-2003 workbook (.xls) or a password-protected workbook, which "
                               "cannot be read; save it as an Excel workbook (.xlsx) without a password, or as "
                               "CSV").format(
                                   path=path))
    if sheet is not None:
        raise ContactsError(_("{path}: --sheet applies to Excel workbooks, and this is a text file; leave --sheet "
                              "out").format(
            path=path))
    text, encoding = _decode(raw, path)
    if not text.strip():
        raise ContactsError(_("{path}: the file is empty").format(path=path))
    delimiter = _delimiter(text.splitlines()[0])
    records = _csv_records(text, delimiter)
    line, header, reason = next(records)
    if header is None:
        raise ContactsError(_("{path}:{line}: header: {reason}").format(path=path, line=line, reason=reason))
    return _Table(header=header, header_line=line, records=records, encoding=encoding, delimiter=delimiter)


def _csv_records(text: str, delimiter: str) -> Iterator[Record]:
    """Every record with the line it starts on, the header first.

    csv stops for good at its first error; here a record that cannot be read is named and
    reading goes on at the next line, so that one bad record never hides the ones after it.
    """
    lines = io.StringIO(text, newline="").readlines()
    n = len(lines)
    feed = _Lines(lines)
    # One reader for the file: it takes lines from ``feed`` only while it reads a record, so
    # each record can start wherever this loop puts ``feed.pos``.
    reader = csv.reader(feed, delimiter=delimiter, strict=True)
    width: int | None = None
    limit = csv.field_size_limit()
    # An over-long field is reported with its column by read_contacts, not lost in a csv error.
    csv.field_size_limit(max(limit, len(text) + 1))
    try:
        i = 0
        while i < n:
            line = lines[i]
            if '"' not in line:
                # Without quotes a line is a whole record: split it without csv's overhead.
                record = line.rstrip("\r\n").split(delimiter)
                used = 1
            else:
                feed.pos, feed.end = i, min(n, i + MAX_RECORD_LINES)
                try:
                    record = next(reader)
                except csv.Error as exc:
                    yield i + 1, None, _csv_reason(str(exc), delimiter)
                    i += 1
                    continue
                used = feed.pos - i
                if used > 1 and width is not None and len(record) != width and any(v.strip() for v in record):
                    yield i + 1, None, (f"a quoted field starts here and runs over {used} lines, leaving "
                                        f"{len(record)} fields where the header has {width}; the quote is "
                                        "probably not closed (the lines after it were read on their own)")
                    i += 1
                    continue
            if width is None:
                width = len(record)
            yield i + 1, record, ""
            i += used
    finally:
        csv.field_size_limit(limit)


class _Lines:
    """The lines of a file, handed to csv from ``pos`` up to (not including) ``end``."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.pos = 0
        self.end = 0

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        if self.pos >= self.end:
            raise StopIteration
        self.pos += 1
        return self.lines[self.pos - 1]


def _csv_reason(error: str, delimiter: str) -> str:
    """csv's terse error as a sentence a person can fix the file with."""
    if "expected after" in error:
        return (f"a field that starts with a quote must end with it before the next {delimiter!r}; "
                "put the whole field in quotes and double each quote inside it (\"\")")
    if "end of data" in error:
        return "a quote opens a field here that is never closed (the lines after it were read on their own)"
    return f"cannot be read as CSV ({error})"


def _xlsx_table(path: Path, raw: bytes, *, sheet: str | None) -> _Table:
    """The first sheet (or ``sheet``) of an Excel workbook, its rows as text records."""
    name, rows = _xlsx_sheet_rows(path, raw, sheet=sheet)
    for number, cells in rows:
        if any(cells):
            header = list(cells)
            while header and not header[-1]:
                header.pop()
            return _Table(header=header, header_line=number, records=_xlsx_records(rows, len(header)),
                          encoding=f"Excel workbook, sheet '{name}'", delimiter="")
    raise ContactsError(_("{path}: sheet '{name}' is empty").format(path=path, name=name))


def _xlsx_sheet_rows(path: Path, raw: bytes, *, sheet: str | None) -> tuple[str, Iterator[tuple[int, list[str]]]]:
    """The name of the sheet to read and its rows (numbered as Excel numbers them) as text."""
    if b"opendocument" in raw[:100]:
        raise ContactsError(_("{path}: is an OpenDocument spreadsheet (LibreOffice .ods), which cannot be read; save "
                               "it as .xlsx or as CSV").format(path=path))
    from openpyxl import load_workbook

    try:
        # read_only streams the rows; data_only gives the values Excel stored for formulas.
        workbook = load_workbook(io.BytesIO(raw), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a file it cannot read
        raise ContactsError(_("{path}: is a ZIP file but cannot be read as an Excel workbook ({exc}); save it as .xlsx "
                               "or as CSV").format(path=path, exc=exc)) from None
    names = workbook.sheetnames
    if not names or (sheet is not None and sheet not in names):
        workbook.close()
        if not names:
            raise ContactsError(_("{path}: the workbook has no sheets").format(path=path))
        raise ContactsError(_("{path}: has no sheet '{sheet}' (its sheets: {items})").format(
            path=path, sheet=sheet, items=', '.join(repr(n) for n in names)))
    name = sheet or names[0]
    worksheet = workbook[name]
    # Some programs write a wrong size into the sheet; read what is really there.
    worksheet.reset_dimensions()
    return name, _xlsx_rows(path, workbook, worksheet.iter_rows(values_only=True), name)


def _xlsx_rows(path: Path, workbook, rows: Iterator[tuple], name: str) -> Iterator[tuple[int, list[str]]]:
    number = 0
    try:
        for number, values in enumerate(rows, start=1):
            yield number, [_cell_text(v) for v in values]
    except Exception as exc:  # a damaged sheet: say where reading stopped
        raise ContactsError(_("{path}: sheet '{name}' cannot be read after row {number} ({exc}); open it in Excel and "
                               "save it again").format(path=path, name=name, number=number, exc=exc)) from None
    finally:
        workbook.close()


def _xlsx_records(rows: Iterator[tuple[int, list[str]]], width: int) -> Iterator[Record]:
    from openpyxl.utils import get_column_letter

    for number, cells in rows:
        beyond = next((i for i in range(width, len(cells)) if cells[i].strip()), None)
        if beyond is not None:
            yield number, None, (f"column {get_column_letter(beyond + 1)} has a value, but the header has "
                                 f"{width} columns")
            continue
        yield number, (cells + [""] * (width - len(cells)))[:width], ""


# Split name columns as Dutch and English exports have them, each group in order of preference.
NAME_PARTS = (
    ("voornaam", "roepnaam", "first_name", "firstname", "given_name", "voorletters", "initials"),
    ("tussenvoegsel", "tussenvoegsels", "tussenvoegsel_s", "middle_name"),
    ("achternaam", "last_name", "lastname", "surname", "family_name", "familienaam"),
)


def _name_parts(columns: Sequence[str]) -> tuple[tuple[str, ...], ...]:
    """The split name columns present, grouped as first name, infix and last name."""
    groups = tuple(tuple(key for key in group if key in columns) for group in NAME_PARTS)
    return groups if any(groups) else ()


def _joined_name(values: dict[str, str], parts: tuple[tuple[str, ...], ...]) -> str:
    """``Jan`` + ``van der`` + ``Berg`` -> ``Jan van der Berg``."""
    chosen = (next((values[key] for key in group if values.get(key)), "") for group in parts)
    return " ".join(part for part in chosen if part)


def _overlong_field(record: list[str]) -> int | None:
    for i, value in enumerate(record):
        if len(value) > MAX_FIELD:
            return i
    return None


def _cell_text(value: object) -> str:
    """A cell as the text Excel shows for it (numbers without a trailing .0, dates as ISO)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return f"{value:.15g}"  # Excel shows 15 significant digits
    if isinstance(value, dt.datetime):
        if value.time() == dt.time():
            return value.date().isoformat()
        return value.isoformat(sep=" ", timespec="minutes" if not value.second else "seconds")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return str(value)


def read_contacts(path: Path, *, default_basis: str, sheet: str | None = None) -> ParsedFile:
    """Read and check a contact file (CSV/text or Excel workbook) without storing anything.

    Problems are collected, not raised: every record is either read or named with its line.
    """
    from email_validator import EmailNotValidError, validate_email

    from .headers import CONTACT_EXTRA_MAX, CONTACT_VALUE_MAX, length_problem, value_problem

    # The address has its own limit (email-validator's, 254); the others are ours.
    limits = {"email": 254, "basis": CONTACT_VALUE_MAX, **dict.fromkeys(STANDARD[1:], CONTACT_VALUE_MAX)}
    table = _open_table(path, sheet=sheet)
    header, encoding, delimiter, at = table.header, table.encoding, table.delimiter, table.header_line
    columns: list[str] = []
    seen: dict[str, str] = {}
    problems: list[str] = []
    for raw_name in header:
        name = raw_name.strip()
        key = ALIASES.get(name.lower()) or _column_key(name)
        if not key:
            problems.append(_("{path}:{line}: column {number}: has no name").format(path=path, line=at,
                                                                                   number=len(columns) + 1))
        elif key in seen:
            problems.append(_("{path}:{line}: column '{name}': means the same as column '{other}'").format(
                path=path, line=at, name=name, other=seen[key]))
        seen[key] = name
        columns.append(key)
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        found = ", ".join(repr(h.strip()) for h in header)
        raise ContactsError(ngettext(
            "{path}:{line}: missing required column {columns} (found {found}; e-mail may be called email, e-mail or "
            "e-mailadres)",
            "{path}:{line}: missing required columns {columns} (found {found}; e-mail may be called email, e-mail or "
            "e-mailadres)", len(missing)).format(path=path, line=at, columns=", ".join(f"'{c}'" for c in missing),
                                                 found=found))
    if problems:
        raise ContactsError(_("{path}: the header is not usable").format(path=path), problems)
    label = {key: seen[key] for key in columns}
    extra_columns = tuple(c for c in columns if c not in STANDARD)
    name_parts = _name_parts(columns)

    rows: list[ParsedRow] = []
    first_seen: dict[str, int] = {}
    empty = 0
    for line, record, reason in table.records:
        if record is None:
            problems.append(_("{path}:{line}: {reason}").format(path=path, line=line, reason=reason))
            continue
        if not any(v.strip() for v in record):
            empty += 1  # counted, so that the summary says they were skipped
            continue
        if len(record) != len(columns):
            problems.append(_("{path}:{line}: has {fields} fields, the header has {columns}").format(
                path=path, line=line, fields=len(record), columns=len(columns)))
            continue
        overlong = _overlong_field(record)
        if overlong is not None:
            problems.append(_("{path}:{line}: column '{column}': is {length} characters long, more than the {max} a "
                              "contact field may hold").format(path=path, line=line, column=label[columns[overlong]],
                                                               length=f"{len(record[overlong]):,}",
                                                               max=f"{MAX_FIELD:,}"))
            continue
        values = {key: value.strip() for key, value in zip(columns, record)}
        row_problems = []
        for key, value in values.items():
            # The values reach headers (To, a personalised Subject): one rule for every source.
            problem = value_problem(value) or length_problem(value, limits.get(key, CONTACT_EXTRA_MAX))
            if problem:
                row_problems.append(_("{path}:{line}: column '{column}': {problem}").format(
                    path=path, line=line, column=label[key], problem=problem))
        for key in REQUIRED:
            if not values.get(key):
                row_problems.append(_("{path}:{line}: column '{column}': is empty").format(
                    path=path, line=line, column=label[key]))
        address = values.get("email", "")
        if address and not any(f"'{label['email']}':" in p for p in row_problems):
            try:
                # The same normal form as normalise_address (inlined: 50,000 rows call it).
                address = validate_email(address, check_deliverability=False, allow_smtputf8=False).ascii_email
            except EmailNotValidError as exc:
                row_problems.append(_("{path}:{line}: column '{column}': {address} is not a valid address "
                                      "({reason})").format(path=path, line=line, column=label['email'],
                                                           address=repr(address), reason=validator_reason(exc)))
            else:
                k = email_key(address)
                if k in first_seen:
                    row_problems.append(_("{path}:{line}: column '{column}': repeats the address of line "
                                          "{first}").format(
                        path=path, line=line, column=label['email'], first=first_seen[k]))
                else:
                    first_seen[k] = line
        name = values.get("name") or _joined_name(values, name_parts)
        if not values.get("name") and name and length_problem(name, CONTACT_VALUE_MAX):
            # Each part passed on its own; the name they make goes into the To header whole.
            parts = "+".join(label[key] for part in name_parts for key in part if values.get(key))
            row_problems.append(_("{path}:{line}: columns {columns}: {problem}").format(
                path=path, line=line, columns=parts, problem=length_problem(name, CONTACT_VALUE_MAX)))
        if row_problems:
            problems.extend(row_problems)
            continue
        rows.append(ParsedRow(line=line, contact=Contact(
            email=address,
            name=name,
            party=values["party"],
            municipality=values["municipality"],
            role=values.get("role", ""),
            basis=values.get("basis") or default_basis,
            extra=tuple((c, values[c]) for c in extra_columns),
        )))
    if not rows and not problems:
        raise ContactsError(_("{path}: no contacts below the header").format(path=path))
    used = {key for part in name_parts for key in part}
    return ParsedFile(path=path, rows=tuple(rows), problems=tuple(problems), encoding=encoding,
                      delimiter=delimiter, extras=tuple(c for c in extra_columns if c not in used),
                      name_from=() if "name" in columns else tuple(label[key] for part in name_parts for key in part),
                      empty=empty)


@dataclass(frozen=True)
class ImportResult:
    """What an import did (or, with ``dry_run``, would do)."""

    path: Path
    added: int
    updated: int
    unchanged: int
    kept_status: int  # re-imported but opted out or bounced: stays so
    suppressed: int  # erased on request earlier: refused
    refused: tuple[str, ...]
    dry_run: bool
    encoding: str
    delimiter: str
    opted_out: int = 0  # opted out earlier while not a contact: refused
    withheld: tuple[str, ...] = ()  # ``FILE:LINE: ...`` for each row refused as opted out or erased
    extras: tuple[str, ...] = ()  # columns kept only as extra fields
    name_from: tuple[str, ...] = ()  # split name columns that made the name
    empty: int = 0  # rows with no value in any field: skipped


def suppression_hash(conn: sqlite3.Connection, address: str) -> str:
    return hashlib.sha256((store.salt(conn) + email_key(address)).encode()).hexdigest()


def _suppress(conn: sqlite3.Connection, key: str, reason: str, moment: str, *, replace: bool = False) -> int:
    """Inside a transaction: put ``key`` on the suppression list, and the mailbox it reaches too
    (without ``+tag``, Gmail without dots: ``guard.reduced_key``), so that another form of the
    same address is refused as well. Returns 1 when the exact form was not on the list yet.

    ``replace`` lets an erasure overrule an opt-out stored for the exact form; the reduced form
    keeps what it had (other forms may have put it there).
    """
    from .guard import reduced_key

    verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
    inserted = conn.execute(f"{verb} INTO suppressions (hash, reason, created_at) VALUES (?, ?, ?)",
                            (suppression_hash(conn, key), reason, moment)).rowcount
    reduced = reduced_key(key)
    if reduced != key:
        conn.execute("INSERT OR IGNORE INTO suppressions (hash, reason, created_at) VALUES (?, ?, ?)",
                     (suppression_hash(conn, reduced), reason + ANOTHER_FORM, moment))
    return inserted


def import_contacts(
    conn: sqlite3.Connection,
    path: Path,
    *,
    default_basis: str,
    dry_run: bool = False,
    skip_invalid: bool = False,
    sheet: str | None = None,
    now: dt.datetime | None = None,
) -> ImportResult:
    """Import a contact file: all or nothing unless ``skip_invalid``; nothing stored on ``dry_run``.

    Raises :class:`ContactsError` listing every problem when the file has any and
    ``skip_invalid`` is off; in that case nothing is stored. Addresses on the suppression
    list (opted out while not a contact, or erased) are refused and named by line.
    """
    parsed = read_contacts(path, default_basis=default_basis, sheet=sheet)
    if parsed.problems and not skip_invalid:
        n = len(parsed.problems)
        raise ContactsError(ngettext("{path}: {count} problem; nothing was imported (fix the file, or use "
                                     "--skip-invalid to import the valid rows)",
                                     "{path}: {count} problems; nothing was imported (fix the file, or use "
                                     "--skip-invalid to import the valid rows)", n).format(path=path, count=n),
                            parsed.problems)
    from .guard import reduced_key

    moment = store.iso(now or store.now_utc())
    source = path.name
    added = updated = unchanged = kept = suppressed = opted_out = 0
    withheld: list[str] = []
    salt_value = store.salt(conn)
    with store.transaction(conn):
        existing = {
            row["email_key"]: row
            for row in conn.execute("SELECT id, email_key, email, name, party, municipality, role, extra, basis, status FROM contacts")
        }
        blocked = {row[0]: row[1] for row in conn.execute("SELECT hash, reason FROM suppressions")}
        # The mailboxes of contacts who opted out: another form of their address (a +tag, Gmail
        # dots) is the same person. Contacts who opted out before their hash was stored count too.
        opted_mailboxes = {reduced_key(k): r["email"] for k, r in existing.items() if r["status"] == "unsubscribed"}
        for row in parsed.rows:
            c = row.contact
            key = c.key
            refusal = None if key in existing else _import_refusal(key, blocked, opted_mailboxes, salt_value)
            if refusal is not None:
                erased, why = refusal
                if erased:
                    suppressed += 1
                else:
                    opted_out += 1
                withheld.append(f"{path}:{row.line}: {why}")
                continue
            extra = json.dumps(dict(c.extra), ensure_ascii=False, sort_keys=True)
            old = existing.get(key)
            if old is None:
                added += 1
                if not dry_run:
                    conn.execute(
                        "INSERT INTO contacts (email, email_key, name, party, municipality, role, extra, basis,"
                        " source, imported_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                        (c.email, key, c.name, c.party, c.municipality, c.role, extra, c.basis, source, moment, moment),
                    )
                continue
            same = (old["email"], old["name"], old["party"], old["municipality"], old["role"], old["extra"], old["basis"]) == (
                c.email, c.name, c.party, c.municipality, c.role, extra, c.basis)
            if old["status"] in ("unsubscribed", "bounced"):
                kept += 1
            elif old["status"] == "removed":
                updated += 1
            elif same:
                unchanged += 1
                continue
            else:
                updated += 1
            if not dry_run:
                # An opt-out or bounce is never undone by an import; a staff removal is.
                conn.execute(
                    "UPDATE contacts SET email=?, name=?, party=?, municipality=?, role=?, extra=?, basis=?, source=?,"
                    " updated_at=?, status = CASE WHEN status = 'removed' THEN 'active' ELSE status END,"
                    " status_at = CASE WHEN status = 'removed' THEN ? ELSE status_at END"
                    " WHERE id=?",
                    (c.email, c.name, c.party, c.municipality, c.role, extra, c.basis, source, moment, moment, old["id"]),
                )
    return ImportResult(
        path=path, added=added, updated=updated, unchanged=unchanged, kept_status=kept, suppressed=suppressed,
        refused=parsed.problems, dry_run=dry_run, encoding=parsed.encoding, delimiter=parsed.delimiter,
        opted_out=opted_out, withheld=tuple(withheld), extras=parsed.extras, name_from=parsed.name_from,
        empty=parsed.empty,
    )


def _import_refusal(key: str, blocked: dict[str, str], opted_mailboxes: dict[str, str],
                    salt_value: str) -> tuple[bool, str] | None:
    """Why an import refuses a new address, as (erased, the sentence for its line); None to add it.

    The exact form and the mailbox it reaches (``guard.reduced_key``) are both looked up: one
    hash more per row.
    """
    from .guard import reduced_key

    reason = blocked.get(hashlib.sha256((salt_value + key).encode()).hexdigest())
    if reason is not None and not reason.endswith(ANOTHER_FORM):
        if _is_opt_out(reason):
            return False, "this address opted out earlier; an import never adds it"
        return True, "this person was erased on request; the address is never imported again"
    reduced = reduced_key(key)
    if reason is None and reduced != key:
        reason = blocked.get(hashlib.sha256((salt_value + reduced).encode()).hexdigest())
    if reason is not None:
        if _is_opt_out(reason):
            return False, ("this address reaches the mailbox of an address that opted out earlier (only a "
                           "+tag or Gmail dots differ); an import never adds it")
        return True, ("this address reaches the mailbox of a person erased on request (only a +tag or Gmail "
                      "dots differ); it is never imported")
    contact = opted_mailboxes.get(reduced)
    if contact is not None:
        return False, (f"this address reaches the mailbox of the contact {mask(contact)}, who opted out (only a "
                       "+tag or Gmail dots differ); an import never adds it")
    return None


def _is_opt_out(reason: str) -> bool:
    """Whether a suppression records an opt-out; any other reason (erasure) counts as erased."""
    return reason.startswith(OPT_OUT)


def _row_to_contact(row: sqlite3.Row) -> Contact:
    return Contact(
        id=row["id"], email=row["email"], name=row["name"], party=row["party"], municipality=row["municipality"],
        role=row["role"], extra=() if row["extra"] == "{}" else tuple(sorted(json.loads(row["extra"]).items())),
        basis=row["basis"], status=row["status"],
    )


def list_contacts(conn: sqlite3.Connection, *, status: str | None = None) -> list[dict]:
    """Every contact (or those with ``status``), as plain dicts for a table or JSON."""
    query = "SELECT * FROM contacts"
    args: tuple = ()
    if status:
        query += " WHERE status = ?"
        args = (status,)
    out = []
    for row in conn.execute(query + " ORDER BY municipality, party, email", args):
        out.append({
            "email": row["email"], "name": row["name"], "party": row["party"], "municipality": row["municipality"],
            "role": row["role"], "status": row["status"], "basis": row["basis"], "source": row["source"],
            "imported_at": row["imported_at"], "status_at": row["status_at"], "status_reason": row["status_reason"],
            "extra": json.loads(row["extra"]),
        })
    return out


def active_contacts(conn: sqlite3.Connection) -> Iterator[Contact]:
    """Active contacts in a stable order, streamed."""
    for row in conn.execute("SELECT * FROM contacts WHERE status = 'active' ORDER BY id"):
        yield _row_to_contact(row)


def count_contacts(conn: sqlite3.Connection) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES, 0)
    for status, n in conn.execute("SELECT status, COUNT(*) FROM contacts GROUP BY status"):
        counts[status] = n
    return counts


def get_contact(conn: sqlite3.Connection, address: str) -> Contact:
    row = conn.execute("SELECT * FROM contacts WHERE email_key = ?", (email_key(address),)).fetchone()
    if row is None:
        raise UnknownContact(_("no contact {address}").format(address=mask(address)))
    return _row_to_contact(row)


def show_contact(conn: sqlite3.Connection, address: str) -> dict:
    """Every stored field of one contact, where it came from, and what it was sent.

    ``address`` is as a person typed it: it goes through ``normalise_address`` (InvalidAddress).
    """
    key = address_key(address)
    row = conn.execute("SELECT * FROM contacts WHERE email_key = ?", (key,)).fetchone()
    if row is None:
        raise UnknownContact(_("no contact {address}").format(address=mask(key)))
    info = {k: row[k] for k in row.keys() if k not in ("id", "email_key")}
    info["extra"] = json.loads(row["extra"])
    # A message written to the outbox reached no one: its state is "outbox", not "sent".
    info["sends"] = [
        dict(r) for r in conn.execute(
            "SELECT campaign, mail, CASE WHEN state = 'sent' AND transport = 'outbox' THEN 'outbox' ELSE state END"
            " AS state, attempts, resent, sent_at, updated_at, error, transport FROM ledger"
            " WHERE contact_id = ? ORDER BY campaign, mail", (row["id"],))
    ]
    from .inbox import events_for

    info["came_back"] = events_for(conn, row["id"])
    return info


def set_status(
    conn: sqlite3.Connection,
    addresses: Iterable[str],
    *,
    status: str,
    reason: str = "",
    now: dt.datetime | None = None,
) -> tuple[int, list[str]]:
    """Set the status of contacts (unsubscribe, bounce, remove); returns (changed, unknown addresses).

    Pending sends to them are marked suppressed at once, so that a running worker skips them.
    """
    moment = store.iso(now or store.now_utc())
    changed = 0
    unknown: list[str] = []
    with store.transaction(conn):
        for address in addresses:
            row = conn.execute("SELECT id, status FROM contacts WHERE email_key = ?", (email_key(address),)).fetchone()
            if row is None:
                unknown.append(address)
                continue
            # An opt-out outranks a staff removal; a removal never hides an opt-out.
            if status == "removed" and row["status"] in ("unsubscribed", "bounced"):
                continue
            # A bounce must not hide an opt-out either: a bounced contact can be reactivated.
            if status == "bounced" and row["status"] == "unsubscribed":
                continue
            conn.execute("UPDATE contacts SET status=?, status_at=?, status_reason=? WHERE id=?",
                         (status, moment, reason, row["id"]))
            conn.execute("UPDATE ledger SET state='suppressed', updated_at=? WHERE contact_id=? AND state='pending'",
                         (moment, row["id"]))
            if status == "unsubscribed":
                # Kept as a hash too: a later change of address or an import under another form is caught.
                _suppress(conn, email_key(address), OPT_OUT, moment)
            changed += 1
    return changed, unknown


def remove_contacts(conn: sqlite3.Connection, addresses: Sequence[str], *, now: dt.datetime | None = None
                    ) -> tuple[int, list[str]]:
    """Deactivate contacts by staff decision; returns (changed, unknown addresses in normal form).

    Every typed address goes through ``normalise_address`` first, as forget and unsubscribe do:
    one that is not usable raises :class:`InvalidAddress` and nothing is changed.
    """
    normal: dict[str, None] = {}
    for address in addresses:
        try:
            normal[normalise_address(address)] = None
        except InvalidAddress as exc:
            raise InvalidAddress(_("{exc}; nothing was changed").format(exc=exc)) from None
    return set_status(conn, list(normal), status="removed", reason="removed by staff", now=now)


@dataclass(frozen=True)
class UnsubscribeResult:
    """What ``unsubscribe`` did with the addresses it was given."""

    unsubscribed: int  # contacts whose status became 'unsubscribed'
    recorded: tuple[str, ...]  # masked addresses that are not contacts: kept as a salted hash
    already: int  # opted out (or erased) before: left as they were


def unsubscribe(
    conn: sqlite3.Connection,
    addresses: Sequence[str],
    *,
    reason: str = "",
    now: dt.datetime | None = None,
) -> UnsubscribeResult:
    """Record opt-outs, for contacts and for addresses that are not (yet) contacts alike.

    Every address is checked first (``normalise_address``): one that is not usable raises
    :class:`InvalidAddress` and nothing is changed. A contact's pending sends are suppressed at
    once; an address that is not a contact is kept as a salted hash in ``suppressions``, so that
    a later import refuses it.
    """
    keys: dict[str, None] = {}
    for address in addresses:
        try:
            keys[address_key(address)] = None
        except InvalidAddress as exc:
            raise InvalidAddress(_("{exc}; nothing was changed").format(exc=exc)) from None
    moment = store.iso(now or store.now_utc())
    unsubscribed = already = 0
    recorded: list[str] = []
    from .guard import reduced_key

    with store.transaction(conn):
        # Every contact whose address reaches the same mailbox (a +tag, Gmail dots) opts out with it.
        # A list of addresses: one pass over the contacts. One or a few (an opt-out read from the
        # inbox, one message at a time): only the contacts on the same domain, found by SQLite.
        mailboxes: dict[str, list[sqlite3.Row]] | None = None
        if len(keys) > _FEW_ADDRESSES:
            mailboxes = {}
            for row in conn.execute("SELECT id, email_key, status FROM contacts ORDER BY id"):
                mailboxes.setdefault(reduced_key(row["email_key"]), []).append(row)
        for key in keys:
            # INSERT OR IGNORE: an erasure recorded earlier keeps its reason.
            inserted = _suppress(conn, key, OPT_OUT, moment)
            reached = (mailboxes.get(reduced_key(key), []) if mailboxes is not None
                       else same_mailbox(conn, key))
            if not reached:
                if inserted:
                    recorded.append(mask(key))
                already += 1 - inserted
                continue
            if all(row["status"] == "unsubscribed" for row in reached):
                already += 1  # the first opt-out keeps its moment and reason
                continue
            for row in reached:
                if row["status"] == "unsubscribed":
                    continue
                conn.execute("UPDATE contacts SET status = 'unsubscribed', status_at = ?, status_reason = ?"
                             " WHERE id = ?", (moment, reason, row["id"]))
                conn.execute("UPDATE ledger SET state = 'suppressed', updated_at = ? WHERE contact_id = ?"
                             " AND state = 'pending'", (moment, row["id"]))
                unsubscribed += 1
    return UnsubscribeResult(unsubscribed=unsubscribed, recorded=tuple(recorded), already=already)


_FEW_ADDRESSES = 20


def same_mailbox(conn: sqlite3.Connection, key: str) -> list[sqlite3.Row]:
    """The contacts (any status) whose address reaches the mailbox ``key`` reaches, in id order:
    the opt-outs and the test-mail guard both ask this."""
    from .guard import DOTLESS_DOMAINS, reduced_key

    def like(text: str) -> str:
        return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")

    reduced = reduced_key(key)
    local, _, domain = reduced.rpartition("@")
    if domain in DOTLESS_DOMAINS:
        # Dots do not count there: every address on those domains is a candidate (few, in practice).
        query = " OR ".join(["email_key LIKE ? ESCAPE '\\'"] * len(DOTLESS_DOMAINS))
        args: tuple = tuple("%@" + like(d) for d in DOTLESS_DOMAINS)
    else:
        # The address itself, or it with a +tag: found by SQLite without reducing every contact here.
        query = "email_key = ? OR email_key LIKE ? ESCAPE '\\'"
        args = (reduced, f"{like(local)}+%@{like(domain)}")
    return [row for row in conn.execute(f"SELECT id, email_key, status FROM contacts WHERE {query} ORDER BY id", args)
            if reduced_key(row["email_key"]) == reduced]


@dataclass(frozen=True)
class Reactivated:
    """A contact made active again by staff, and how many unsent mails went back in the queue."""

    masked: str
    was: str
    by: str
    at: str
    restored: int


def current_user() -> str:
    """Who is at the keyboard, for the record of a reactivation; never fails."""
    import getpass

    try:
        return getpass.getuser() or "unknown user"
    except Exception:  # no user name in the environment nor in the password database
        return "unknown user"


def reactivate(conn: sqlite3.Connection, address: str, *, by: str, now: dt.datetime | None = None) -> Reactivated:
    """Make a bounced (or removed) contact active again, recording who did it and when.

    An opt-out is the person's own wish and only they can undo it; an erased person is gone.
    Both are refused, as is an active contact. Sends suppressed by the bounce go back to
    pending for the mails that are still scheduled or sending; finished ones stay as they were.
    """
    key = address_key(address)
    masked = mask(key)
    moment = store.iso(now or store.now_utc())
    with store.transaction(conn):
        row = conn.execute("SELECT id, status, status_reason FROM contacts WHERE email_key = ?", (key,)).fetchone()
        if row is None:
            hit = conn.execute("SELECT reason FROM suppressions WHERE hash = ?", (suppression_hash(conn, key),)).fetchone()
            if hit is not None and _is_opt_out(hit[0]):
                raise StateError(_("{masked} opted out, and only the person can undo an opt-out (by asking for the "
                                   "mails again); nothing was changed").format(masked=masked))
            if hit is not None:
                raise StateError(_("{masked} was erased on request and cannot be reactivated; nothing was "
                                   "changed").format(
                    masked=masked))
            raise UnknownContact(_("no contact {masked}").format(masked=masked))
        if row["status"] == "unsubscribed":
            raise StateError(_("{masked} opted out, and only the person can undo an opt-out (by asking for the mails "
                                "again); the contact stays unsubscribed").format(masked=masked))
        if row["status"] == "active":
            raise StateError(_("{masked} is already active; nothing was changed").format(masked=masked))
        was = row["status"]
        note = f"reactivated by {by} (was {was}" + (f": {row['status_reason']})" if row["status_reason"] else ")")
        conn.execute("UPDATE contacts SET status = 'active', status_at = ?, status_reason = ? WHERE id = ?",
                     (moment, note[:300], row["id"]))
        restored = conn.execute(
            "UPDATE ledger SET state = 'pending', updated_at = ? WHERE contact_id = ? AND state = 'suppressed'"
            " AND EXISTS (SELECT 1 FROM schedule s JOIN plans p USING (campaign) WHERE s.campaign = ledger.campaign"
            " AND s.mail = ledger.mail AND s.state IN ('scheduled', 'sending') AND p.cancelled = 0)",
            (moment, row["id"])).rowcount
    return Reactivated(masked=masked, was=was, by=by, at=moment, restored=restored)


# Anything shaped like an address; control characters never belong to one.
_ADDRESS_LIKE = re.compile(r"[^\s,;<>\"'()\[\]\x00-\x1f\x7f]+@[^\s,;<>\"'()\[\]\x00-\x1f\x7f]+")


def read_address_list(path: Path) -> list[str]:
    """Addresses from a file (one per line, a CSV or text export, or an Excel workbook), normalised.

    Reads the encodings an import reads (UTF-16 too). Raises :class:`ContactsError` naming the
    line of an address that is not usable, and when the file holds no address at all.
    """
    found: list[str] = []
    problems: list[str] = []
    for number, line in _text_lines(path):
        for candidate in _ADDRESS_LIKE.findall(line):
            candidate = candidate.strip(".")
            if candidate.lower().startswith("mailto:"):
                candidate = candidate[len("mailto:"):]
            try:
                found.append(normalise_address(candidate))
            except InvalidAddress as exc:
                problems.append(_("{path}:{number}: {exc}").format(path=path, number=number, exc=exc))
    if problems:
        n = len(problems)
        raise ContactsError(ngettext("{path}: {count} address is not usable; nothing was changed",
                                     "{path}: {count} addresses are not usable; nothing was changed", n).format(
                                         path=path, count=n),
                            problems)
    if not found:
        raise ContactsError(_("{path} holds no e-mail address, so nothing was changed (give one address per line, or a "
                               "CSV, text or Excel list with an e-mail column)").format(path=path))
    return found


def _text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """The lines of a text file, or the rows of a workbook's first sheet, with their numbers."""
    raw = _read_regular_file(path)
    if raw.startswith(_ZIP_MAGIC):
        _, rows = _xlsx_sheet_rows(path, raw, sheet=None)
        for number, cells in rows:
            yield number, "\t".join(cells)
        return
    if raw.startswith(_OLE_MAGIC):
        _open_table(path, sheet=None)  # raises the sentence for an old or protected workbook
    text, _ = _decode(raw, path)
    yield from enumerate(io.StringIO(text, newline="").readlines(), start=1)


@dataclass(frozen=True)
class ForgetResult:
    """What an erasure did. ``address`` is masked."""

    address: str
    imported: bool  # False: never imported; only the hash was recorded
    already: bool  # erased earlier: nothing was left to do
    files_removed: int
    lines_removed: int  # timeline lines of simulations


def forget_contact(conn: sqlite3.Connection, address: str, *, outbox: Path, not_imported: bool = False,
                   now: dt.datetime | None = None) -> ForgetResult:
    """Erase a person: every file written for them, their contact and ledger rows; a salted hash stays.

    The address goes through :func:`address_key`, as on import. The files are those the tool
    knows it wrote for this contact: outbox messages named by the ledger's Message-IDs, test
    mails personalised for them, and what build, preview and simulate recorded in the table
    ``written``. Another contact's files are not touched. No contact with the address is an
    error (:class:`UnknownContact`), unless ``not_imported``: then only the hash is recorded, so a
    later import refuses the address. Raises :class:`ContactsError` when a file cannot be
    removed; the contact is kept then, so that running it again finds the rest.
    """
    key = address_key(address)
    masked = mask(key)
    hashed = suppression_hash(conn, key)
    moment = store.iso(now or store.now_utc())
    row = conn.execute("SELECT id FROM contacts WHERE email_key = ?", (key,)).fetchone()
    if row is None:
        hit = conn.execute("SELECT reason FROM suppressions WHERE hash = ?", (hashed,)).fetchone()
        # Only an erasure of this very address is "erased earlier": an opt-out, or the hash of the
        # mailbox another form reaches, still takes the erasure request.
        erased = hit is not None and not _is_opt_out(hit[0]) and not hit[0].endswith(ANOTHER_FORM)
        # Someone who wrote in (an opt-out by mail) is known to the tool though never imported:
        # what the inbox kept about them goes without --not-imported.
        inbox_knows = conn.execute("SELECT 1 FROM inbox_events WHERE hash = ?", (hashed,)).fetchone() is not None
        if erased and not inbox_knows:
            return ForgetResult(address=masked, imported=False, already=True, files_removed=0, lines_removed=0)
        if not not_imported and not inbox_knows:
            raise UnknownContact(
                _("no contact {masked}; nothing was erased. Check the address with `campaign contacts "
                   "list`, or, if this person was never imported and asks to be kept out, run it again with "
                   "--not-imported.").format(masked=masked))
        with store.transaction(conn):
            _suppress(conn, key, "erasure requested before import", moment, replace=True)
            _forget_inbox(conn, contact_id=None, hashed=hashed)
        if inbox_knows:
            store.scrub(conn)
        return ForgetResult(address=masked, imported=False, already=erased, files_removed=0, lines_removed=0)
    if not_imported:
        raise ContactsError(_("{masked} is an imported contact; run it again without --not-imported to erase it and "
                               "every file written for it.").format(masked=masked))
    contact_id = row["id"]
    with store.transaction(conn):
        # A running worker claims only pending rows: from here on it sends this person nothing.
        conn.execute("UPDATE ledger SET state = 'suppressed', updated_at = ? WHERE contact_id = ? AND state = 'pending'",
                     (moment, contact_id))
    outbox_files = _outbox_files(conn, contact_id, key, outbox)
    recorded = conn.execute("SELECT path, kind FROM written WHERE contact_id = ? OR everyone = 1",
                            (contact_id,)).fetchall()
    removed = lines = 0
    failures: list[str] = []
    gone: list[str] = []
    for path in outbox_files:
        removed += _remove(path, failures)
    for entry in recorded:
        path = Path(entry["path"])
        if entry["kind"] == "file":
            removed += _remove(path, failures)
            gone.append(entry["path"])
        elif path.is_dir():
            files_out, lines_out = _forget_in_simulation(path, contact_id, failures)
            removed += files_out
            lines += lines_out
        else:
            gone.append(entry["path"])  # the folder was deleted since
    if failures:
        raise ContactsError(_("{masked}: {count} file(s) could not be erased; the contact is kept, so that running "
                               "forget again after fixing this finds the rest (its pending sends are "
                               "suppressed)").format(
                                   masked=masked, count=len(failures)), failures)
    with store.transaction(conn):
        conn.execute("DELETE FROM ledger WHERE contact_id = ?", (contact_id,))
        _forget_inbox(conn, contact_id=contact_id, hashed=hashed)
        conn.execute("DELETE FROM written WHERE contact_id = ? AND kind = 'file'", (contact_id,))
        conn.executemany("DELETE FROM written WHERE path = ?", [(p,) for p in gone])
        conn.execute("DELETE FROM contacts WHERE id = ?", (contact_id,))
        _suppress(conn, key, "erased on request", moment, replace=True)
    store.scrub(conn)
    # A message the worker had in flight before the rows were suppressed lands only now.
    for path in outbox_files:
        removed += _remove(path, failures)
    return ForgetResult(address=masked, imported=True, already=False, files_removed=removed, lines_removed=lines)


def _forget_inbox(conn: sqlite3.Connection, *, contact_id: int | None, hashed: str) -> None:
    from .inbox import forget

    forget(conn, contact_id=contact_id, hashed=hashed)


def _remove(path: Path, failures: list[str]) -> int:
    """Remove a file and the temporary file it is written through; 1 if the file was there."""
    from .files import tmp_path

    found = 0
    for candidate in (path, tmp_path(path)):
        try:
            candidate.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            failures.append(_("{candidate}: {strerror}").format(candidate=candidate, strerror=exc.strerror))
            continue
        found += candidate == path
    return found


def _outbox_files(conn: sqlite3.Connection, contact_id: int, key: str, outbox: Path) -> list[Path]:
    """The contact's messages in the outbox: named by the Message-IDs in the ledger; test mails
    personalised for them carry a Message-ID made from their address (see message.message_id)."""
    from .message import message_id
    from .transport import outbox_path

    found = [outbox_path(outbox, r["message_id"], group=f"{r['campaign']}/{r['mail']:02d}") for r in conn.execute(
        "SELECT campaign, mail, message_id FROM ledger WHERE contact_id = ?", (contact_id,))]
    test_folder = outbox / "test"
    if test_folder.is_dir():
        for path in test_folder.glob("*.eml"):
            with path.open("rb") as fh:
                head = fh.read(8192).split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
            match = re.search(r"^Message-ID:[ \t]*(<([^>@]+)\.(\d+)\.[0-9a-f]+@([^>]+)>)", head, re.M | re.I)
            if match and match[1] == message_id(match[2], int(match[3]), key, match[4]):
                found.append(path)
    return found


def _forget_in_simulation(folder: Path, contact_id: int, failures: list[str]) -> tuple[int, int]:
    """Remove the contact's messages from a simulation folder (named ``NNNNN-c<id>.eml``) and
    their lines from its timeline (by the ``contact_id`` column); other contacts' stay as they are."""
    from . import files

    name = re.compile(rf"\d{{5}}-c{contact_id}\.eml")
    removed = 0
    for sub in folder.iterdir():
        if sub.is_dir():
            for path in sub.iterdir():
                if name.fullmatch(path.name):
                    removed += _remove(path, failures)
    timeline = folder / "timeline.csv"
    if not timeline.exists():
        return removed, 0
    try:
        rows = list(csv.reader(io.StringIO(timeline.read_text(encoding="utf-8"), newline="")))
        column = rows[0].index("contact_id")
    except (OSError, UnicodeDecodeError, csv.Error, IndexError, ValueError):
        failures.append(_("{timeline}: cannot tell whose lines it holds (no contact_id column); delete it").format(
            timeline=timeline))
        return removed, 0
    ours = str(contact_id)
    kept = [rows[0]] + [r for r in rows[1:] if not (len(r) > column and r[column] == ours)]
    if len(kept) == len(rows):
        return removed, 0
    out = io.StringIO(newline="")
    csv.writer(out).writerows(kept)  # the cells were made safe for spreadsheets when written
    files.write_private(timeline, out.getvalue())
    return removed, len(rows) - len(kept)


def source_label(source: str) -> str:
    """Where the contacts came from, as a person reads it ("imported contacts" or a file name)."""
    return _("imported contacts") if source == "imported contacts" else source


def audience(project: "Project", *, limit: int | None = None) -> tuple[list[Contact], str]:
    """Who the mails are shown, simulated and built for: the active imported contacts (the first
    ``limit`` of them), or, while none are imported, the fictional ones in ``contacts/example.csv``;
    and which it is."""
    import itertools

    if project.db_exists:
        with project.db() as conn:
            imported = list(itertools.islice(active_contacts(conn), limit))
        if imported:
            return imported, "imported contacts"
    return example_contacts(project.root), "contacts/example.csv"


def example_contacts(root: Path) -> list[Contact]:
    """The fictional contacts in ``contacts/example.csv``: for build, preview and tests, while no
    contacts are imported (callers look at the imported contacts first)."""
    path = root / "contacts" / "example.csv"
    if not path.exists() and not path.is_symlink():
        raise ContactsError(_("no contacts imported and no contacts/example.csv: import a list with `campaign contacts "
                               "import FILE`"))
    parsed = read_contacts(path, default_basis="example")
    if parsed.problems:
        raise ContactsError(_("{path}: the example list has problems").format(path=path), parsed.problems)
    return [r.contact for r in parsed.rows]
