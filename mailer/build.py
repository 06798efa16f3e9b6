"""``campaign build``: every mail rendered and written out, for one contact, with its checks."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path

from .i18n import _
from . import checks, files, store
from .contacts import Contact, audience, email_key, example_contacts, get_contact, mask, normalise_address
from .errors import UnknownContact
from .message import build_message
from .personalise import personalise
from .project import Project
from .render import Renderer


@dataclass(frozen=True)
class BuiltMail:
    number: int
    theme: str
    subject: str
    slug: str
    html_bytes: int
    findings: tuple[checks.Finding, ...]
    files: tuple[Path, ...]
    draft: bool = False  # still draft = true: `schedule` refuses it


@dataclass(frozen=True)
class BuildResult:
    out: Path
    mails: tuple[BuiltMail, ...]
    contact: str  # masked
    contact_source: str
    render_seconds: float
    sender_problems: tuple[str, ...]


def choose_contact(project: Project, address: str | None) -> tuple[Contact, str]:
    """The contact to personalise for: the asked one (imported or example), else the first of the audience."""
    if address is None:
        contacts, source = audience(project)
        return contacts[0], source
    # Typed by a person: the stored form (an IDN domain in ASCII), as import made it.
    address = normalise_address(address)
    if project.db_exists:
        with project.db() as conn:
            try:
                return get_contact(conn, address), "imported contacts"
            except UnknownContact:
                pass
    # The example list, when there is one: with imported contacts it may well be gone.
    examples = example_contacts(project.root) if (project.root / "contacts" / "example.csv").exists() else []
    for c in examples:
        if c.key == email_key(address):
            return c, "contacts/example.csv"
    raise UnknownContact(_("no contact {address} among the imported contacts or in contacts/example.csv").format(
        address=mask(address)))


def build(project: Project, *, out: Path, contact: str | None = None, now: dt.datetime) -> BuildResult:
    """Render all mails and write ``NN-slug.{mjml,html,txt,eml}`` into ``out``."""
    campaign = project.load_campaign()
    deployment = project.deployment()
    renderer = Renderer(templates=project.templates, campaign=campaign, deployment=deployment,
                        cache=project.render_cache)
    chosen, source = choose_contact(project, contact)
    start = time.perf_counter()
    rendered = renderer.render_all()
    seconds = time.perf_counter() - start
    files.private_dir(out, tighten_existing=project.owns_folder(out))
    made = []
    for mail in rendered:
        personal = personalise(mail, chosen, settings=campaign.settings)
        envelope = build_message(personal, sender=deployment.sender, campaign=campaign.settings, now=now)
        stem = out / mail.slug
        contents = ((".mjml", mail.mjml), (".html", personal.html), (".txt", personal.text), (".eml", envelope.data))
        made.append((mail, personal, envelope, [(stem.with_suffix(suffix), data) for suffix, data in contents]))
    if chosen.id is not None:
        # An imported contact's data: recorded before writing, so that `contacts forget` finds every file.
        with project.db() as conn:
            store.record_files(conn, [path for *_, written in made for path, _ in written], contact_id=chosen.id)
    built = []
    drafts = {m.number for m in campaign.mails if m.draft}
    for mail, personal, envelope, written in made:
        for path, data in written:
            files.write_private(path, data)
        built.append(BuiltMail(
            number=mail.number, theme=mail.theme, subject=mail.subject, slug=mail.slug,
            html_bytes=len(personal.html.encode("utf-8")),
            findings=tuple(checks.check_mail(mail, personal, envelope, campaign=campaign.settings)),
            files=tuple(path for path, _ in written),
            draft=mail.number in drafts,
        ))
    return BuildResult(
        out=out, mails=tuple(built), contact=chosen.masked, contact_source=source,
        render_seconds=seconds, sender_problems=deployment.problems,
    )
