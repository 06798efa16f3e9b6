"""``campaign simulate``: the whole series for the current contacts on a virtual clock.

Writes each message as it would be sent, plus a timeline, into a folder of its own;
nothing is recorded as delivered and nothing leaves the machine.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import files, store
from .i18n import _
from .contacts import audience, source_label
from .errors import ContactsError, OutputError
from .message import build_message
from .personalise import personalise
from .plan import Plan, PlannedSend, make_plan, send_moments
from .project import Project
from .render import Renderer
from .schedule import get_plan


@dataclass(frozen=True)
class SimulatedMail:
    number: int
    theme: str
    starts: dt.datetime
    finishes: dt.datetime
    messages: int


@dataclass(frozen=True)
class Simulation:
    out: Path
    contacts: int
    contact_source: str
    plan_source: str
    mails: tuple[SimulatedMail, ...]
    timeline: Path
    rate_per_minute: int
    # (contact, mail) pairs left out because the ledger records them as sent for this campaign
    skipped: int = 0


def simulated_name(index: int, contact_id: int | None) -> str:
    """``00001-c17.eml``: the order of sending, then whose message it is (by contact id, not address),
    so that erasure finds a contact's files by name; an example contact has no id."""
    return f"{index + 1:05d}.eml" if contact_id is None else f"{index + 1:05d}-c{contact_id}.eml"


def _stored_sends(project: Project) -> list[PlannedSend] | None:
    if not project.db_exists:
        return None
    conn = project.connect()
    try:
        plan = get_plan(conn, project.campaign_name)
        if plan is None or plan.cancelled:
            return None
        return [PlannedSend(mail=r["mail"], theme=r["theme"], at=store.parse_iso(r["due_at"]))
                for r in conn.execute("SELECT * FROM schedule WHERE campaign = ? AND state != 'cancelled' ORDER BY mail",
                                      (project.campaign_name,))]
    finally:
        conn.close()


def _sent_pairs(project: Project, campaign: str) -> set[tuple[int, int]]:
    """(mail, contact id) of every message the ledger records as sent through a mail server for
    this campaign: the worker never sends those again, so neither does the simulation. One only
    written to the outbox reached no one, and is sent for real after a switch of transport."""
    if not project.db_exists:
        return set()
    conn = project.connect()
    try:
        return {(r[0], r[1]) for r in conn.execute(
            "SELECT mail, contact_id FROM ledger WHERE campaign = ? AND state = 'sent' AND transport != 'outbox'",
            (campaign,))}
    finally:
        conn.close()


# What a simulation writes into its folder, and nothing else: the only names it ever removes.
_SIMULATED_FOLDER = re.compile(r"\d{2}-[^/]+")
_SIMULATED_FILE = re.compile(r"\d{5}(-c\d+)?\.eml")


def _recorded_simulation(project: Project, out: Path) -> bool:
    """Whether ``out`` is the default simulation folder or one recorded as a simulation's."""
    resolved = out.resolve()
    if resolved == project.simulation.resolve():
        return True
    if not project.db_exists:
        return False
    with project.db() as conn:
        return conn.execute("SELECT 1 FROM written WHERE path = ? AND kind = 'simulation'",
                            (str(resolved),)).fetchone() is not None


def _clear_output(project: Project, out: Path) -> None:
    """Remove what an earlier simulation wrote into ``out``, and only that; refuse any other
    folder that holds something, so that ``--out ~/Documents`` never deletes a person's files.

    Only a folder the tool can prove it made (the default one, or one recorded in ``written``)
    is cleared, and only of the names a simulation writes: ``timeline.csv``, ``NN-slug/NNNNN*.eml``,
    and those ``NN-slug`` folders once empty. Anything else in it stays.
    """
    if out.is_symlink():
        raise OutputError(_("--out {out} is a symbolic link; the simulation is not written through it: choose a "
                            "new or empty folder (not a link)").format(out=out))
    if not out.exists():
        return
    if not out.is_dir():
        raise OutputError(_("--out {out} exists and is not a folder; choose a new or empty folder").format(out=out))
    if not any(out.iterdir()):
        return
    if not _recorded_simulation(project, out):
        raise OutputError(_("--out {out} holds files and is not a folder that an earlier simulation wrote, so "
                            "nothing in it was touched; choose a new or empty folder").format(out=out))
    timeline = out / "timeline.csv"
    if timeline.is_file() and not timeline.is_symlink():
        timeline.unlink()
    for sub in out.iterdir():
        if not _SIMULATED_FOLDER.fullmatch(sub.name) or sub.is_symlink() or not sub.is_dir():
            continue
        for path in sub.iterdir():
            if _SIMULATED_FILE.fullmatch(path.name) and not path.is_symlink() and path.is_file():
                path.unlink()
        if not any(sub.iterdir()):
            sub.rmdir()


def _refuse_unsendable(contacts: list, out: Path) -> None:
    """Before anything is deleted: every contact's values must be able to go into a message."""
    from .checks import check_contacts

    problems = [f.message for f in check_contacts(contacts)]
    if not problems:
        return
    if out.exists():
        raise ContactsError(_("nothing was simulated and the previous simulation in {out} is kept: these contacts "
                              "cannot be sent (`campaign check` lists them too)").format(out=out), problems)
    raise ContactsError(_("nothing was simulated: these contacts cannot be sent (`campaign check` lists them too)"),
                        problems)


def simulate(
    project: Project,
    *,
    out: Path,
    start: dt.date | None = None,
    election_date: dt.date | None = None,
    rate_per_minute: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Simulation:
    """Simulate the stored schedule, or (when none is stored) the plan from the campaign policy."""
    campaign = project.load_campaign()
    settings = campaign.settings
    policy = settings.schedule
    deployment = project.deployment()
    rate = rate_per_minute or deployment.rate_per_minute or policy.rate_per_minute

    sends = None if (start or election_date) else _stored_sends(project)
    plan_source = _("the stored schedule")
    if sends is None:
        # A virtual clock that stands just before the series, so that a past election still simulates.
        election = election_date or settings.election_day
        virtual_now = dt.datetime.combine(
            (start or election) - dt.timedelta(days=policy.cadence_days * len(campaign.mails) + 60),
            dt.time(0), tzinfo=dt.timezone.utc)
        plan: Plan = make_plan(campaign=settings.slug, themes=[m.theme for m in campaign.mails], policy=policy,
                               election_day=settings.election_day, now=virtual_now, start=start,
                               election_override=election_date)
        sends = list(plan.sends)
        plan_source = _("the campaign's policy (not scheduled yet)")

    contacts, source = audience(project)
    if source != "imported contacts":
        source = _("{source} (no contacts imported)").format(source=source)
    else:
        source = source_label(source)
    sent = _sent_pairs(project, settings.slug)
    recipients = {send.mail: [c for c in contacts if (send.mail, c.id) not in sent] for send in sends}
    skipped = sum(len(contacts) - len(r) for r in recipients.values())

    renderer = Renderer(templates=project.templates, campaign=campaign, deployment=deployment,
                        cache=project.render_cache)
    _refuse_unsendable(contacts, out)
    _clear_output(project, out)
    # Recorded before writing, so that `contacts forget` finds this folder even after a crash, and
    # so that a later simulation may clear it (example contacts too: the folder is still ours).
    with project.db() as conn:
        store.record_simulation(conn, out)
    files.private_dir(out.parent, tighten_existing=project.owns_folder(out.parent))
    files.private_dir(out)
    timeline = out / "timeline.csv"
    total = sum(len(r) for r in recipients.values())
    results = []
    written = 0
    with files.open_private_text(timeline, newline="") as fh:
        writer = csv.writer(fh)
        # contact_id says whose each line is (empty for the example contacts): erasure drops by it,
        # so that heading is never translated; the others are for the person who opens the file.
        writer.writerow([_("moment"), _("mail"), _("theme"), _("contact"), _("party"), _("municipality"), _("file"),
                         "contact_id"])
        for send in sends:
            rendered = renderer.render(campaign.mail(send.mail))
            folder = out / f"{send.mail:02d}-{rendered.slug}"
            files.private_dir(folder)
            moments = send_moments(send.at_utc, len(recipients[send.mail]), rate_per_minute=rate, policy=policy,
                                   max_per_day=deployment.max_per_day)
            first = last = send.at
            for i, (contact, moment) in enumerate(zip(recipients[send.mail], moments)):
                if i == 0:
                    first = moment
                last = moment
                envelope = build_message(personalise(rendered, contact, settings=settings),
                                         sender=deployment.sender, campaign=settings, now=moment)
                name = simulated_name(i, contact.id)
                files.write_private(folder / name, envelope.data, atomic=False)
                writer.writerow(files.spreadsheet_row([
                    moment.isoformat(timespec="seconds"), send.mail, send.theme, contact.email, contact.party,
                    contact.municipality, f"{folder.name}/{name}", "" if contact.id is None else contact.id]))
                written += 1
                if progress:
                    progress(written, total)
            results.append(SimulatedMail(number=send.mail, theme=send.theme, starts=first, finishes=last,
                                         messages=len(recipients[send.mail])))
    return Simulation(out=out, contacts=len(contacts), contact_source=source, plan_source=plan_source,
                      mails=tuple(results), timeline=timeline, rate_per_minute=rate, skipped=skipped)
