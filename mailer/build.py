"""``campaign build``: every mail rendered and written out, for one contact, with its checks."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path

from . import checks
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
    for c in example_contacts(project.root):
        if c.key == email_key(address):
            return c, "contacts/example.csv"
    raise UnknownContact(f"no contact {mask(address)} among the imported contacts or in contacts/example.csv")


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
    out.mkdir(parents=True, exist_ok=True)
    built = []
    for mail in rendered:
        personal = personalise(mail, chosen, settings=campaign.settings)
        envelope = build_message(personal, sender=deployment.sender, campaign=campaign.settings, now=now)
        stem = out / mail.slug
        files = []
        for suffix, data in ((".mjml", mail.mjml), (".html", personal.html), (".txt", personal.text)):
            path = stem.with_suffix(suffix)
            path.write_text(data, encoding="utf-8")
            files.append(path)
        eml = stem.with_suffix(".eml")
        eml.write_bytes(envelope.data)
        files.append(eml)
        built.append(BuiltMail(
            number=mail.number, theme=mail.theme, subject=mail.subject, slug=mail.slug,
            html_bytes=len(personal.html.encode("utf-8")),
            findings=tuple(checks.check_mail(mail, personal, envelope, campaign=campaign.settings)),
            files=tuple(files),
        ))
    return BuildResult(
        out=out, mails=tuple(built), contact=chosen.masked, contact_source=source,
        render_seconds=seconds, sender_problems=deployment.problems,
    )
