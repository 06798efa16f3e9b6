"""One engine function per state-changing command: the CLI calls these and prints the result."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from . import checks
from .i18n import _
from .contacts import audience, count_contacts
from .errors import PlanError, SenderNotConfigured, StateError
from .message import build_message
from .personalise import personalise
from .plan import Plan, SendEstimate, estimate, make_plan
from .project import Project
from .render import RenderedMail, Renderer
from .schedule import ReplannedMail, completed_mails, fingerprint, get_plan, store_schedule, switch_transport
from .transport import TransportConfig, transport_config


@dataclass(frozen=True)
class PlanReport:
    plan: Plan
    estimates: tuple[SendEstimate, ...]
    contacts: int
    rate_per_minute: int
    max_per_day: int | None = None


def render_all(project: Project) -> list[RenderedMail]:
    campaign = project.load_campaign()
    return Renderer(templates=project.templates, campaign=campaign, deployment=project.deployment(),
                    cache=project.render_cache).render_all()


def fingerprints(project: Project) -> dict[int, str]:
    return {m.number: fingerprint(m) for m in render_all(project)}


def plan_campaign(project: Project, *, now: dt.datetime, start: dt.date | None = None,
                  election_date: dt.date | None = None, rate_per_minute: int | None = None) -> PlanReport:
    """The send moments from the campaign's policy, and how long each send takes."""
    campaign = project.load_campaign()
    settings = campaign.settings
    plan = make_plan(campaign=settings.slug, themes=[m.theme for m in campaign.mails], policy=settings.schedule,
                     election_day=settings.election_day, now=now, start=start, election_override=election_date)
    active = 0
    if project.db_exists:
        conn = project.connect()
        try:
            active = count_contacts(conn)["active"]
        finally:
            conn.close()
    deployment = project.deployment()
    rate = rate_per_minute or deployment.rate_per_minute or settings.schedule.rate_per_minute
    return PlanReport(plan=plan, estimates=tuple(estimate(plan, contacts=active, rate_per_minute=rate,
                                                          policy=settings.schedule, max_per_day=deployment.max_per_day)),
                      contacts=active, rate_per_minute=rate, max_per_day=deployment.max_per_day)


def campaign_findings(project: Project) -> list[checks.Finding]:
    """``campaign check``-level findings for every mail, as the first imported contact (else the first
    example) gets it."""
    campaign = project.load_campaign()
    deployment = project.deployment()
    # As `build` chooses: the first imported contact, else the first example (needed only then).
    contact = audience(project, limit=1)[0][0]
    findings: list[checks.Finding] = []
    for mail in Renderer(templates=project.templates, campaign=campaign, deployment=deployment,
                        cache=project.render_cache).render_all():
        personal = personalise(mail, contact, settings=campaign.settings)
        envelope = build_message(personal, sender=deployment.sender, campaign=campaign.settings,
                                 now=dt.datetime.now(dt.timezone.utc))
        findings += checks.check_mail(mail, personal, envelope, campaign=campaign.settings)
    findings += checks.check_drafts(campaign.mails)
    for problem in deployment.problems:
        findings.append(checks.Finding("warning", None, _("sender not configured: {problem}").format(problem=problem)))
    if project.db_exists:
        from . import store
        from .contacts import active_contacts

        conn = project.connect()
        try:
            findings += checks.check_contacts(active_contacts(conn))
            findings += _test_recipient_findings(conn, deployment.test_recipients)
            plan = get_plan(conn, project.campaign_name)
            if plan is not None and not plan.cancelled:
                rows = [{"mail": r["mail"], "due_at": store.parse_iso(r["due_at"]), "outside_window": r["outside_window"]}
                        for r in conn.execute("SELECT * FROM schedule WHERE campaign = ? AND state IN ('scheduled')",
                                              (project.campaign_name,))]
                findings += checks.check_schedule(rows, policy=campaign.settings.schedule,
                                                  election_day=plan.election_day)
        finally:
            conn.close()
    return findings


def _test_recipient_findings(conn, recipients: tuple[str, ...]) -> list[checks.Finding]:
    """An error for each ``[test] recipients`` address that ``send-test`` would refuse: one that
    reaches an imported contact's mailbox or is on the suppression list (the same guard)."""
    from .contacts import mask, normalise_address
    from .errors import InvalidAddress
    from .guard import recipient_problem

    findings = []
    for typed in recipients:
        try:
            normal = normalise_address(typed)
        except InvalidAddress as exc:
            findings.append(checks.Finding("error", None, f"[test] recipients in settings.toml: {exc}"))
            continue
        problem = recipient_problem(conn, typed, normal)
        if problem == "contact":
            findings.append(checks.Finding(
                "error", None, f"[test] recipients in settings.toml: {mask(normal)} reaches the mailbox of an "
                "imported contact, and test mails never go to contacts; name your own address instead"))
        elif problem == "suppressed":
            findings.append(checks.Finding(
                "error", None, f"[test] recipients in settings.toml: {mask(normal)} is on the suppression list "
                "(erased or opted out), and test mails never go there; name your own address instead"))
    return findings


def _send_gate(project: Project, config: TransportConfig) -> None:
    """What must hold before mail may be planned to go out through ``config``."""
    errors = [f for f in campaign_findings(project) if f.level == "error"]
    if errors:
        listed = "\n".join(f"  mail {f.mail}: {f.message}" if f.mail else f"  {f.message}" for f in errors)
        raise PlanError(f"refused: `campaign check` finds errors:\n{listed}")
    if config.kind != "outbox" and not project.deployment().configured:
        raise SenderNotConfigured(
            f"refused: the transport is {config.label} but the sender is not configured "
            f"({'; '.join(project.deployment().problems)})")


def schedule_campaign(project: Project, report: PlanReport, *, now: dt.datetime) -> bool:
    """Store the plan behind the send gate; returns False when the same plan was stored already."""
    config = transport_config()
    _send_gate(project, config)
    conn = project.connect()
    try:
        return store_schedule(conn, report.plan, fingerprints=fingerprints(project), transport=config.label, now=now)
    finally:
        conn.close()


def stored_plan_exists(project: Project) -> bool:
    if not project.db_exists:
        return False
    conn = project.connect()
    try:
        plan = get_plan(conn, project.campaign_name)
        return plan is not None and not plan.cancelled
    finally:
        conn.close()


def kept_as_sent(project: Project) -> list[int]:
    """Mails that a new schedule keeps as sent: sent completely before the campaign was cancelled
    (through a real transport, when this environment's is one: the outbox reached no one)."""
    if not project.db_exists:
        return []
    conn = project.connect()
    try:
        return completed_mails(conn, project.campaign_name, transport=transport_config().label)
    finally:
        conn.close()


@dataclass(frozen=True)
class TransportSwitch:
    old: str
    new: TransportConfig
    # From the outbox to a real transport: rows written to the outbox that go back to the queue,
    # and mails done only through the outbox that are planned again (see schedule.switch_transport).
    requeued: int = 0
    replanned: tuple[ReplannedMail, ...] = ()

    @property
    def changed(self) -> bool:
        return self.old != self.new.label


def switch_to_current_transport(project: Project, *, now: dt.datetime, check_only: bool = False) -> TransportSwitch:
    """Send the stored plan through this environment's transport (``CAMPAIGN_SMTP_URL``, or the
    outbox without it), keeping its moments; refused once anything went out through a real
    transport. From the outbox, what was written there is sent for real.

    ``check_only`` raises what the switch would raise and changes nothing, so that the CLI can
    ask for confirmation only when the switch would happen.
    """
    config = transport_config()
    if not project.db_exists:
        raise StateError(f"campaign {project.campaign_name} is not scheduled, so it has no transport to switch "
                         "(see `campaign plan` and `campaign schedule`)")
    conn = project.connect()
    try:
        change = switch_transport(conn, project.campaign_name, transport=config.label, now=now, check_only=True)
        if change.old == config.label:
            return TransportSwitch(old=change.old, new=config)
        _send_gate(project, config)
        if not check_only:
            change = switch_transport(conn, project.campaign_name, transport=config.label, now=now)
    finally:
        conn.close()
    return TransportSwitch(old=change.old, new=config, requeued=change.requeued, replanned=change.replanned)
