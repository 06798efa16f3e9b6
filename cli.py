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

from mailer.i18n import N_, _, ngettext, shorten

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
        return _("the state database {path} is locked by another process (a worker or another command); "
                 "try again when it has finished").format(path=path)
    if "full" in reason or ("I/O" in reason and _disk_full(path.parent)):
        return _("could not write the state database {path}: the disk is full; the change was rolled back "
                 "and nothing after it was done").format(path=path)
    if "readonly" in reason or "read-only" in reason:
        return _("could not write the state database {path}: it is read-only ({reason}); the change was "
                 "rolled back and nothing after it was done").format(path=path, reason=reason)
    if "unable to open" in reason:
        return _("cannot open the state database {path} ({reason}); $CAMPAIGN_HOME must be a folder you can "
                 "write").format(path=path, reason=reason)
    if "not a database" in reason or "malformed" in reason:
        return _("the state database {path} is damaged or not a database ({reason}); restore it from a backup, "
                 "or point CAMPAIGN_HOME elsewhere").format(path=path, reason=reason)
    return _("the state database {path} failed: {reason}; nothing after that was done").format(path=path,
                                                                                             reason=reason)


def _disk_full(folder: Path) -> bool:
    """SQLite reports a full disk under WAL as a mere 'disk I/O error': look for ourselves."""
    import os

    try:
        return os.statvfs(folder).f_bavail == 0
    except OSError:
        return False


def _disk_problem(exc: OSError) -> str:
    """One sentence for a file that could not be written (disk full, read-only, no permission...)."""
    where = exc.filename if exc.filename is not None else _("a file")
    reason = exc.strerror or str(exc)
    if exc.filename is not None and Path(exc.filename) == _state_home():
        return _("cannot create the state folder {where} ($CAMPAIGN_HOME): {reason}; point CAMPAIGN_HOME at a "
                 "folder you can write").format(where=where, reason=reason)
    return _("could not write {where}: {reason}; nothing after that was done").format(where=where, reason=reason)


def _shown(value: str) -> str:
    """A typed value as it can be shown in an error: control characters escaped, long ones cut."""
    text = repr(value)
    return text if len(text) <= 60 else text[:40] + _("…' ({count} characters)").format(count=len(value))


class CampaignName(click.ParamType):
    """A folder name under campaigns/: no path separators, control characters or '..'."""

    name = "name"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        import re

        if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", value):
            self.fail(_("{given} is not a campaign folder name (up to 64 letters, digits, '.', '-' or '_')").format(
                given=_shown(str(value))), param, ctx)
        return value


class FilePath(click.Path):
    """click.Path that refuses a NUL byte (which os functions reject with a ValueError) and, for a
    file to read, a device: /dev/zero or /dev/urandom would be read until memory runs out."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        import os
        import stat

        if isinstance(value, str) and "\0" in value:
            self.fail(_("{given} contains a NUL byte").format(given=_shown(value)), param, ctx)
        path = super().convert(value, param, ctx)
        if self.exists and not self.dir_okay:
            mode = os.stat(path).st_mode
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                self.fail(_("{given} is a device, not a file").format(given=_shown(str(value))), param, ctx)
        return path


class PlanDate(click.DateTime):
    """A YYYY-MM-DD date in a range the planner can count from without leaving the calendar."""

    FIRST = dt.datetime(2000, 1, 1)
    LAST = dt.datetime(2999, 12, 31)

    def __init__(self) -> None:
        super().__init__(["%Y-%m-%d"])

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        # click would show the strftime codes ([%Y-%m-%d]); a person reads the form to type.
        return _("[YYYY-MM-DD]")

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        moment = super().convert(value, param, ctx)
        if not self.FIRST <= moment <= self.LAST:
            # isoformat, not %Y: strftime writes the year 1 as '1'.
            self.fail(_("{date} is out of range: give a date from {first} to {last}").format(
                date=moment.date().isoformat(), first=self.FIRST.date().isoformat(),
                last=self.LAST.date().isoformat()), param, ctx)
        return moment


class MailOrAll(click.ParamType):
    """A mail number (1-999) or the word 'all'."""

    name = "N|all"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        if text != "all" and not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAIL_NUMBER.max):
            self.fail(_("{given} is not a mail number (1-{max}) or 'all'").format(given=_shown(text),
                                                                                   max=MAIL_NUMBER.max), param, ctx)
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


def _level(level: str) -> str:
    """A finding's level as a person reads it (``--json`` keeps ``error``/``warning``)."""
    return {"error": _("error"), "warning": _("warning")}.get(level, level)


def _contact_status(status: str) -> str:
    """A contact's status as a person reads it (``--json`` keeps the stored word)."""
    return {"active": _("active"), "unsubscribed": _("unsubscribed"), "bounced": _("bounced"),
            "removed": _("removed")}.get(status, status)


def _send_state(state: str) -> str:
    """A ledger state as a person reads it."""
    return {"pending": _("pending"), "sending": _("sending"), "sent": _("sent"), "failed": _("failed"),
            "unknown": _("unknown"), "suppressed": _("suppressed"), "cancelled": _("cancelled")}.get(state, state)


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
        click.echo(_("The running worker was told."), err=True)


def warn_sender(problems: tuple[str, ...] | list[str]) -> None:
    if problems:
        click.secho(_("Sender not configured: the mails show example values. Sending beyond the outbox "
                      "is refused until $CAMPAIGN_HOME/settings.toml holds the real sender."), fg="yellow", err=True)
        for p in problems:
            click.secho(f"  - {p}", fg="yellow", err=True)


class CampaignGroup(click.Group):
    """The root group: it chooses the language before click formats or parses anything."""

    def main(self, args: Any = None, *rest: Any, **kwargs: Any) -> Any:
        from mailer import i18n

        argv = list(sys.argv[1:] if args is None else args)
        # --json is an interface: its keys, values and findings stay English whatever the locale.
        i18n.setup("en" if "--json" in argv else None)
        _translate_help(self)
        return super().main(argv, *rest, **kwargs)


def _translate_help(command: click.Command) -> None:
    """click keeps the help given at decoration time; show it in the chosen language.

    The English originals (the msgids) are kept on each object, so that a second invocation in
    the same process (the tests) can switch language again.
    """
    import inspect

    for obj in [command, *command.params]:
        for attr in ("help", "short_help"):
            key = f"_msgid_{attr}"
            if key not in obj.__dict__:
                obj.__dict__[key] = getattr(obj, attr, None)
            original = obj.__dict__[key]
            if original:
                setattr(obj, attr, _(inspect.cleandoc(original)))
    _translate_metavars(command)
    # click makes the --help option once per command, with its help text in the language of that
    # moment; let it be made again in this one.
    if getattr(command, "_help_option", None) is not None:
        command._help_option = None
    for sub in getattr(command, "commands", {}).values():
        _translate_help(sub)


def _translate_metavars(command: click.Command) -> None:
    """The placeholders in usage and help ([OPTIONS], FILE, EMAIL) in the chosen language.

    click 8.5 writes them in English and does not look them up; the English words are the msgids
    (listed in mailer/i18n_click.py). Choice and date metavars list values one types: they stay.
    """
    saved = command.__dict__.setdefault("_msgid_metavars", {})
    if "options" not in saved:
        saved["options"] = command.options_metavar
        saved["subcommand"] = getattr(command, "subcommand_metavar", None)
    if saved["options"]:
        command.options_metavar = _(saved["options"])
    if saved["subcommand"]:
        command.subcommand_metavar = _(saved["subcommand"])  # type: ignore[attr-defined]
    for param in command.params:
        if "_msgid_metavar" not in param.__dict__:
            word = param.metavar
            if word is None and not getattr(param, "is_flag", False) and \
                    param.type.get_metavar(param=param, ctx=click.Context(command)) is None:
                word = param.type.name.upper() if isinstance(param, click.Option) else (param.name or "").upper()
                # click decorates a metavar it makes itself; one we set is shown as it is.
                param.__dict__["_metavar_decorated"] = isinstance(param, click.Argument)
            param.__dict__["_msgid_metavar"] = word
        word = param.__dict__["_msgid_metavar"]
        if not word:
            continue
        shown = _(word)
        if param.__dict__.get("_metavar_decorated"):
            shown = shown if param.required else f"[{shown}]"
        if param.nargs != 1 and param.__dict__.get("_metavar_decorated") is not None:
            shown += "..."
        param.metavar = shown


@click.group(cls=CampaignGroup, context_settings=CONTEXT_SETTINGS)
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

@cli.command(short_help="Create $CAMPAIGN_HOME with example settings.")
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
        click.echo(_("Wrote {path} with example values on example.org: replace them before sending for "
                     "real.").format(path=path))
    else:
        click.echo(_("{path} exists; left as it is (--force overwrites it).").format(path=path))
    click.echo(_("State database: {path}").format(path=project.home / 'campaign.sqlite3'))


@cli.command(short_help="Render every mail to files for one contact.")
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
        rows = [[m.number, shorten(m.theme, 40), m.subject, f"{m.html_bytes / 1024:.1f}",
                 "; ".join(f"{_level(f.level)}: {f.message}" for f in m.findings) or _("ok")] for m in result.mails]
        click.echo(table(rows, ["#", _("theme"), _("subject"), _("HTML KB"), _("problems")]))
        drafts = [str(m.number) for m in result.mails if m.draft]
        if drafts:
            click.echo("\n" + _("Draft (draft = true): mail {numbers}; `campaign schedule` refuses until each is "
                                 "edited and the line deleted.").format(numbers=", ".join(drafts)))
        click.echo("\n" + _("Wrote {count} files to {out} for {contact} (from {source}); rendering took {ms} "
                            "ms.").format(
            count=len(result.mails) * 4, out=result.out, contact=result.contact,
            source=_("imported contacts") if result.contact_source == "imported contacts" else result.contact_source,
            ms=f"{result.render_seconds * 1000:.0f}"))
    warn_sender(result.sender_problems)
    if any(f.level == "error" for m in result.mails for f in m.findings):
        raise click.ClickException(_("some mails have errors (see the table)"))


# --- contacts ---------------------------------------------------------------------------------

@cli.group(short_help="Import, list, look up and erase contacts.")
def contacts() -> None:
    """Import, list and look up contacts; record opt-outs; erase on request."""


@contacts.command("import", short_help="Import a contact list (CSV, text or Excel).")
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
    read_as = (_("{encoding}, delimiter {delimiter}").format(encoding=result.encoding, delimiter=repr(result.delimiter))
               if result.delimiter else result.encoding)
    counts = dict(file=file, read_as=read_as, added=result.added, updated=result.updated, unchanged=result.unchanged,
                  kept=result.kept_status, opted_out=result.opted_out, erased=result.suppressed,
                  invalid=len(result.refused))
    if dry_run:
        click.echo(_("Would import {file} ({read_as}): {added} added, {updated} updated, {unchanged} unchanged, "
                     "{kept} kept as opted out or bounced, {opted_out} refused as opted out, {erased} refused as "
                     "erased, {invalid} invalid.").format(**counts))
    else:
        click.echo(_("Imported {file} ({read_as}): {added} added, {updated} updated, {unchanged} unchanged, "
                     "{kept} kept as opted out or bounced, {opted_out} refused as opted out, {erased} refused as "
                     "erased, {invalid} invalid.").format(**counts))
    if result.empty:
        click.echo(ngettext("{count} empty row skipped (no value in any column).",
                            "{count} empty rows skipped (no value in any column).", result.empty).format(
                                count=result.empty))
    if result.name_from:
        click.echo(_("Name made from the columns {columns}.").format(columns=", ".join(result.name_from)))
    if result.extras:
        click.echo(_("Kept as extra fields (contact.extra.NAME in templates): {names}.").format(
            names=", ".join(result.extras)))
    for problem in result.refused:
        click.secho(_("  refused: {problem}").format(problem=problem), fg="yellow", err=True)
    for problem in result.withheld:
        click.secho(_("  refused: {problem}").format(problem=problem), fg="yellow", err=True)
    if dry_run:
        click.echo(_("Dry run: nothing was stored. Run again without --dry-run to import."))
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
    click.echo(table([[r["email"], r["name"], r["party"], r["municipality"], _contact_status(r["status"])]
                      for r in rows], [_("email"), _("name"), _("party"), _("municipality"), _("status")]))
    click.echo("\n" + ngettext("{count} contact.", "{count} contacts.", len(rows)).format(count=len(rows)))


CONTACT_FIELDS = {
    "email": N_("email"), "name": N_("name"), "party": N_("party"), "municipality": N_("municipality"),
    "role": N_("role"), "basis": N_("basis"), "source": N_("source"), "imported_at": N_("imported at"),
    "updated_at": N_("updated at"), "status": N_("status"), "status_at": N_("status since"),
    "status_reason": N_("status reason"), "reactivated_by": N_("reactivated by"),
    "reactivated_at": N_("reactivated at"),
}


@contacts.command("show", short_help="Show one contact and what it was sent.")
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
    from mailer.i18n_stored import inbox_effect, inbox_kind, stored

    sends = info.pop("sends")
    extra = info.pop("extra")
    came_back = info.pop("came_back")
    moment = _moment_shown(state)
    info = {key: moment(value) if key.endswith("_at") else value for key, value in info.items()}
    if info.get("status_reason"):
        info["status_reason"] = stored(info["status_reason"])
    # The stored column names are --json's keys; a person reads them as words.
    labels = {key: _(CONTACT_FIELDS[key]) if key in CONTACT_FIELDS else key for key in info}
    if info.get("status"):
        info["status"] = _contact_status(info["status"])
    width = max(len(k) for k in list(labels.values()) + list(extra))
    for key, value in info.items():
        click.echo(f"{labels[key].ljust(width)}  {value if value not in (None, '') else '-'}")
    for key, value in extra.items():
        click.echo(_("{key}  {value}  (extra column)").format(key=key.ljust(width), value=value))
    click.echo("")
    if sends:
        shown = {"outbox": _("written to the outbox (not delivered)")}
        click.echo(table([[s["campaign"], s["mail"], shown.get(s["state"], _send_state(s["state"])),
                           moment(s["sent_at"]), stored(s["error"])] for s in sends],
                         [_("campaign"), _("mail"), _("state"), _("sent/written at"), _("error")]))
    else:
        click.echo(_("Nothing sent to this contact yet."))
    if came_back:
        click.echo("\n" + _("Came back by mail (campaign inbox):"))
        click.echo(table([[moment(e["received_at"]), inbox_kind(e["kind"]), e["campaign"] or "", e["mail"] or "",
                           e["status"], inbox_effect(e["effect"]) or "-", e["subject"]] for e in came_back],
                         [_("received"), _("kind"), _("campaign"), _("mail"), _("status"), _("changed"),
                          _("subject")]))


def _moment_shown(state: State) -> Callable[[str | None], str]:
    """A stored ISO moment as a person reads it, in the campaign's time zone (``--json`` keeps ISO)."""
    from mailer.errors import CampaignError
    from mailer.i18n import format_moment
    from mailer.store import parse_iso

    try:
        tz = state.project().load_campaign().settings.schedule.timezone
    except CampaignError:
        tz = "Europe/Amsterdam"  # the default of [schedule] timezone: contacts show works without a campaign

    def shown(value: str | None) -> str:
        if not value:
            return value or ""
        try:
            return format_moment(parse_iso(value), tz)
        except (TypeError, ValueError):
            return value

    return shown


def _addresses(emails: tuple[str, ...], from_file: Path | None) -> list[str]:
    from mailer.contacts import read_address_list

    found = list(emails)
    if from_file:
        found += read_address_list(from_file)
    if not found:
        raise click.UsageError(_("name at least one address, or --from FILE"))
    return found


REASON_MAX = 200


def _opt_out_reason(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A reason is stored and shown on one line: no control characters, at most REASON_MAX characters."""
    import unicodedata

    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise click.BadParameter(_("{given} holds a control character (a new line, tab or escape code); write the "
                                   "reason on one line of plain text").format(given=_shown(value)))
    if len(value) > REASON_MAX:
        raise click.BadParameter(_("is {length} characters long; write a reason of at most {max}").format(
            length=len(value), max=REASON_MAX))
    return value


@contacts.command("unsubscribe")
@click.argument("emails", nargs=-1)
@click.option("--from", "from_file", type=FilePath(exists=True, dir_okay=False, path_type=Path),
              help="A file of addresses (one per line, or a CSV with an e-mail column).")
@click.option("--reason", default="opt-out", show_default=True, callback=_opt_out_reason,
              help="Why: shown with the opt-out (one line, at most 200 characters).")
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
    click.echo(ngettext("Unsubscribed {count} contact.", "Unsubscribed {count} contacts.", n).format(count=n))
    if m:
        click.echo(ngettext("Recorded {count} opt-out for an address that is not a contact; a later import refuses it.",
                            "Recorded {count} opt-outs for addresses that are not contacts; a later import refuses "
                            "them.", m).format(count=m))
    for masked in result.recorded:
        click.secho(_("  not a contact: {address}").format(address=masked), fg="yellow", err=True)
    if k:
        click.echo(_("{count} of the addresses had opted out already; nothing changed for them.").format(count=k))
    if n:
        _notify(project)


@contacts.command("reactivate", short_help="Make a bounced or removed contact active again.")
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
    click.echo(ngettext("Reactivated {address} (was {was}), recorded as done by {by} at {at}; {count} unsent mail "
                        "put back in the queue.",
                        "Reactivated {address} (was {was}), recorded as done by {by} at {at}; {count} unsent mails "
                        "put back in the queue.", n).format(address=done.masked, was=_contact_status(done.was),
                                                            by=done.by, at=_moment_shown(state)(done.at), count=n))
    _notify(project)


@contacts.command("remove", short_help="Deactivate contacts.")
@click.argument("emails", nargs=-1, required=True)
@click.pass_obj
@engine_errors
def contacts_remove(state: State, emails: tuple[str, ...]) -> None:
    """Deactivate contacts (staff decision; a later import of the address reactivates it)."""
    from mailer.contacts import mask, remove_contacts

    with state.project().db() as conn:
        changed, unknown = remove_contacts(conn, emails)
    click.echo(ngettext("Removed {count} contact.", "Removed {count} contacts.", changed).format(count=changed))
    for address in unknown:
        click.secho(_("  not a contact: {address}").format(address=mask(address)), fg="yellow", err=True)
    if unknown:
        raise click.ClickException(ngettext("{count} address not found", "{count} addresses not found",
                                            len(unknown)).format(count=len(unknown)))


@contacts.command("forget", short_help="Erase a person on request, for good.")
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
            raise click.UsageError(_("erasure cannot be undone: confirm on a terminal or pass --yes"))
        click.confirm(_("Erase every trace of {address}? This cannot be undone").format(address=mask(address)),
                      abort=True)
    project = state.project()
    with project.db() as conn:
        result = forget_contact(conn, address, outbox=project.outbox, not_imported=not_imported)
    if result.already:
        click.echo(_("{address} was erased earlier; nothing about it is stored.").format(address=result.address))
    elif not result.imported:
        click.echo(_("Recorded the erasure request for {address}, which was never imported: nothing else was "
                     "stored about it, and a one-way hash keeps the address from being imported.").format(
                         address=result.address))
    else:
        click.echo(_("Erased {address}: contact and send records deleted, {files} file(s) removed, {lines} timeline "
                     "line(s) dropped; a one-way hash keeps the address from being imported again.").format(
                         address=result.address, files=result.files_removed, lines=result.lines_removed))


# --- what comes back by mail ------------------------------------------------------------------

@cli.command(short_help="Act on bounces, opt-outs and replies by mail.")
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
    from mailer.i18n_stored import inbox_count, inbox_kind, stored
    from mailer.inbox import read_inbox

    report = read_inbox(state.project(), source=source, dry_run=dry_run, now=now())
    if as_json:
        echo_json([o.as_dict() for o in report.outcomes])
    else:
        if report.outcomes:
            click.echo(table([[o.ref[-40:], inbox_kind(o.kind), o.contact or "-", o.party, o.municipality,
                               f"{o.campaign}/{o.mail}" if o.mail else "",
                               _("{action} ({note})").format(action=stored(o.action), note=stored(o.note))
                               if o.note else stored(o.action), shorten(o.subject, 40)]
                              for o in report.outcomes],
                             [_("message"), _("kind"), _("contact"), _("party"), _("municipality"), _("mail"),
                              _("action"), _("subject")]))
            click.echo("")
        counts = report.counts()
        summary = ", ".join(inbox_count(kind, n) for kind, n in counts.items() if n) or _("no messages")
        click.echo(_("Read {count} message(s) from {source}: {summary}.").format(
            count=len(report.outcomes), source=report.source, summary=summary))
        if dry_run:
            click.echo(_("Dry run: nothing was changed and no message was flagged; run it without --dry-run to "
                         "apply."))
        if counts["reply"]:
            click.echo(_("Replies from people that wait for an answer: {count}; read them in the mailbox (they stay "
                         "unread there).").format(count=counts["reply"]))
    if report.mark_error:
        click.secho(_("Warning: the messages were handled, but flagging them in the mailbox failed ({reason}); the "
                      "next run recognises them and changes nothing.").format(reason=report.mark_error),
                    fg="yellow", err=True)


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
    from mailer.i18n import format_day, format_moment, shorten

    by_mail = {e.mail: e for e in report.estimates}
    rows = []
    for s in report.plan.sends:
        e = by_mail[s.mail]
        local = _local(s.at, tz)
        rows.append([s.mail, shorten(s.theme, 40), format_moment(local),
                     (_("{minutes} min").format(minutes=f"{e.minutes:.0f}") if e.minutes >= 1 else _("<1 min"))
                     if report.contacts else "-", s.moved_because or ""])
    click.echo(table(rows, ["#", _("theme"), _("moment"), _("sending takes"), _("moved because")]))
    cap = getattr(report, "max_per_day", None)
    rate = report.rate_per_minute
    limits = (_("{rate}/min, at most {cap} a day").format(rate=rate, cap=f"{cap:,}") if cap
              else _("{rate}/min").format(rate=rate))
    click.echo("\n" + _("Election day: {day}. Times in {tz}. {contacts} active contact(s) at {limits}.").format(
        day=format_day(report.plan.election_day), tz=tz, contacts=report.contacts, limits=limits))
    for e in report.estimates:
        until = format_moment(e.finishes, tz)
        if e.after_election:
            click.secho(_("Warning: mail {mail} would not reach every contact before election day: at {limits} its "
                          "{count} messages take until about {until}; raise [delivery] max_per_day if your provider "
                          "allows it, send to fewer contacts, or plan with an earlier --start.").format(
                              mail=e.mail, limits=limits, count=f"{e.contacts:,}", until=until), fg="red", err=True)
        elif e.overlaps_next:
            click.secho(_("Warning: mail {mail} is still being sent when the next mail is due: at {limits} its {count} "
                          "messages take until about {until}; the series no longer fits its cadence.").format(
                              mail=e.mail, limits=limits, count=f"{e.contacts:,}", until=until),
                        fg="yellow", err=True)
        elif e.days > 1 and cap and e.contacts > cap:
            click.secho(_("Mail {mail} goes out over {days} days: {count} contacts at most {cap} a day (until about "
                          "{until}).").format(mail=e.mail, days=e.days, count=f"{e.contacts:,}", cap=f"{cap:,}",
                                              until=until), fg="yellow", err=True)
        elif not e.fits_window:
            click.secho(_("Warning: mail {mail} takes {hours} h at {rate}/min and does not fit in one day's window; "
                          "sending continues in the next window (until about {until}).").format(
                              mail=e.mail, hours=f"{e.minutes / 60:.1f}", rate=rate, until=until),
                        fg="yellow", err=True)


@cli.command(short_help="Show the nine send moments of the plan.")
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
            raise click.ClickException(_("--ics {path} is a symbolic link, and the calendar is not written through "
                                         "one; name the file itself (a new file, or one you want replaced)").format(
                                             path=ics))
        try:
            # Owner-only, like every file the tool writes; an existing file is tightened too.
            files.write_private(ics, to_ics(report.plan, name=settings.name, estimates=report.estimates, now=now()),
                                atomic=False)
        except OSError as exc:
            raise click.ClickException(_("could not write {path}: {reason}; the plan was shown above, but no "
                                         "complete calendar file was written").format(path=ics, reason=exc.strerror)
                                       ) from None
        click.echo(_("Wrote {path}.").format(path=ics))


@cli.command(short_help="Store the plan; the worker then sends each mail.")
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
            raise click.UsageError(_("--switch-transport changes only where the stored plan's mail goes; it takes "
                                     "no --start or --election-date"))
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
            click.echo(_("This plan is already stored:") + "\n")
            _print_status(project, as_json=False)
            return
    report = plan_campaign(project, now=now(), start=_date(start), election_date=_date(election_date))
    print_plan(report, project.load_campaign().settings.schedule.timezone)
    kept = kept_as_sent(project)
    if config.kind == "outbox" and len(kept) == 1:
        # Kept whether they were sent or only written to the outbox: the outbox gets no second copy.
        click.echo(_("Mail {number} was sent or written to the outbox completely before; it is not sent or written "
                     "again.").format(number=kept[0]))
    elif config.kind == "outbox" and kept:
        click.echo(_("Mails {numbers} were sent or written to the outbox completely before; they are not sent or "
                     "written again.").format(numbers=", ".join(map(str, kept))))
    elif len(kept) == 1:
        click.echo(_("Mail {number} was sent completely before; it stays sent and is not sent again.").format(
            number=kept[0]))
    elif kept:
        click.echo(_("Mails {numbers} were sent completely before; they stay sent and are not sent again.").format(
            numbers=", ".join(map(str, kept))))
    click.echo(_where_mail_goes(project, config))
    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError(_("scheduling sends mail to real contacts: confirm on a terminal or pass --yes"))
        click.confirm("\n" + _("Store this plan?"), abort=True)
    created = schedule_campaign(project, report, now=now())
    _notify(project)
    if not created:
        click.echo(_("This plan was already stored."))
    elif config.kind == "outbox":
        click.echo(_("Stored. The worker writes each mail to the outbox ({outbox}) when it is due: nothing leaves "
                     "this machine. Run `campaign worker` (or its cron line); to send for real later, set "
                     "CAMPAIGN_SMTP_URL and run `campaign schedule --switch-transport`.").format(outbox=project.outbox))
    else:
        click.echo(_("Stored. The worker sends each mail through {transport} when it is due: run `campaign worker` "
                     "(or its cron line) with the same CAMPAIGN_SMTP_URL.").format(transport=config.label))


def _where_mail_goes(project, config) -> str:
    if config.kind == "outbox":
        return _("Mail goes to the outbox ({outbox}): nothing leaves this machine. To send for real, set "
                 "CAMPAIGN_SMTP_URL (and CAMPAIGN_SMTP_PASSWORD) first.").format(outbox=project.outbox)
    return _("Mail goes out through {transport} to the contacts, each mail when it is due.").format(
        transport=config.label)


def _switch_transport(project, *, yes: bool) -> None:
    from mailer.service import switch_to_current_transport

    planned = switch_to_current_transport(project, now=now(), check_only=True)
    new = planned.new
    if not planned.changed:
        if new.kind == "outbox":
            click.echo(_("The plan is already stored for the outbox; nothing to switch."))
        else:
            click.echo(_("The plan is already stored for {transport}; nothing to switch.").format(transport=new.label))
        return
    click.echo(_where_mail_goes(project, new))
    if planned.requeued:
        click.echo(_("{count} message(s) were only written to the outbox and reached no one; after the switch they "
                     "are sent through {transport}.").format(count=planned.requeued, transport=new.label))
    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError(_("switching the transport changes where mail to real contacts goes: confirm on a "
                                     "terminal or pass --yes"))
        click.confirm("\n" + _("Switch the stored plan of {campaign} to this transport?").format(
            campaign=project.campaign_name), abort=True)
    done = switch_to_current_transport(project, now=now())
    if done.old == "outbox":
        click.echo(_("Switched the stored plan from the outbox to {transport}: a worker with this CAMPAIGN_SMTP_URL "
                     "sends each mail when it is due; the moments and reschedules stay as they were.").format(
                         transport=new.label))
        _print_requeued(project, done)
    elif new.kind == "outbox":
        click.echo(_("Switched the stored plan from {old} to the outbox: nothing leaves this machine; start the "
                     "worker without CAMPAIGN_SMTP_URL. The moments and reschedules stay as they were.").format(
                         old=done.old))
    else:
        click.echo(_("Switched the stored plan from {old} to {transport}: a worker with this CAMPAIGN_SMTP_URL sends "
                     "each mail when it is due; the moments and reschedules stay as they were.").format(
                         old=done.old, transport=new.label))
    _notify(project)


def _print_requeued(project, done) -> None:
    """What a switch from the outbox put back in the queue, and when each mail done there goes out."""
    if done.requeued:
        click.echo(_("{count} message(s) that were only written to the outbox (they reached no one) are back in the "
                     "queue and are sent through {transport}.").format(count=done.requeued,
                                                                        transport=done.new.label))
    from mailer.i18n import format_moment

    tz = project.load_campaign().settings.schedule.timezone
    for mail in done.replanned:
        if mail.passed:
            click.echo(_("Mail {number} had gone only to the outbox and its planned moment has passed: it goes out "
                         "now, within the send window (never on or after election day), as soon as a worker with "
                         "this CAMPAIGN_SMTP_URL runs.").format(number=mail.number))
        else:
            click.echo(_("Mail {number} had gone only to the outbox: it goes out at its planned moment, {moment} "
                         "({tz}).").format(number=mail.number, moment=format_moment(mail.due_at, tz), tz=tz))


@cli.command(short_help="Move one mail to another moment.")
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
    from mailer.i18n import format_moment

    click.echo(_("Mail {mail} now goes out at {moment} ({tz}).").format(mail=mail, moment=format_moment(when, tz),
                                                                      tz=tz))
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
    return _("Paused: a running worker stops between two messages, within seconds.")


def _resume(conn, campaign: str) -> str:
    from mailer.schedule import set_paused

    set_paused(conn, campaign, False)
    return _("Resumed: a running worker picks up within a minute.")


_simple_state_command("pause", N_("Stop sending (between two messages) until `resume`."), _pause)
_simple_state_command("resume", N_("Continue sending after `pause`."), _resume)


@cli.command(short_help="Call off the campaign or one mail.")
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
    if mail:
        click.echo(_("Mail {mail} cancelled; {count} pending send(s) called off. Sent mails stay recorded.").format(
            mail=mail, count=n))
    else:
        click.echo(_("Campaign {campaign} cancelled; {count} pending send(s) called off. Sent mails stay "
                     "recorded.").format(campaign=project.campaign_name, count=n))


@cli.command(short_help="Queue failed and unknown sends of a mail again.")
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
    click.echo(_("{count} send(s) of mail {mail} queued again.").format(count=n, mail=mail))
    _notify(project)


@cli.command(short_help="Approve mails that changed after scheduling.")
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
    click.echo(_("Approved the new version of mail(s) {numbers}.").format(numbers=", ".join(map(str, changed)))
               if changed else _("Nothing to approve: the stored approval matches the current mails."))
    _notify(project)


def _print_status(project, *, as_json: bool) -> None:
    from mailer.contacts import count_contacts
    from mailer.i18n import format_day, format_moment, shorten
    from mailer.schedule import status as status_report
    from mailer.service import fingerprints
    from mailer.transport import transport_config

    tz = project.load_campaign().settings.schedule.timezone
    with project.db() as conn:
        report = status_report(conn, project.campaign_name, now=now(), fingerprints=fingerprints(project),
                               transport=transport_config().label, timezone=tz)
        contact_counts = count_contacts(conn)
    if as_json:
        echo_json({**report.as_dict(), "contacts": contact_counts})
        return
    if report.scheduled:
        rows = []
        for m in report.mails:
            c = m.counts
            rows.append([m.number, shorten(m.theme, 34), format_moment(m.due_at, tz), m.state, c["sent"], c["outbox"],
                         c["pending"], c["failed"], c["unknown"], c["suppressed"] + c.get("excluded", 0), m.resent,
                         c.get("bounced", 0), c.get("opted_out", 0)])
        # "outbox": written to the outbox, which reached no one; "sent": accepted by a mail server.
        click.echo(table(rows, ["#", _("theme"), _("planned"), _("state"), _("sent"), _("outbox"), _("pending"),
                                _("failed"), _("unknown"), _("suppressed"), _("resent"), _("bounced"), _("opted out")]))
        # A campaign paused and then cancelled is cancelled: resume can no longer send it.
        if report.cancelled:
            line = _("Campaign {campaign} (cancelled); election day {day}; transport: {transport}.")
        elif report.paused:
            line = _("Campaign {campaign} (paused); election day {day}; transport: {transport}.")
        else:
            line = _("Campaign {campaign}; election day {day}; transport: {transport}.")
        # The stored label stays as it is (--json, the worker's refusal); the outbox is named in words.
        transport = _("outbox") if report.transport == "outbox" else report.transport
        click.echo("\n" + line.format(campaign=report.campaign, day=format_day(report.election_day),
                                       transport=transport))
    else:
        click.echo(_("Campaign {campaign}: not scheduled.").format(campaign=report.campaign))
    click.echo(_("Contacts: {counts}.").format(
        counts=", ".join(f"{n} {_contact_status(s)}" for s, n in contact_counts.items())))
    if report.worker_running and report.worker_heartbeat is None:
        click.echo(_("Worker: running (pid {pid}, starting).").format(pid=report.worker_pid))
    elif report.worker_running:
        click.echo(_("Worker: running (pid {pid}, last seen {moment}).").format(
            pid=report.worker_pid, moment=format_moment(report.worker_heartbeat, tz, seconds=True)))
    elif report.worker_heartbeat:
        click.echo(_("Worker: not running (last seen {moment}).").format(
            moment=format_moment(report.worker_heartbeat, tz)))
    else:
        click.echo(_("Worker: has never run."))
    for w in report.warnings:
        click.secho(_("Warning: {warning}").format(warning=w), fg="yellow", err=True)


@cli.command(short_help="Show per mail its moment, state and counts.")
@campaign_option
@json_option
@click.pass_obj
@engine_errors
def status(state: State, campaign_name: str | None, as_json: bool) -> None:
    """Per mail: planned moment, state and counts; the transport; the worker."""
    _print_status(state.project(campaign_name), as_json=as_json)


@cli.command(short_help="Run the whole series on a virtual clock.")
@plan_options
@click.option("--out", type=FilePath(file_okay=False, path_type=Path), default=None,
              help="Folder for the simulated messages (default: $CAMPAIGN_HOME/simulation/<campaign>).")
@click.option("--rate", type=RATE, default=None, help="Messages per minute (default: the settings').")
@click.pass_obj
@engine_errors
def simulate(state: State, campaign_name: str | None, start: dt.datetime | None, election_date: dt.datetime | None,
             out: Path | None, rate: int | None) -> None:
    """Run the whole series for the current contacts on a virtual clock; nothing is sent."""
    from mailer.i18n import format_moment, shorten
    from mailer.simulate import simulate as run_simulation

    project = state.project(campaign_name)
    out = out or project.simulation
    with Progress(_("Simulating")) as progress:
        result = run_simulation(project, out=out, start=_date(start), election_date=_date(election_date),
                                rate_per_minute=rate, progress=progress)
    tz = project.load_campaign().settings.schedule.timezone
    rows = [[m.number, shorten(m.theme, 40), format_moment(m.starts, tz), format_moment(m.finishes, tz), m.messages]
            for m in result.mails]
    click.echo(table(rows, ["#", _("theme"), _("first message"), _("last message"), _("messages")]))
    click.echo("\n" + _("Simulated {messages} messages for {contacts} contact(s) from {source}, on {plan}, at "
                         "{rate}/min.").format(messages=sum(m.messages for m in result.mails),
                                               contacts=result.contacts, source=result.contact_source,
                                               plan=result.plan_source, rate=result.rate_per_minute))
    if result.skipped:
        click.echo(_("Skipped {count} message(s) that the ledger records as sent through a mail server "
                     "already.").format(count=result.skipped))
    click.echo(_("Messages and timeline: {out} (timeline.csv). Nothing was sent or recorded as delivered.").format(
        out=result.out))


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
    from mailer.i18n import format_moment

    tz = project.load_campaign().settings.schedule.timezone
    with Progress(_("Sending")) as progress:
        w = Worker(project, clock=now, rate_per_minute=rate, connections=connections,
                   progress=lambda mail, done, total: progress(done, total, _("Mail {number}").format(number=mail)),
                   on_error=lambda message: click.secho(
                       _("{moment} {message}; trying again later").format(
                           moment=format_moment(now(), tz, seconds=True), message=message), fg="yellow", err=True))

        def stop(signum: int, frame: Any) -> None:
            w.stop.set()
            w.wake.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        # Commands that change the schedule or the contacts wake the worker with SIGUSR1.
        signal.signal(signal.SIGUSR1, lambda signum, frame: w.wake.set())

        def started() -> None:
            click.echo(_("Worker started for {campaign} (transport {transport}, {rate}/min); SIGTERM or Ctrl-C stops "
                         "it between two messages.").format(campaign=project.campaign_name,
                                                            transport=w.config.label, rate=w.rate), err=True)

        # Said only once the lock is held and the transport accepted: a refused worker never started.
        stats = w.run(once=once, started=None if once else started)
    if w.config.kind == "outbox":
        # Nothing was delivered: the messages are files in the outbox.
        click.echo(_("Wrote {count} message(s) to the outbox ({outbox}); nothing left this machine and none was "
                     "delivered. Failed {failed}. To send for real, set CAMPAIGN_SMTP_URL and run `campaign schedule "
                     "--switch-transport`.").format(count=stats.sent, outbox=project.outbox, failed=stats.failed))
    else:
        click.echo(_("Sent {sent}, deferred {deferred} (4xx, retried later), failed {failed}, unknown {unknown}; "
                     "{resent} resent after an interrupted run, {resent_unknown} sent again after an answer that "
                     "never came.").format(sent=stats.sent, deferred=stats.deferred, failed=stats.failed,
                                           unknown=stats.unknown, resent=stats.resent,
                                           resent_unknown=stats.resent_unknown))
    for n in stats.held:
        click.secho(_("Held: mail {number} changed after it was approved; check it, then `campaign approve --mail "
                      "{number}`.").format(number=n), fg="yellow", err=True)
    if stats.throttled:
        click.secho(_("The mail server asked to slow down {count} time(s) ({reason}); those messages wait in the queue "
                      "without using an attempt.").format(count=stats.throttled, reason=stats.last_error),
                    fg="yellow", err=True)
    if stats.capped_until is not None:
        click.secho(_("The daily limit was reached ([delivery] max_per_day in settings.toml); the rest goes from about "
                      "{moment} on.").format(moment=format_moment(stats.capped_until, tz)), fg="yellow", err=True)


@cli.command("send-test", short_help="Send test mails now, marked [TEST].")
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
        raise click.BadParameter(_("a mail number or 'all'"), param_hint="--mail")
    project = state.project(campaign_name)
    sent = send_tests(project, to=list(to) or None, mails=None if mail == "all" else [int(mail)],
                      contact=contact, now=now())
    for s in sent:
        if s.left_machine:
            click.echo(_("Mail {number} to {recipient}: accepted by {where}").format(
                number=s.mail, recipient=s.recipient, where=s.where))
        else:
            click.echo(_("Mail {number} to {recipient}: written to {where}").format(
                number=s.mail, recipient=s.recipient, where=s.where))
    n = len(sent)
    if sent and sent[0].left_machine:
        click.echo(ngettext("The mail server {server} accepted {count} test mail; none counts as a delivery.",
                            "The mail server {server} accepted {count} test mails; none counts as a delivery.",
                            n).format(server=sent[0].transport, count=n))
    elif sent:
        click.echo(ngettext("Wrote {count} test mail to the outbox ({folder}); nothing left this machine. Set "
                            "CAMPAIGN_SMTP_URL to send it for real.",
                            "Wrote {count} test mails to the outbox ({folder}); nothing left this machine. Set "
                            "CAMPAIGN_SMTP_URL to send them for real.", n).format(
                                count=n, folder=Path(sent[0].where).parent))


# --- checks and preview -----------------------------------------------------------------------

@cli.command(short_help="Check every mail before sending.")
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
            click.echo(table([[_level(f.level), f.mail or "-", f.message] for f in findings],
                             [_("level"), _("mail"), _("finding")]))
        n_warn = len(findings) - len(errors)
        click.echo("\n" + _("{errors} error(s), {warnings} warning(s).").format(errors=len(errors), warnings=n_warn)
                   if findings else _("All checks pass."))
    if errors:
        sys.exit(1)


@cli.command(short_help="Show every mail in the browser, with checks.")
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
        click.echo(_("Wrote {count} files to {out}; open {index}.").format(count=len(files), out=out,
                                                                           index=out / 'index.html'))
        warn_sender(project.deployment().problems)
        return
    if out:
        raise click.UsageError(_("--out goes with --no-serve"))
    try:
        server = PreviewServer(project, port=port, contact=contact)
    except OSError as exc:
        raise click.ClickException(_("cannot listen on 127.0.0.1:{port}: {reason} (try --port 0)").format(
            port=port, reason=exc.strerror)) from None
    click.echo(_("Preview of {campaign} at {url} (Ctrl-C stops it). It rebuilds and reloads when a content file, "
                 "template or setting changes.").format(campaign=project.campaign_name, url=server.url))
    warn_sender(project.deployment().problems)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()


# --- a series for the next election -----------------------------------------------------------

@cli.command("new", short_help="Write a campaign for another election.")
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
        raise click.UsageError(_("give --checklist FILE (a .docx, .pdf, .md or .txt) or --from-campaign BASE"))
    if election_name is not None and (not election_name.strip() or not election_name.isprintable()):
        raise click.BadParameter(_("give the election's name as a line of text"), param_hint="--election-name")
    project = state.project()
    result = new_campaign(project.root, name, election_day=election_day.date(), election_name=election_name,
                          checklist=checklist, base=base, force=force)
    if as_json:
        echo_json(result.as_dict())
        return
    rows = [[m.number, m.file, m.subject, _("draft") if m.draft else ""] for m in result.mails]
    click.echo(table(rows, ["#", _("file"), _("subject"), _("state")]))
    click.echo("\n" + _("Wrote {folder} from {source}: {count} mail(s).").format(
        folder=result.folder, source=result.source, count=len(result.mails)))
    if result.review:
        click.echo("\n" + _("A person must look at these:"))
        for line in result.review:
            click.echo(f"  - {line}")
    if any(m.draft for m in result.mails):
        click.echo("\n" + _("Next: edit the mails, then `campaign preview --campaign {name}` and `campaign check "
                             "--campaign {name}`.").format(name=name))
    else:
        click.echo("\n" + _("Next: `campaign preview --campaign {name}`, `campaign check --campaign {name}`, then "
                             "`campaign plan --campaign {name}`.").format(name=name))
