"""The ``campaign`` command: a thin click layer over the :mod:`mailer` engine.

Each command parses its options, calls one engine function, prints the result and turns
engine errors into click errors (exit 1; usage errors exit 2). Engine modules are imported
inside the commands so that ``campaign --help`` answers at once.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import sys
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
    """Turn the engine's errors into ``Error: ...`` and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from mailer.errors import CampaignError

        try:
            return fn(*args, **kwargs)
        except CampaignError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


def campaign_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--campaign", "campaign_name", metavar="NAME", default=None,
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


def warn_sender(problems: tuple[str, ...] | list[str]) -> None:
    if problems:
        click.secho("Sender not configured: the mails show example values. Sending beyond the outbox "
                    "is refused until $CAMPAIGN_HOME/settings.toml holds the real sender.", fg="yellow", err=True)
        for p in problems:
            click.secho(f"  - {p}", fg="yellow", err=True)


@click.group(context_settings=CONTEXT_SETTINGS)
@click.option("--project", "root", type=click.Path(file_okay=False, path_type=Path), default=None,
              envvar="CAMPAIGN_PROJECT", help="Project folder with campaigns/ and templates/ (default: current folder).")
@click.option("--campaign", "campaign", metavar="NAME", default="gr2026", show_default=True,
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
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
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
                       "html_bytes": m.html_bytes, "findings": [f.as_dict() for f in m.findings]} for m in result.mails],
        })
    else:
        rows = [[m.number, m.theme[:40], m.subject, f"{m.html_bytes / 1024:.1f}",
                 "; ".join(f"{f.level}: {f.message}" for f in m.findings) or "ok"] for m in result.mails]
        click.echo(table(rows, ["#", "theme", "subject", "HTML KB", "problems"]))
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
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Show what would change; store nothing.")
@click.option("--skip-invalid", is_flag=True, help="Store the valid rows and list the refused ones.")
@click.pass_obj
@engine_errors
def contacts_import(state: State, file: Path, dry_run: bool, skip_invalid: bool) -> None:
    """Import a CSV contact list (comma or semicolon, UTF-8 or Windows-1252).

    All or nothing: if any row is wrong, nothing is stored and every problem is listed,
    unless --skip-invalid is given. Re-importing updates contacts by address; opt-outs stay.
    """
    from mailer.contacts import import_contacts

    project = state.project()
    settings = project.load_campaign().settings
    conn = project.connect()
    try:
        result = import_contacts(conn, file, default_basis=settings.default_basis, dry_run=dry_run,
                                 skip_invalid=skip_invalid)
    finally:
        conn.close()
    verb = "Would import" if dry_run else "Imported"
    click.echo(f"{verb} {file} ({result.encoding}, delimiter {result.delimiter!r}): "
               f"{result.added} added, {result.updated} updated, {result.unchanged} unchanged, "
               f"{result.kept_status} kept as opted out or bounced, {result.suppressed} refused as erased, "
               f"{len(result.refused)} invalid.")
    for problem in result.refused:
        click.secho(f"  refused: {problem}", fg="yellow", err=True)
    if dry_run:
        click.echo("Dry run: nothing was stored. Run again without --dry-run to import.")


@contacts.command("list")
@click.option("--status", type=click.Choice(["active", "unsubscribed", "bounced", "removed"]), default=None,
              help="Only contacts with this status.")
@json_option
@click.pass_obj
@engine_errors
def contacts_list(state: State, status: str | None, as_json: bool) -> None:
    """List contacts as a table, or as JSON."""
    from mailer.contacts import list_contacts

    conn = state.project().connect()
    try:
        rows = list_contacts(conn, status=status)
    finally:
        conn.close()
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

    conn = state.project().connect()
    try:
        info = show_contact(conn, email)
    finally:
        conn.close()
    if as_json:
        echo_json(info)
        return
    sends = info.pop("sends")
    extra = info.pop("extra")
    width = max(len(k) for k in list(info) + list(extra))
    for key, value in info.items():
        click.echo(f"{key.ljust(width)}  {value if value not in (None, '') else '-'}")
    for key, value in extra.items():
        click.echo(f"{key.ljust(width)}  {value}  (extra column)")
    click.echo("")
    if sends:
        click.echo(table([[s["campaign"], s["mail"], s["state"], s["sent_at"] or "", s["error"]] for s in sends],
                         ["campaign", "mail", "state", "sent at", "error"]))
    else:
        click.echo("Nothing sent to this contact yet.")


def _addresses(emails: tuple[str, ...], from_file: Path | None) -> list[str]:
    from mailer.contacts import read_address_list

    found = list(emails)
    if from_file:
        found += read_address_list(from_file)
    if not found:
        raise click.UsageError("name at least one address, or --from FILE")
    return found


@contacts.command("unsubscribe")
@click.argument("emails", nargs=-1)
@click.option("--from", "from_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A file of addresses (one per line, or a CSV with an e-mail column).")
@click.option("--reason", default="opt-out", show_default=True, help="Why: shown with the opt-out.")
@click.pass_obj
@engine_errors
def contacts_unsubscribe(state: State, emails: tuple[str, ...], from_file: Path | None, reason: str) -> None:
    """Record opt-outs: no later mail goes to these addresses."""
    from mailer.contacts import mask, set_status

    addresses = _addresses(emails, from_file)
    conn = state.project().connect()
    try:
        changed, unknown = set_status(conn, addresses, status="unsubscribed", reason=reason)
    finally:
        conn.close()
    click.echo(f"Unsubscribed {changed} contact{'s' if changed != 1 else ''}.")
    for address in unknown:
        click.secho(f"  not a contact: {mask(address)}", fg="yellow", err=True)


@contacts.command("remove")
@click.argument("emails", nargs=-1, required=True)
@click.pass_obj
@engine_errors
def contacts_remove(state: State, emails: tuple[str, ...]) -> None:
    """Deactivate contacts (staff decision; a later import of the address reactivates it)."""
    from mailer.contacts import mask, set_status

    conn = state.project().connect()
    try:
        changed, unknown = set_status(conn, emails, status="removed", reason="removed by staff")
    finally:
        conn.close()
    click.echo(f"Removed {changed} contact{'s' if changed != 1 else ''}.")
    for address in unknown:
        click.secho(f"  not a contact: {mask(address)}", fg="yellow", err=True)
    if unknown:
        raise click.ClickException(f"{len(unknown)} address(es) not found")


@contacts.command("forget")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
@engine_errors
def contacts_forget(state: State, email: str, yes: bool) -> None:
    """Erase a person on request: contact, ledger and outbox files; a hash stops re-import."""
    from mailer.contacts import forget_contact, mask

    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError("erasure cannot be undone: confirm on a terminal or pass --yes")
        click.confirm(f"Erase every trace of {mask(email)}? This cannot be undone", abort=True)
    project = state.project()
    conn = project.connect()
    try:
        removed = forget_contact(conn, email, outbox=project.outbox)
    finally:
        conn.close()
    click.echo(f"Erased {mask(email)}: contact and send records deleted, {removed} outbox file(s) removed; "
               "a one-way hash keeps the address from being imported again.")
