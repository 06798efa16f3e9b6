"""The ``campaign`` command: a thin click layer over the :mod:`mailer` engine.

Each command parses its options, calls one engine function, prints the result and turns
engine errors into click errors (exit 1; usage errors exit 2). Engine modules are imported
inside the commands so that ``campaign --help`` answers at once.
"""

from __future__ import annotations

import datetime as dt
import errno
import functools
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import click

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class State:
    """What the group's options decided, handed to every command."""

    def __init__(self, root: Path | None, campaign: str) -> None:
        self.root = root
        self.campaign = campaign

    def project(self, campaign: str | None = None):
        from mailer.project import Project

        return Project.at(self.root, campaign=campaign or self.campaign)


def engine_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the engine's errors into ``Error: ...`` and exit code 1.

    A locked or unwritable state database and a failing disk are caught here too, as a last
    line of defence: each transaction rolls back on its own, so the ledger stays as it was.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import sqlite3

        from mailer.errors import CampaignError

        try:
            return fn(*args, **kwargs)
        except CampaignError as exc:
            raise click.ClickException(str(exc)) from None
        except sqlite3.DatabaseError as exc:
            raise click.ClickException(_database_problem(exc)) from None
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise  # output piped into `head`: click ends quietly
            raise click.ClickException(_disk_problem(exc)) from None

    return wrapper


def _state_home() -> Path | None:
    """The $CAMPAIGN_HOME the failed command used, for naming it in an error."""
    from mailer.errors import CampaignError

    ctx = click.get_current_context(silent=True)
    state = ctx.find_object(State) if ctx else None
    try:
        return state.project().home if state else None
    except CampaignError:
        return None


def _database_file() -> Path:
    from mailer.store import DB_NAME

    return (_state_home() or Path("$CAMPAIGN_HOME")) / DB_NAME


def _database_problem(exc: Exception) -> str:
    """One sentence for an SQLite error that no engine function could foresee."""
    path = _database_file()
    reason = str(exc)
    if "locked" in reason or "busy" in reason:
        return (f"the state database {path} is locked by another process (a worker or another command); "
                "try again when it has finished")
    if "full" in reason or ("I/O" in reason and _disk_full(path.parent)):
        return (f"could not write the state database {path}: the disk is full; the change was rolled back "
                "and nothing after it was done")
    if "readonly" in reason or "read-only" in reason:
        return (f"could not write the state database {path}: it is read-only ({reason}); the change was "
                "rolled back and nothing after it was done")
    if "unable to open" in reason:
        return f"cannot open the state database {path} ({reason}); $CAMPAIGN_HOME must be a folder you can write"
    if "not a database" in reason or "malformed" in reason:
        return (f"the state database {path} is damaged or not a database ({reason}); restore it from a backup, "
                "or point CAMPAIGN_HOME elsewhere")
    return f"the state database {path} failed: {reason}; nothing after that was done"


def _disk_full(folder: Path) -> bool:
    """SQLite reports a full disk under WAL as a mere 'disk I/O error': look for ourselves."""
    import os

    try:
        return os.statvfs(folder).f_bavail == 0
    except OSError:
        return False


def _disk_problem(exc: OSError) -> str:
    """One sentence for a file that could not be written (disk full, read-only, no permission...)."""
    where = exc.filename if exc.filename is not None else "a file"
    reason = exc.strerror or str(exc)
    if exc.filename is not None and Path(exc.filename) == _state_home():
        return (f"cannot create the state folder {where} ($CAMPAIGN_HOME): {reason}; point CAMPAIGN_HOME at a "
                "folder you can write")
    return f"could not write {where}: {reason}; nothing after that was done"


def _shown(value: str) -> str:
    """A typed value as it can be shown in an error: control characters escaped, long ones cut."""
    text = repr(value)
    return text if len(text) <= 60 else text[:40] + f"...' ({len(value)} characters)"


class CampaignName(click.ParamType):
    """A folder name under campaigns/: no path separators, control characters or '..'."""

    name = "name"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        import re

        if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", value):
            self.fail(f"{_shown(str(value))} is not a campaign folder name (up to 64 letters, digits, "
                      "'.', '-' or '_')", param, ctx)
        return value


class FilePath(click.Path):
    """click.Path that refuses a NUL byte (which os functions reject with a ValueError) and, for a
    file to read, a device: /dev/zero or /dev/urandom would be read until memory runs out."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        import os
        import stat

        if isinstance(value, str) and "\0" in value:
            self.fail(f"{_shown(value)} contains a NUL byte", param, ctx)
        path = super().convert(value, param, ctx)
        if self.exists and not self.dir_okay:
            mode = os.stat(path).st_mode
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                self.fail(f"{_shown(str(value))} is a device, not a file", param, ctx)
        return path


class PlanDate(click.DateTime):
    """A YYYY-MM-DD date in a range the planner can count from without leaving the calendar."""

    FIRST = dt.datetime(2000, 1, 1)
    LAST = dt.datetime(2999, 12, 31)

    def __init__(self) -> None:
        super().__init__(["%Y-%m-%d"])

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        moment = super().convert(value, param, ctx)
        if not self.FIRST <= moment <= self.LAST:
            # isoformat, not %Y: strftime writes the year 1 as '1'.
            self.fail(f"{moment.date().isoformat()} is out of range: give a date from {self.FIRST.date().isoformat()} "
                      f"to {self.LAST.date().isoformat()}", param, ctx)
        return moment


class MailOrAll(click.ParamType):
    """A mail number (1-999) or the word 'all'."""

    name = "N|all"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        if text != "all" and not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAIL_NUMBER.max):
            self.fail(f"{_shown(text)} is not a mail number (1-{MAIL_NUMBER.max}) or 'all'", param, ctx)
        return text


# A mail number: bounded, so that no number too large for SQLite reaches the engine.
MAIL_NUMBER = click.IntRange(1, 999)
RATE = click.IntRange(min=1)


def campaign_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--campaign", "campaign_name", metavar="NAME", type=CampaignName(), default=None,
                        help="Campaign folder under campaigns/ (default: gr2026).")(fn)


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(fn)


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def table(rows: list[list[Any]], headers: list[str]) -> str:
    """A plain text table: columns padded to their widest cell."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


class Progress:
    """A progress bar on stderr that learns its length from the first call: ``progress(done, total)``."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar = None
        self.done = 0  # what the bar shows
        self.latest = 0  # what was reported
        self.drawn = 0.0

    def __call__(self, done: int, total: int, label: str | None = None) -> None:
        if self.bar is None or (label and label != self.label):
            self.close()
            self.label = label or self.label
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr).__enter__()
            self.done = self.latest = 0
        self.latest = done
        # The worker reports every message, a thousand a second: drawing each would cost more
        # than sending it, and no one reads faster than ten frames a second.
        tick = time.monotonic()
        if tick - self.drawn >= 0.1 or done >= total:
            self.bar.update(done - self.done)
            self.done = done
            self.drawn = tick

    def close(self) -> None:
        if self.bar is not None:
            self.bar.update(self.latest - self.done)
            self.bar.__exit__(None, None, None)
            self.bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _notify(project) -> None:
    """A running worker picks changes up at once instead of at its next re-read."""
    from mailer.deliver import notify_worker

    if notify_worker(project.home):
        click.echo("The running worker was told.", err=True)


def warn_sender(problems: tuple[str, ...] | list[str]) -> None:
    if problems:
        click.secho("Sender not configured: the mails show example values. Sending beyond the outbox "
                    "is refused until $CAMPAIGN_HOME/settings.toml holds the real sender.", fg="yellow", err=True)
        for p in problems:
            click.secho(f"  - {p}", fg="yellow", err=True)


@click.group(context_settings=CONTEXT_SETTINGS)
@click.option("--project", "root", type=FilePath(exists=True, file_okay=False, path_type=Path), default=None,
              envvar="CAMPAIGN_PROJECT", help="Project folder with campaigns/ and templates/ (default: current folder).")
@click.option("--campaign", "campaign", metavar="NAME", type=CampaignName(), default="gr2026", show_default=True,
              help="Campaign folder under campaigns/.")
@click.version_option("0.1.0", prog_name="campaign")
@click.pass_context
def cli(ctx: click.Context, root: Path | None, campaign: str) -> None:
    """Turn the Leger des Heils election checklist into a nine-part email series,
    preview it, schedule it and deliver it to contacts at local political parties.

    State (contacts, schedule, ledger, outbox, settings) lives in $CAMPAIGN_HOME
    (default: var/ in the project folder).
    """
    ctx.obj = State(root, campaign)


# --- init and build ---------------------------------------------------------------------------

@cli.command()
@click.option("--force", is_flag=True, help="Overwrite an existing settings file.")
@click.pass_obj
@engine_errors
def init(state: State, force: bool) -> None:
    """Create $CAMPAIGN_HOME with an example settings.toml and the state database."""
    from mailer import settings as settings_mod

    project = state.project()
    path, written = settings_mod.write_settings_template(project.home, force=force)
    project.connect().close()
    if written:
        click.echo(f"Wrote {path} with example values on example.org: replace them before sending for real.")
    else:
        click.echo(f"{path} exists; left as it is (--force overwrites it).")
    click.echo(f"State database: {project.home / 'campaign.sqlite3'}")


@cli.command()
@campaign_option
@click.option("--out", type=FilePath(file_okay=False, path_type=Path), default=None,
              help="Output folder (default: out/<campaign>/).")
@click.option("--contact", metavar="EMAIL", default=None,
              help="Personalise for this contact (default: the first imported, else the first example).")
@json_option
@click.pass_obj
@engine_errors
def build(state: State, campaign_name: str | None, out: Path | None, contact: str | None, as_json: bool) -> None:
    """Render every mail to MJML, HTML, text and .eml files for one contact."""
    from mailer.build import build as build_campaign

    project = state.project(campaign_name)
    out = out or project.root / "out" / project.campaign_name
    result = build_campaign(project, out=out, contact=contact, now=now())
    if as_json:
        echo_json({
            "out": str(result.out), "contact": result.contact, "render_seconds": round(result.render_seconds, 4),
            "sender_configured": not result.sender_problems,
            "mails": [{"number": m.number, "theme": m.theme, "subject": m.subject, "slug": m.slug,
                       "html_bytes": m.html_bytes, "draft": m.draft,
                       "findings": [f.as_dict() for f in m.findings]} for m in result.mails],
        })
    else:
        rows = [[m.number, m.theme[:40], m.subject, f"{m.html_bytes / 1024:.1f}",
                 "; ".join(f"{f.level}: {f.message}" for f in m.findings) or "ok"] for m in result.mails]
        click.echo(table(rows, ["#", "theme", "subject", "HTML KB", "problems"]))
        drafts = [str(m.number) for m in result.mails if m.draft]
        if drafts:
            click.echo(f"\nDraft (draft = true): mail {', '.join(drafts)}; `campaign schedule` refuses until each "
                       "is edited and the line deleted.")
        click.echo(f"\nWrote {len(result.mails) * 4} files to {result.out} for {result.contact} "
                   f"(from {result.contact_source}); rendering took {result.render_seconds * 1000:.0f} ms.")
    warn_sender(result.sender_problems)
    if any(f.level == "error" for m in result.mails for f in m.findings):
        raise click.ClickException("some mails have errors (see the table)")


# --- contacts ---------------------------------------------------------------------------------

@cli.group()
def contacts() -> None:
    """Import, list and look up contacts; record opt-outs; erase on request."""


@contacts.command("import")
@click.argument("file", type=FilePath(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Show what would change; store nothing.")
@click.option("--skip-invalid", is_flag=True, help="Store the valid rows and list the refused ones.")
@click.option("--sheet", metavar="NAME", default=None, help="The sheet of an Excel workbook to read (default: the first).")
@click.pass_obj
@engine_errors
def contacts_import(state: State, file: Path, dry_run: bool, skip_invalid: bool, sheet: str | None) -> None:
    """Import a contact list: CSV or text (comma, semicolon or tab; UTF-8, Windows-1252 or
    UTF-16) or an Excel workbook (.xlsx).

    All or nothing: if any row is wrong, nothing is stored and every problem is listed,
    unless --skip-invalid is given. Re-importing updates contacts by address; opt-outs stay.
    """
    from mailer.contacts import import_contacts

    project = state.project()
    settings = project.load_campaign().settings
    with project.db() as conn:
        result = import_contacts(conn, file, default_basis=settings.default_basis, dry_run=dry_run,
                                 skip_invalid=skip_invalid, sheet=sheet)
    verb = "Would import" if dry_run else "Imported"
    read_as = f"{result.encoding}, delimiter {result.delimiter!r}" if result.delimiter else result.encoding
    click.echo(f"{verb} {file} ({read_as}): "
               f"{result.added} added, {result.updated} updated, {result.unchanged} unchanged, "
               f"{result.kept_status} kept as opted out or bounced, {result.opted_out} refused as opted out, "
               f"{result.suppressed} refused as erased, {len(result.refused)} invalid.")
    if result.empty == 1:
        click.echo("1 empty row skipped (no value in any column).")
    elif result.empty:
        click.echo(f"{result.empty} empty rows skipped (no value in any column).")
    if result.name_from:
        click.echo(f"Name made from the columns {', '.join(result.name_from)}.")
    if result.extras:
        click.echo(f"Kept as extra fields (contact.extra.NAME in templates): {', '.join(result.extras)}.")
    for problem in result.refused:
        click.secho(f"  refused: {problem}", fg="yellow", err=True)
    for problem in result.withheld:
        click.secho(f"  refused: {problem}", fg="yellow", err=True)
    if dry_run:
        click.echo("Dry run: nothing was stored. Run again without --dry-run to import.")
    else:
        _notify(project)


@contacts.command("list")
@click.option("--status", type=click.Choice(["active", "unsubscribed", "bounced", "removed"]), default=None,
              help="Only contacts with this status.")
@json_option
@click.pass_obj
@engine_errors
def contacts_list(state: State, status: str | None, as_json: bool) -> None:
    """List contacts as a table, or as JSON."""
    from mailer.contacts import list_contacts

    with state.project().db() as conn:
        rows = list_contacts(conn, status=status)
    if as_json:
        echo_json(rows)
        return
    click.echo(table([[r["email"], r["name"], r["party"], r["municipality"], r["status"]] for r in rows],
                     ["email", "name", "party", "municipality", "status"]))
    click.echo(f"\n{len(rows)} contact{'s' if len(rows) != 1 else ''}.")


@contacts.command("show")
@click.argument("email")
@json_option
@click.pass_obj
@engine_errors
def contacts_show(state: State, email: str, as_json: bool) -> None:
    """Every field of one contact, its origin and basis, and what it was sent."""
    from mailer.contacts import show_contact

    with state.project().db() as conn:
        info = show_contact(conn, email)
    if as_json:
        echo_json(info)
        return
    sends = info.pop("sends")
    extra = info.pop("extra")
    came_back = info.pop("came_back")
    width = max(len(k) for k in list(info) + list(extra))
    for key, value in info.items():
        click.echo(f"{key.ljust(width)}  {value if value not in (None, '') else '-'}")
    for key, value in extra.items():
        click.echo(f"{key.ljust(width)}  {value}  (extra column)")
    click.echo("")
    if sends:
        shown = {"outbox": "written to the outbox (not delivered)"}
        click.echo(table([[s["campaign"], s["mail"], shown.get(s["state"], s["state"]), s["sent_at"] or "", s["error"]]
                          for s in sends], ["campaign", "mail", "state", "sent/written at", "error"]))
    else:
        click.echo("Nothing sent to this contact yet.")
    if came_back:
        click.echo("\nCame back by mail (campaign inbox):")
        click.echo(table([[e["received_at"], e["kind"], e["campaign"] or "", e["mail"] or "", e["status"],
                           e["effect"] or "-", e["subject"]] for e in came_back],
                         ["received", "kind", "campaign", "mail", "status", "changed", "subject"]))


def _addresses(emails: tuple[str, ...], from_file: Path | None) -> list[str]:
    from mailer.contacts import read_address_list

    found = list(emails)
    if from_file:
        found += read_address_list(from_file)
    if not found:
        raise click.UsageError("name at least one address, or --from FILE")
    return found


REASON_MAX = 200


def _opt_out_reason(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A reason is stored and shown on one line: no control characters, at most REASON_MAX characters."""
    import unicodedata

    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise click.BadParameter(f"{_shown(value)} holds a control character (a new line, tab or escape code); "
                                 "write the reason on one line of plain text")
    if len(value) > REASON_MAX:
        raise click.BadParameter(f"is {len(value)} characters long; write a reason of at most {REASON_MAX}")
    return value


@contacts.command("unsubscribe")
@click.argument("emails", nargs=-1)
@click.option("--from", "from_file", type=FilePath(exists=True, dir_okay=False, path_type=Path),
              help="A file of addresses (one per line, or a CSV with an e-mail column).")
@click.option("--reason", default="opt-out", show_default=True, callback=_opt_out_reason,
              help=f"Why: shown with the opt-out (one line, at most {REASON_MAX} characters).")
@click.pass_obj
@engine_errors
def contacts_unsubscribe(state: State, emails: tuple[str, ...], from_file: Path | None, reason: str) -> None:
    """Record opt-outs: no later mail goes to these addresses.

    An address that is not a contact (yet) is kept as a one-way hash, and every later
    import refuses it.
    """
    from mailer.contacts import unsubscribe

    addresses = _addresses(emails, from_file)
    project = state.project()
    with project.db() as conn:
        result = unsubscribe(conn, addresses, reason=reason)
    n, m, k = result.unsubscribed, len(result.recorded), result.already
    click.echo(f"Unsubscribed {n} contact{'s' if n != 1 else ''}.")
    if m == 1:
        click.echo("Recorded 1 opt-out for an address that is not a contact; a later import refuses it.")
    elif m:
        click.echo(f"Recorded {m} opt-outs for addresses that are not contacts; a later import refuses them.")
    for masked in result.recorded:
        click.secho(f"  not a contact: {masked}", fg="yellow", err=True)
    if k:
        click.echo(f"{k} of the addresses had opted out already; nothing changed for them.")
    if n:
        _notify(project)


@contacts.command("reactivate")
@click.argument("email")
@click.pass_obj
@engine_errors
def contacts_reactivate(state: State, email: str) -> None:
    """Make a bounced or removed contact active again (recorded with who and when).

    Its sends that the bounce held back go out again while their mail is still being sent.
    An opt-out or an erasure is never undone.
    """
    from mailer.contacts import current_user, reactivate

    project = state.project()
    with project.db() as conn:
        done = reactivate(conn, email, by=current_user(), now=now())
    n = done.restored
    click.echo(f"Reactivated {done.masked} (was {done.was}), recorded as done by {done.by} at {done.at}; "
               f"{n} unsent mail{'s' if n != 1 else ''} put back in the queue.")
    _notify(project)


@contacts.command("remove")
@click.argument("emails", nargs=-1, required=True)
@click.pass_obj
@engine_errors
def contacts_remove(state: State, emails: tuple[str, ...]) -> None:
    """Deactivate contacts (staff decision; a later import of the address reactivates it)."""
    from mailer.contacts import mask, remove_contacts

    with state.project().db() as conn:
        changed, unknown = remove_contacts(conn, emails)
    click.echo(f"Removed {changed} contact{'s' if changed != 1 else ''}.")
    for address in unknown:
        click.secho(f"  not a contact: {mask(address)}", fg="yellow", err=True)
    if unknown:
        raise click.ClickException(f"{len(unknown)} address(es) not found")


@contacts.command("forget")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--not-imported", is_flag=True,
              help="The address was never imported: only record the request, so that an import refuses it.")
@click.pass_obj
@engine_errors
def contacts_forget(state: State, email: str, yes: bool, not_imported: bool) -> None:
    """Erase a person on request: every file written for them, contact and send records; a hash stops re-import.

    The address must be an imported contact, written as on import; anything else is an error
    and nothing is erased (--not-imported records a request for an address never imported).
    """
    from mailer.contacts import forget_contact, mask, normalise_address

    address = normalise_address(email)
    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError("erasure cannot be undone: confirm on a terminal or pass --yes")
        click.confirm(f"Erase every trace of {mask(address)}? This cannot be undone", abort=True)
    project = state.project()
    with project.db() as conn:
        result = forget_contact(conn, address, outbox=project.outbox, not_imported=not_imported)
    if result.already:
        click.echo(f"{result.address} was erased earlier; nothing about it is stored.")
    elif not result.imported:
        click.echo(f"Recorded the erasure request for {result.address}, which was never imported: nothing else was "
                   "stored about it, and a one-way hash keeps the address from being imported.")
    else:
        click.echo(f"Erased {result.address}: contact and send records deleted, {result.files_removed} file(s) "
                   f"removed, {result.lines_removed} timeline line(s) dropped; a one-way hash keeps the address "
                   "from being imported again.")


# --- what comes back by mail ------------------------------------------------------------------

@cli.command()
@click.option("--from", "source", type=FilePath(exists=True, path_type=Path), default=None, metavar="PATH",
              help="Read a Maildir, an mbox file or a folder of .eml files instead of CAMPAIGN_IMAP_URL.")
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing and flag nothing.")
@json_option
@click.pass_obj
@engine_errors
def inbox(state: State, source: Path | None, dry_run: bool, as_json: bool) -> None:
    """Read bounces, opt-outs, abuse reports, auto-replies and replies from the mailbox, and act on them.

    Hard bounces make a contact bounced, opt-outs and abuse reports unsubscribe it, auto-replies
    change nothing, replies are listed for staff. Reading a message twice changes nothing.
    """
    from mailer.inbox import read_inbox

    report = read_inbox(state.project(), source=source, dry_run=dry_run, now=now())
    if as_json:
        echo_json([o.as_dict() for o in report.outcomes])
    else:
        if report.outcomes:
            click.echo(table([[o.ref[-40:], o.kind, o.contact or "-", o.party, o.municipality,
                               f"{o.campaign}/{o.mail}" if o.mail else "",
                               f"{o.action} ({o.note})" if o.note else o.action, o.subject[:40]]
                              for o in report.outcomes],
                             ["message", "kind", "contact", "party", "municipality", "mail", "action", "subject"]))
            click.echo("")
        counts = report.counts()
        summary = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n) or "no messages"
        click.echo(f"Read {len(report.outcomes)} message(s) from {report.source}: {summary}.")
        if dry_run:
            click.echo("Dry run: nothing was changed and no message was flagged; run it without --dry-run to apply.")
        if counts["reply"]:
            click.echo(f"Replies from people that wait for an answer: {counts['reply']}; read them in the mailbox "
                       "(they stay unread there).")
    if report.mark_error:
        click.secho(f"Warning: the messages were handled, but flagging them in the mailbox failed "
                    f"({report.mark_error}); the next run recognises them and changes nothing.", fg="yellow", err=True)


# --- plan and schedule ------------------------------------------------------------------------

def plan_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--election-date", type=PlanDate(), default=None,
                      help="A safeguard: refuse unless this is the campaign's election day (election_day in its "
                           "campaign.toml). Another election needs its own campaign: `campaign new NAME "
                           "--from-campaign CAMPAIGN --election-day DATE`.")(fn)
    fn = click.option("--start", type=PlanDate(), default=None,
                      help="Send mail 1 on this date and the rest at the cadence (default: count back from election day).")(fn)
    return campaign_option(fn)


def _date(value: dt.datetime | None) -> dt.date | None:
    return value.date() if value else None


def _local(moment: dt.datetime, tz: str) -> dt.datetime:
    from zoneinfo import ZoneInfo

    return moment.astimezone(ZoneInfo(tz))


def print_plan(report, tz: str) -> None:
    from mailer.render import dutch_date

    by_mail = {e.mail: e for e in report.estimates}
    rows = []
    for s in report.plan.sends:
        e = by_mail[s.mail]
        local = _local(s.at, tz)
        rows.append([s.mail, s.theme[:40], dutch_date(local), local.strftime("%H:%M"),
                     (f"{e.minutes:.0f} min" if e.minutes >= 1 else "<1 min") if report.contacts else "-", s.moved_because or ""])
    click.echo(table(rows, ["#", "theme", "date", "time", "sending", "moved because"]))
    cap = getattr(report, "max_per_day", None)
    limits = f"{report.rate_per_minute}/min" + (f", at most {cap:,} a day" if cap else "")
    click.echo(f"\nElection day: {dutch_date(report.plan.election_day)}. Times in {tz}. "
               f"{report.contacts} active contact(s) at {limits}.")
    for e in report.estimates:
        if e.after_election:
            click.secho(f"Warning: mail {e.mail} would not reach every contact before election day: at {limits} "
                        f"its {e.contacts:,} messages take until about {_local(e.finishes, tz):%Y-%m-%d %H:%M}; "
                        "raise [delivery] max_per_day if your provider allows it, send to fewer contacts, or plan "
                        "with an earlier --start.", fg="red", err=True)
        elif e.overlaps_next:
            click.secho(f"Warning: mail {e.mail} is still being sent when the next mail is due: at {limits} its "
                        f"{e.contacts:,} messages take until about {_local(e.finishes, tz):%Y-%m-%d %H:%M}; the "
                        "series no longer fits its cadence.", fg="yellow", err=True)
        elif e.days > 1 and cap and e.contacts > cap:
            click.secho(f"Mail {e.mail} goes out over {e.days} days: {e.contacts:,} contacts at most {cap:,} a day "
                        f"(until about {_local(e.finishes, tz):%Y-%m-%d %H:%M}).", fg="yellow", err=True)
        elif not e.fits_window:
            click.secho(f"Warning: mail {e.mail} takes {e.minutes / 60:.1f} h at {report.rate_per_minute}/min and "
                        f"does not fit in one day's window; sending continues in the next window "
                        f"(until about {_local(e.finishes, tz):%Y-%m-%d %H:%M}).", fg="yellow", err=True)


@cli.command()
@plan_options
@click.option("--ics", type=FilePath(dir_okay=False, path_type=Path), default=None,
              help="Also write the plan as an iCalendar file.")
@click.pass_obj
@engine_errors
def plan(state: State, campaign_name: str | None, start: dt.datetime | None, election_date: dt.datetime | None,
         ics: Path | None) -> None:
    """Show the nine send moments that the campaign's policy gives."""
    from mailer.plan import to_ics
    from mailer.service import plan_campaign

    project = state.project(campaign_name)
    report = plan_campaign(project, now=now(), start=_date(start), election_date=_date(election_date))
    settings = project.load_campaign().settings
    print_plan(report, settings.schedule.timezone)
    if ics:
        from mailer import files

        if ics.is_symlink():
            raise click.ClickException(f"--ics {ics} is a symbolic link, and the calendar is not written through "
                                       "one; name the file itself (a new file, or one you want replaced)")
        try:
            # Owner-only, like every file the tool writes; an existing file is tightened too.
            files.write_private(ics, to_ics(report.plan, name=settings.name, estimates=report.estimates, now=now()),
                                atomic=False)
        except OSError as exc:
            raise click.ClickException(f"could not write {ics}: {exc.strerror}; the plan was shown above, "
                                       "but no complete calendar file was written") from None
        click.echo(f"Wrote {ics}.")


@cli.command()
@plan_options
@click.option("--yes", is_flag=True, help="Store the plan (or switch its transport) without asking.")
@click.option("--switch-transport", is_flag=True,
              help="Keep the stored plan, its moments and reschedules, but send it through the transport of "
                   "this environment: CAMPAIGN_SMTP_URL, or the outbox when it is not set. Refused once "
                   "anything went out through a real transport; from the outbox, what was only written there "
                   "is then sent for real.")
@click.pass_obj
@engine_errors
def schedule(state: State, campaign_name: str | None, start: dt.datetime | None, election_date: dt.datetime | None,
             yes: bool, switch_transport: bool) -> None:
    """Store the plan: from then on the worker sends each mail when it is due.

    The transport is stored with the plan: CAMPAIGN_SMTP_URL when it is set, else the outbox
    (nothing leaves this machine). `campaign schedule --switch-transport` changes it while
    nothing has gone out through a real transport.
    """
    from mailer.service import kept_as_sent, plan_campaign, schedule_campaign, stored_plan_exists
    from mailer.transport import transport_config

    project = state.project(campaign_name)
    if switch_transport:
        if start or election_date:
            raise click.UsageError("--switch-transport changes only where the stored plan's mail goes; "
                                   "it takes no --start or --election-date")
        _switch_transport(project, yes=yes)
        return
    config = transport_config()
    if stored_plan_exists(project):
        from mailer.schedule import get_plan, transport_mismatch
        with project.db() as conn:
            stored = get_plan(conn, project.campaign_name)
        settings = project.load_campaign().settings
        asked = {"start": _date(start).isoformat() if start else None,
                 "election_date": _date(election_date).isoformat() if election_date else None,
                 "election_day": (_date(election_date) or settings.election_day).isoformat()}
        if stored.options == asked:
            mismatch = transport_mismatch(stored.transport, config.label)
            if mismatch:
                raise click.ClickException(mismatch)
            click.echo("This plan is already stored:\n")
            _print_status(project, as_json=False)
            return
    report = plan_campaign(project, now=now(), start=_date(start), election_date=_date(election_date))
    print_plan(report, project.load_campaign().settings.schedule.timezone)
    kept = kept_as_sent(project)
    if config.kind == "outbox" and len(kept) == 1:
        # Kept whether they were sent or only written to the outbox: the outbox gets no second copy.
        click.echo(f"Mail {kept[0]} was sent or written to the outbox completely before; it is not sent or "
                   "written again.")
    elif config.kind == "outbox" and kept:
        click.echo(f"Mails {', '.join(map(str, kept))} were sent or written to the outbox completely before; they "
                   "are not sent or written again.")
    elif len(kept) == 1:
        click.echo(f"Mail {kept[0]} was sent completely before; it stays sent and is not sent again.")
    elif kept:
        click.echo(f"Mails {', '.join(map(str, kept))} were sent completely before; they stay sent and are not "
                   "sent again.")
    click.echo(_where_mail_goes(project, config))
    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError("scheduling sends mail to real contacts: confirm on a terminal or pass --yes")
        click.confirm("\nStore this plan?", abort=True)
    created = schedule_campaign(project, report, now=now())
    _notify(project)
    if not created:
        click.echo("This plan was already stored.")
    elif config.kind == "outbox":
        click.echo(f"Stored. The worker writes each mail to the outbox ({project.outbox}) when it is due: nothing "
                   "leaves this machine. Run `campaign worker` (or its cron line); to send for real later, set "
                   "CAMPAIGN_SMTP_URL and run `campaign schedule --switch-transport`.")
    else:
        click.echo(f"Stored. The worker sends each mail through {config.label} when it is due: run "
                   "`campaign worker` (or its cron line) with the same CAMPAIGN_SMTP_URL.")


def _where_mail_goes(project, config) -> str:
    if config.kind == "outbox":
        return (f"Mail goes to the outbox ({project.outbox}): nothing leaves this machine. To send for real, "
                "set CAMPAIGN_SMTP_URL (and CAMPAIGN_SMTP_PASSWORD) first.")
    return f"Mail goes out through {config.label} to the contacts, each mail when it is due."


def _switch_transport(project, *, yes: bool) -> None:
    from mailer.service import switch_to_current_transport

    planned = switch_to_current_transport(project, now=now(), check_only=True)
    new = planned.new
    if not planned.changed:
        where = "the outbox" if new.kind == "outbox" else new.label
        click.echo(f"The plan is already stored for {where}; nothing to switch.")
        return
    click.echo(_where_mail_goes(project, new))
    if planned.requeued:
        click.echo(f"{planned.requeued} message(s) were only written to the outbox and reached no one; after the "
                   f"switch they are sent through {new.label}.")
    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError("switching the transport changes where mail to real contacts goes: "
                                   "confirm on a terminal or pass --yes")
        click.confirm(f"\nSwitch the stored plan of {project.campaign_name} to this transport?", abort=True)
    done = switch_to_current_transport(project, now=now())
    if done.old == "outbox":
        click.echo(f"Switched the stored plan from the outbox to {new.label}: a worker with this "
                   "CAMPAIGN_SMTP_URL sends each mail when it is due; the moments and reschedules stay as they were.")
        _print_requeued(project, done)
    elif new.kind == "outbox":
        click.echo(f"Switched the stored plan from {done.old} to the outbox: nothing leaves this machine; "
                   "start the worker without CAMPAIGN_SMTP_URL. The moments and reschedules stay as they were.")
    else:
        click.echo(f"Switched the stored plan from {done.old} to {new.label}: a worker with this "
                   "CAMPAIGN_SMTP_URL sends each mail when it is due; the moments and reschedules stay as they were.")
    _notify(project)


def _print_requeued(project, done) -> None:
    """What a switch from the outbox put back in the queue, and when each mail done there goes out."""
    if done.requeued:
        click.echo(f"{done.requeued} message(s) that were only written to the outbox (they reached no one) are back "
                   f"in the queue and are sent through {done.new.label}.")
    tz = project.load_campaign().settings.schedule.timezone
    for mail in done.replanned:
        if mail.passed:
            click.echo(f"Mail {mail.number} had gone only to the outbox and its planned moment has passed: it goes out "
                       "now, within the send window (never on or after election day), as soon as a worker with "
                       "this CAMPAIGN_SMTP_URL runs.")
        else:
            click.echo(f"Mail {mail.number} had gone only to the outbox: it goes out at its planned moment, "
                       f"{_local(mail.due_at, tz):%Y-%m-%d %H:%M} ({tz}).")


@cli.command()
@campaign_option
@click.option("--mail", "mail", type=MAIL_NUMBER, required=True, help="The mail to move (1-9).")
@click.option("--at", "at", required=True, metavar="WHEN",
              help="An ISO date-time (e.g. 2027-02-03T10:00, campaign time zone) or 'now'.")
@click.pass_obj
@engine_errors
def reschedule(state: State, campaign_name: str | None, mail: int, at: str) -> None:
    """Move one mail to another moment (outside the send window is allowed)."""
    from mailer import schedule as sched

    project = state.project(campaign_name)
    tz = project.load_campaign().settings.schedule.timezone
    moment = sched.parse_when(at, timezone=tz, now=now())
    with project.db() as conn:
        when = sched.reschedule(conn, project.campaign_name, mail, moment, now=now())
    click.echo(f"Mail {mail} now goes out at {_local(when, tz):%Y-%m-%d %H:%M} ({tz}).")
    _notify(project)


def _simple_state_command(name: str, doc: str, action: Callable[..., str]) -> None:
    @cli.command(name=name, help=doc)
    @campaign_option
    @click.pass_obj
    @engine_errors
    def command(state: State, campaign_name: str | None) -> None:
        project = state.project(campaign_name)
        with project.db() as conn:
            click.echo(action(conn, project.campaign_name))
        _notify(project)


def _pause(conn, campaign: str) -> str:
    from mailer.schedule import set_paused

    set_paused(conn, campaign, True)
    return "Paused: a running worker stops between two messages, within seconds."


def _resume(conn, campaign: str) -> str:
    from mailer.schedule import set_paused

    set_paused(conn, campaign, False)
    return "Resumed: a running worker picks up within a minute."


_simple_state_command("pause", "Stop sending (between two messages) until `resume`.", _pause)
_simple_state_command("resume", "Continue sending after `pause`.", _resume)


@cli.command()
@campaign_option
@click.option("--mail", "mail", type=MAIL_NUMBER, default=None, help="Cancel only this mail (default: the whole campaign).")
@click.pass_obj
@engine_errors
def cancel(state: State, campaign_name: str | None, mail: int | None) -> None:
    """Call off the whole campaign, or one mail: nothing more of it is sent."""
    from mailer.schedule import cancel as cancel_sends

    project = state.project(campaign_name)
    with project.db() as conn:
        n = cancel_sends(conn, project.campaign_name, mail=mail, now=now())
    what = f"Mail {mail}" if mail else f"Campaign {project.campaign_name}"
    click.echo(f"{what} cancelled; {n} pending send(s) called off. Sent mails stay recorded.")


@cli.command()
@campaign_option
@click.option("--mail", "mail", type=MAIL_NUMBER, required=True, help="The mail whose failed and unknown sends to retry.")
@click.pass_obj
@engine_errors
def retry(state: State, campaign_name: str | None, mail: int) -> None:
    """Put failed and unknown sends of a mail back in the queue."""
    from mailer.schedule import retry as retry_sends

    project = state.project(campaign_name)
    with project.db() as conn:
        n = retry_sends(conn, project.campaign_name, mail=mail, now=now())
    click.echo(f"{n} send(s) of mail {mail} queued again.")
    _notify(project)


@cli.command()
@campaign_option
@click.option("--mail", "mails", type=MAIL_NUMBER, multiple=True, help="Approve only this mail (repeatable; default: all).")
@click.pass_obj
@engine_errors
def approve(state: State, campaign_name: str | None, mails: tuple[int, ...]) -> None:
    """Approve the current version of mails changed after scheduling, so they are sent."""
    from mailer.schedule import approve as approve_mails
    from mailer.service import fingerprints

    project = state.project(campaign_name)
    current = fingerprints(project)
    with project.db() as conn:
        changed = approve_mails(conn, project.campaign_name, current, mails=mails or None)
    click.echo(f"Approved the new version of mail(s) {', '.join(map(str, changed))}." if changed
               else "Nothing to approve: the stored approval matches the current mails.")
    _notify(project)


def _print_status(project, *, as_json: bool) -> None:
    from mailer.contacts import count_contacts
    from mailer.render import dutch_date
    from mailer.schedule import status as status_report
    from mailer.service import fingerprints
    from mailer.transport import transport_config

    with project.db() as conn:
        report = status_report(conn, project.campaign_name, now=now(), fingerprints=fingerprints(project),
                               transport=transport_config().label)
        contact_counts = count_contacts(conn)
    if as_json:
        echo_json({**report.as_dict(), "contacts": contact_counts})
        return
    tz = project.load_campaign().settings.schedule.timezone
    if report.scheduled:
        rows = []
        for m in report.mails:
            local = _local(m.due_at, tz)
            c = m.counts
            rows.append([m.number, m.theme[:34], f"{local:%a %Y-%m-%d %H:%M}", m.state, c["sent"], c["outbox"],
                         c["pending"], c["failed"], c["unknown"], c["suppressed"] + c.get("excluded", 0), m.resent,
                         c.get("bounced", 0), c.get("opted_out", 0)])
        # "outbox": written to the outbox, which reached no one; "sent": accepted by a mail server.
        click.echo(table(rows, ["#", "theme", "planned", "state", "sent", "outbox", "pending", "failed", "unknown",
                                "suppressed", "resent", "bounced", "opted out"]))
        # A campaign paused and then cancelled is cancelled: resume can no longer send it.
        flags = " (cancelled)" if report.cancelled else " (paused)" if report.paused else ""
        click.echo(f"\nCampaign {report.campaign}{flags}; election day {dutch_date(report.election_day)}; "
                   f"transport: {report.transport}.")
    else:
        click.echo(f"Campaign {report.campaign}: not scheduled.")
    click.echo("Contacts: " + ", ".join(f"{n} {s}" for s, n in contact_counts.items()) + ".")
    if report.worker_running and report.worker_heartbeat is None:
        click.echo(f"Worker: running (pid {report.worker_pid}, starting).")
    elif report.worker_running:
        click.echo(f"Worker: running (pid {report.worker_pid}, last seen {report.worker_heartbeat:%H:%M:%S} UTC).")
    elif report.worker_heartbeat:
        click.echo(f"Worker: not running (last seen {report.worker_heartbeat:%Y-%m-%d %H:%M} UTC).")
    else:
        click.echo("Worker: has never run.")
    for w in report.warnings:
        click.secho(f"Warning: {w}", fg="yellow", err=True)


@cli.command()
@campaign_option
@json_option
@click.pass_obj
@engine_errors
def status(state: State, campaign_name: str | None, as_json: bool) -> None:
    """Per mail: planned moment, state and counts; the transport; the worker."""
    _print_status(state.project(campaign_name), as_json=as_json)


@cli.command()
@plan_options
@click.option("--out", type=FilePath(file_okay=False, path_type=Path), default=None,
              help="Folder for the simulated messages (default: $CAMPAIGN_HOME/simulation/<campaign>).")
@click.option("--rate", type=RATE, default=None, help="Messages per minute (default: the settings').")
@click.pass_obj
@engine_errors
def simulate(state: State, campaign_name: str | None, start: dt.datetime | None, election_date: dt.datetime | None,
             out: Path | None, rate: int | None) -> None:
    """Run the whole series for the current contacts on a virtual clock; nothing is sent."""
    from mailer.render import dutch_date
    from mailer.simulate import simulate as run_simulation

    project = state.project(campaign_name)
    out = out or project.simulation
    with Progress("Simulating") as progress:
        result = run_simulation(project, out=out, start=_date(start), election_date=_date(election_date),
                                rate_per_minute=rate, progress=progress)
    tz = project.load_campaign().settings.schedule.timezone
    rows = [[m.number, m.theme[:40], dutch_date(_local(m.starts, tz)), f"{_local(m.starts, tz):%H:%M}",
             f"{_local(m.finishes, tz):%Y-%m-%d %H:%M}", m.messages] for m in result.mails]
    click.echo(table(rows, ["#", "theme", "date", "from", "last message", "messages"]))
    click.echo(f"\nSimulated {sum(m.messages for m in result.mails)} messages for {result.contacts} contact(s) "
               f"from {result.contact_source}, on {result.plan_source}, at {result.rate_per_minute}/min.")
    if result.skipped:
        click.echo(f"Skipped {result.skipped} message(s) that the ledger records as sent through a mail server "
                   "already.")
    click.echo(f"Messages and timeline: {result.out} (timeline.csv). Nothing was sent or recorded as delivered.")


# --- delivery ---------------------------------------------------------------------------------

@cli.command()
@campaign_option
@click.option("--once", is_flag=True, help="Send what is due now and exit (for cron and tests).")
@click.option("--rate", type=RATE, default=None, metavar="N", help="Messages per minute (default: the settings').")
@click.option("--connections", type=click.IntRange(1, 20), default=None, metavar="N",
              help="SMTP connections side by side, one message in flight each (default: the settings', or 1).")
@click.pass_obj
@engine_errors
def worker(state: State, campaign_name: str | None, once: bool, rate: int | None, connections: int | None) -> None:
    """Send each mail when it is due. Stops cleanly on SIGTERM or Ctrl-C, between two messages."""
    import signal

    from mailer.deliver import Worker

    project = state.project(campaign_name)
    with Progress("Sending") as progress:
        w = Worker(project, clock=now, rate_per_minute=rate, connections=connections,
                   progress=lambda mail, done, total: progress(done, total, f"Mail {mail}"),
                   on_error=lambda message: click.secho(f"{now():%Y-%m-%d %H:%M:%S} {message}; trying again later",
                                                        fg="yellow", err=True))

        def stop(signum: int, frame: Any) -> None:
            w.stop.set()
            w.wake.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        # Commands that change the schedule or the contacts wake the worker with SIGUSR1.
        signal.signal(signal.SIGUSR1, lambda signum, frame: w.wake.set())

        def started() -> None:
            click.echo(f"Worker started for {project.campaign_name} (transport {w.config.label}, "
                       f"{w.rate}/min); SIGTERM or Ctrl-C stops it between two messages.", err=True)

        # Said only once the lock is held and the transport accepted: a refused worker never started.
        stats = w.run(once=once, started=None if once else started)
    if w.config.kind == "outbox":
        # Nothing was delivered: the messages are files in the outbox.
        click.echo(f"Wrote {stats.sent} message(s) to the outbox ({project.outbox}); nothing left this machine and "
                   f"none was delivered. Failed {stats.failed}. To send for real, set CAMPAIGN_SMTP_URL and run "
                   "`campaign schedule --switch-transport`.")
    else:
        click.echo(f"Sent {stats.sent}, deferred {stats.deferred} (4xx, retried later), failed {stats.failed}, "
                   f"unknown {stats.unknown}; {stats.resent} resent after an interrupted run, "
                   f"{stats.resent_unknown} sent again after an answer that never came.")
    for n in stats.held:
        click.secho(f"Held: mail {n} changed after it was approved; check it, then `campaign approve --mail {n}`.",
                    fg="yellow", err=True)
    if stats.throttled:
        click.secho(f"The mail server asked to slow down {stats.throttled} time(s) ({stats.last_error}); those messages "
                    "wait in the queue without using an attempt.", fg="yellow", err=True)
    if stats.capped_until is not None:
        tz = project.load_campaign().settings.schedule.timezone
        click.secho(f"The daily limit was reached ([delivery] max_per_day in settings.toml); the rest goes from about "
                    f"{_local(stats.capped_until, tz):%Y-%m-%d %H:%M} on.", fg="yellow", err=True)


@cli.command("send-test")
@campaign_option
@click.option("--to", "to", multiple=True, metavar="ADDR", help="Recipient (repeatable; default: the settings' test recipients).")
@click.option("--mail", "mail", type=MailOrAll(), default="all", show_default=True, metavar="N|all",
              help="Which mail to send.")
@click.option("--contact", metavar="EMAIL", default=None,
              help="Personalise as for this contact (default: the first imported, else the first example).")
@click.pass_obj
@engine_errors
def send_test(state: State, campaign_name: str | None, to: tuple[str, ...], mail: str, contact: str | None) -> None:
    """Send test mails now, marked [TEST]; never recorded as deliveries."""
    from mailer.deliver import send_test as send_tests

    if mail != "all" and not mail.isdigit():
        raise click.BadParameter("a mail number or 'all'", param_hint="--mail")
    project = state.project(campaign_name)
    sent = send_tests(project, to=list(to) or None, mails=None if mail == "all" else [int(mail)],
                      contact=contact, now=now())
    for s in sent:
        if s.left_machine:
            click.echo(f"Mail {s.mail} to {s.recipient}: accepted by {s.where}")
        else:
            click.echo(f"Mail {s.mail} to {s.recipient}: written to {s.where}")
    n = len(sent)
    if sent and sent[0].left_machine:
        server = sent[0].transport
        if n == 1:
            click.echo(f"The mail server {server} accepted 1 test mail; none counts as a delivery.")
        else:
            click.echo(f"The mail server {server} accepted {n} test mails; none counts as a delivery.")
    elif sent:
        folder = Path(sent[0].where).parent
        if n == 1:
            click.echo(f"Wrote 1 test mail to the outbox ({folder}); nothing left this machine. "
                       "Set CAMPAIGN_SMTP_URL to send it for real.")
        else:
            click.echo(f"Wrote {n} test mails to the outbox ({folder}); nothing left this machine. "
                       "Set CAMPAIGN_SMTP_URL to send them for real.")


# --- checks and preview -----------------------------------------------------------------------

@cli.command()
@campaign_option
@json_option
@click.pass_obj
@engine_errors
def check(state: State, campaign_name: str | None, as_json: bool) -> None:
    """Pre-send checks of every mail (and the schedule, when stored). Exit 1 on errors."""
    from mailer.service import campaign_findings

    findings = campaign_findings(state.project(campaign_name))
    errors = [f for f in findings if f.level == "error"]
    if as_json:
        echo_json({"ok": not errors, "findings": [f.as_dict() for f in findings]})
    else:
        if findings:
            click.echo(table([[f.level, f.mail or "-", f.message] for f in findings], ["level", "mail", "finding"]))
        n_warn = len(findings) - len(errors)
        click.echo(f"\n{len(errors)} error(s), {n_warn} warning(s)." if findings else "All checks pass.")
    if errors:
        sys.exit(1)


@cli.command()
@campaign_option
@click.option("--port", type=click.IntRange(0, 65535), default=8600, show_default=True,
              help="Port on 127.0.0.1 (0 picks a free one).")
@click.option("--contact", metavar="EMAIL", default=None, help="Show the mails as this contact gets them.")
@click.option("--no-serve", is_flag=True, help="Write static pages instead of serving them (with --out).")
@click.option("--out", type=FilePath(file_okay=False, path_type=Path), default=None,
              help="Folder for --no-serve (default: out/<campaign>-preview/).")
@click.pass_obj
@engine_errors
def preview(state: State, campaign_name: str | None, port: int, contact: str | None, no_serve: bool,
            out: Path | None) -> None:
    """Show every mail at desktop and phone width, its text part, source and checks."""
    from mailer.preview import PreviewServer, write_site

    project = state.project(campaign_name)
    if no_serve:
        out = out or project.root / "out" / f"{project.campaign_name}-preview"
        files = write_site(project, out, contact=contact)
        click.echo(f"Wrote {len(files)} files to {out}; open {out / 'index.html'}.")
        warn_sender(project.deployment().problems)
        return
    if out:
        raise click.UsageError("--out goes with --no-serve")
    try:
        server = PreviewServer(project, port=port, contact=contact)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on 127.0.0.1:{port}: {exc.strerror} (try --port 0)") from None
    click.echo(f"Preview of {project.campaign_name} at {server.url} (Ctrl-C stops it). "
               "It rebuilds and reloads when a content file, template or setting changes.")
    warn_sender(project.deployment().problems)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()


# --- a series for the next election -----------------------------------------------------------

@cli.command("new")
@click.argument("name", type=CampaignName())
@click.option("--checklist", type=FilePath(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A checklist document (.docx, .pdf, .md or .txt): one mail per theme.")
@click.option("--from-campaign", "base", metavar="BASE", type=CampaignName(), default=None,
              help="Copy organisation, links, salutations and sending policy (and, without --checklist, the "
                   "mails) from this campaign.")
@click.option("--election-day", type=PlanDate(), required=True, help="The new election's day (YYYY-MM-DD).")
@click.option("--election-name", metavar="TEXT", default=None,
              help="The election's name in the mails (default: the base campaign's, else gemeenteraadsverkiezingen).")
@click.option("--force", is_flag=True, help="Replace campaigns/NAME when it exists.")
@json_option
@click.pass_obj
@engine_errors
def new(state: State, name: str, checklist: Path | None, base: str | None, election_day: dt.datetime,
        election_name: str | None, force: bool, as_json: bool) -> None:
    """Write campaigns/NAME/ for another election, from a checklist document or another campaign."""
    from mailer.newcampaign import new_campaign

    if checklist is None and base is None:
        raise click.UsageError("give --checklist FILE (a .docx, .pdf, .md or .txt) or --from-campaign BASE")
    if election_name is not None and (not election_name.strip() or not election_name.isprintable()):
        raise click.BadParameter("give the election's name as a line of text", param_hint="--election-name")
    project = state.project()
    result = new_campaign(project.root, name, election_day=election_day.date(), election_name=election_name,
                          checklist=checklist, base=base, force=force)
    if as_json:
        echo_json(result.as_dict())
        return
    rows = [[m.number, m.file, m.subject, "draft" if m.draft else ""] for m in result.mails]
    click.echo(table(rows, ["#", "file", "subject", "state"]))
    click.echo(f"\nWrote {result.folder} from {result.source}: {len(result.mails)} mail(s).")
    if result.review:
        click.echo("\nA person must look at these:")
        for line in result.review:
            click.echo(f"  - {line}")
    if any(m.draft for m in result.mails):
        click.echo(f"\nNext: edit the mails, then `campaign preview --campaign {name}` and "
                   f"`campaign check --campaign {name}`.")
    else:
        click.echo(f"\nNext: `campaign preview --campaign {name}`, `campaign check --campaign {name}`, then "
                   f"`campaign plan --campaign {name}`.")
