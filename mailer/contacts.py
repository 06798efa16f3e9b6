"""Contact lists: reading spreadsheets as they really arrive, storing, opting out, erasing.

Contacts are personal data. Nothing here logs an address in full (see :attr:`Contact.masked`);
erasure leaves only a salted one-way hash on the suppression list.
"""

from __future__ import annotations

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

if TYPE_CHECKING:
    from .project import Project
from .errors import ContactsError, InvalidAddress, UnknownContact

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
        raise InvalidAddress(f"{mask(address) if '@' in address else repr(address)} is not a usable address: {exc}") from None
    return checked.ascii_email


def email_key(address: str) -> str:
    """How addresses are compared: the normal form, case-folded (lookups on stored rows)."""
    return address.strip().casefold()


def address_key(address: str) -> str:
    """Validate and normalise what a person typed, then give its comparison key."""
    return email_key(normalise_address(address))


def mask(address: str) -> str:
    local, _, domain = address.partition("@")
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


def _decode(raw: bytes, path: Path) -> tuple[str, str]:
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw[3:].decode("utf-8"), "utf-8 (BOM)"
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    # Dutch Excel saves "CSV (puntkomma)" in Windows-1252; five bytes are undefined there.
    try:
        return raw.decode("cp1252"), "windows-1252"
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ContactsError(f"{path}:{line}: neither UTF-8 nor Windows-1252 text") from None


def _delimiter(header: str) -> str:
    counts = {d: header.count(d) for d in (";", ",", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _column_key(header: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", header.strip().lower()).strip("_")


def read_contacts(path: Path, *, default_basis: str) -> ParsedFile:
    """Read and check a contact file without storing anything. Problems are collected, not raised."""
    from email_validator import EmailNotValidError, validate_email

    from .headers import CONTACT_EXTRA_MAX, CONTACT_VALUE_MAX, length_problem, value_problem

    # The address has its own limit (email-validator's, 254); the others are ours.
    limits = {"email": 254, "basis": CONTACT_VALUE_MAX, **dict.fromkeys(STANDARD[1:], CONTACT_VALUE_MAX)}
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ContactsError(f"{path}: cannot read: {exc.strerror}") from None
    text, encoding = _decode(raw, path)
    if not text.strip():
        raise ContactsError(f"{path}: the file is empty")
    first_line = text.splitlines()[0]
    delimiter = _delimiter(first_line)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next(reader)
    except csv.Error as exc:
        raise ContactsError(f"{path}:1: header: {exc}") from None
    columns: list[str] = []
    seen: dict[str, str] = {}
    problems: list[str] = []
    for raw_name in header:
        name = raw_name.strip()
        key = ALIASES.get(name.lower()) or _column_key(name)
        if not key:
            problems.append(f"{path}:1: column {len(columns) + 1}: has no name")
        elif key in seen:
            problems.append(f"{path}:1: column '{name}': means the same as column '{seen[key]}'")
        seen[key] = name
        columns.append(key)
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        found = ", ".join(repr(h.strip()) for h in header)
        raise ContactsError(
            f"{path}:1: missing required column{'s' if len(missing) > 1 else ''} "
            + ", ".join(f"'{c}'" for c in missing)
            + f" (found {found}; e-mail may be called email, e-mail or e-mailadres)"
        )
    if problems:
        raise ContactsError(f"{path}: the header is not usable", problems)
    label = {key: seen[key] for key in columns}
    extra_columns = tuple(c for c in columns if c not in STANDARD)

    rows: list[ParsedRow] = []
    first_seen: dict[str, int] = {}
    line = 2  # the line on which the next record starts
    while True:
        start = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append(f"{path}:{start}: {exc}")
            break
        line = start
        if not any(v.strip() for v in record):
            continue
        if len(record) != len(columns):
            problems.append(f"{path}:{line}: has {len(record)} fields, the header has {len(columns)}")
            continue
        values = {key: value.strip() for key, value in zip(columns, record)}
        row_problems = []
        for key, value in values.items():
            # The values reach headers (To, a personalised Subject): one rule for every source.
            problem = value_problem(value) or length_problem(value, limits.get(key, CONTACT_EXTRA_MAX))
            if problem:
                row_problems.append(f"{path}:{line}: column '{label[key]}': {problem}")
        for key in REQUIRED:
            if not values.get(key):
                row_problems.append(f"{path}:{line}: column '{label[key]}': is empty")
        address = values.get("email", "")
        if address and not any(f"column '{label['email']}'" in p for p in row_problems):
            try:
                # The same normal form as normalise_address (inlined: 50,000 rows call it).
                address = validate_email(address, check_deliverability=False, allow_smtputf8=False).ascii_email
            except EmailNotValidError as exc:
                row_problems.append(f"{path}:{line}: column '{label['email']}': {address!r} is not a valid address ({exc})")
            else:
                k = email_key(address)
                if k in first_seen:
                    row_problems.append(f"{path}:{line}: column '{label['email']}': repeats the address of line {first_seen[k]}")
                else:
                    first_seen[k] = line
        if row_problems:
            problems.extend(row_problems)
            continue
        rows.append(ParsedRow(line=line, contact=Contact(
            email=address,
            name=values.get("name", ""),
            party=values["party"],
            municipality=values["municipality"],
            role=values.get("role", ""),
            basis=values.get("basis") or default_basis,
            extra=tuple((c, values[c]) for c in extra_columns),
        )))
    if not rows and not problems:
        raise ContactsError(f"{path}: no contacts below the header")
    return ParsedFile(path=path, rows=tuple(rows), problems=tuple(problems), encoding=encoding,
                      delimiter=delimiter)


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


def suppression_hash(conn: sqlite3.Connection, address: str) -> str:
    return hashlib.sha256((store.salt(conn) + email_key(address)).encode()).hexdigest()


def import_contacts(
    conn: sqlite3.Connection,
    path: Path,
    *,
    default_basis: str,
    dry_run: bool = False,
    skip_invalid: bool = False,
    now: dt.datetime | None = None,
) -> ImportResult:
    """Import a contact file: all or nothing unless ``skip_invalid``; nothing stored on ``dry_run``.

    Raises :class:`ContactsError` listing every problem when the file has any and
    ``skip_invalid`` is off; in that case nothing is stored.
    """
    parsed = read_contacts(path, default_basis=default_basis)
    if parsed.problems and not skip_invalid:
        n = len(parsed.problems)
        raise ContactsError(f"{path}: {n} problem{'s' if n > 1 else ''}; nothing was imported "
                            "(fix the file, or use --skip-invalid to import the valid rows)", parsed.problems)
    moment = store.iso(now or store.now_utc())
    source = path.name
    added = updated = unchanged = kept = suppressed = 0
    salt_value = store.salt(conn)
    with store.transaction(conn):
        existing = {
            row["email_key"]: row
            for row in conn.execute("SELECT id, email_key, email, name, party, municipality, role, extra, basis, status FROM contacts")
        }
        blocked = {row[0] for row in conn.execute("SELECT hash FROM suppressions")}
        for row in parsed.rows:
            c = row.contact
            key = c.key
            if hashlib.sha256((salt_value + key).encode()).hexdigest() in blocked:
                suppressed += 1
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
    )


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
        raise UnknownContact(f"no contact {mask(address)}")
    return _row_to_contact(row)


def show_contact(conn: sqlite3.Connection, address: str) -> dict:
    """Every stored field of one contact, where it came from, and what it was sent."""
    row = conn.execute("SELECT * FROM contacts WHERE email_key = ?", (email_key(address),)).fetchone()
    if row is None:
        raise UnknownContact(f"no contact {mask(address)}")
    info = {k: row[k] for k in row.keys() if k not in ("id", "email_key")}
    info["extra"] = json.loads(row["extra"])
    info["sends"] = [
        dict(r) for r in conn.execute(
            "SELECT campaign, mail, state, attempts, resent, sent_at, updated_at, error FROM ledger"
            " WHERE contact_id = ? ORDER BY campaign, mail", (row["id"],))
    ]
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
            conn.execute("UPDATE contacts SET status=?, status_at=?, status_reason=? WHERE id=?",
                         (status, moment, reason, row["id"]))
            conn.execute("UPDATE ledger SET state='suppressed', updated_at=? WHERE contact_id=? AND state='pending'",
                         (moment, row["id"]))
            changed += 1
    return changed, unknown


def read_address_list(path: Path) -> list[str]:
    """Addresses from a file: one per line, or the e-mail column of a CSV file."""
    text, _ = _decode(path.read_bytes(), path)
    found = re.findall(r"[^\s,;<>\"']+@[^\s,;<>\"']+", text)
    return [a.strip(".") for a in found]


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
        if conn.execute("SELECT 1 FROM suppressions WHERE hash = ?", (hashed,)).fetchone() is not None:
            return ForgetResult(address=masked, imported=False, already=True, files_removed=0, lines_removed=0)
        if not not_imported:
            raise UnknownContact(
                f"no contact {masked}; nothing was erased. Check the address with `campaign contacts list`, or, "
                "if this person was never imported and asks to be kept out, run it again with --not-imported.")
        with store.transaction(conn):
            conn.execute("INSERT OR REPLACE INTO suppressions (hash, reason, created_at) VALUES (?, ?, ?)",
                         (hashed, "erasure requested before import", moment))
        return ForgetResult(address=masked, imported=False, already=False, files_removed=0, lines_removed=0)
    if not_imported:
        raise ContactsError(f"{masked} is an imported contact; run it again without --not-imported to erase it "
                            "and every file written for it.")
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
        raise ContactsError(f"{masked}: {len(failures)} file(s) could not be erased; the contact is kept, so that "
                            "running forget again after fixing this finds the rest (its pending sends are "
                            "suppressed)", failures)
    with store.transaction(conn):
        conn.execute("DELETE FROM ledger WHERE contact_id = ?", (contact_id,))
        conn.execute("DELETE FROM written WHERE contact_id = ? AND kind = 'file'", (contact_id,))
        conn.executemany("DELETE FROM written WHERE path = ?", [(p,) for p in gone])
        conn.execute("DELETE FROM contacts WHERE id = ?", (contact_id,))
        conn.execute("INSERT OR REPLACE INTO suppressions (hash, reason, created_at) VALUES (?, 'erased on request', ?)",
                     (hashed, moment))
    store.scrub(conn)
    # A message the worker had in flight before the rows were suppressed lands only now.
    for path in outbox_files:
        removed += _remove(path, failures)
    return ForgetResult(address=masked, imported=True, already=False, files_removed=removed, lines_removed=lines)


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
            failures.append(f"{candidate}: {exc.strerror}")
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
        failures.append(f"{timeline}: cannot tell whose lines it holds (no contact_id column); delete it")
        return removed, 0
    ours = str(contact_id)
    kept = [rows[0]] + [r for r in rows[1:] if not (len(r) > column and r[column] == ours)]
    if len(kept) == len(rows):
        return removed, 0
    out = io.StringIO(newline="")
    csv.writer(out).writerows(kept)  # the cells were made safe for spreadsheets when written
    files.write_private(timeline, out.getvalue())
    return removed, len(rows) - len(kept)


def audience(project: "Project") -> tuple[list[Contact], str]:
    """Who the mails are shown, simulated and built for: the active imported contacts, or,
    while none are imported, the fictional ones in ``contacts/example.csv``; and which it is."""
    if project.db_exists:
        with project.db() as conn:
            imported = list(active_contacts(conn))
        if imported:
            return imported, "imported contacts"
    return example_contacts(project.root), "contacts/example.csv"


def example_contacts(root: Path) -> list[Contact]:
    """The fictional contacts in ``contacts/example.csv``: for build, preview and tests."""
    path = root / "contacts" / "example.csv"
    parsed = read_contacts(path, default_basis="example")
    if parsed.problems:
        raise ContactsError(f"{path}: the example list has problems", parsed.problems)
    return [r.contact for r in parsed.rows]
