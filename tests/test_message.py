"""The MIME message: headers, parts, stable ids, and refusal of header injection."""

from __future__ import annotations

import email
from email import policy
from pathlib import Path

import pytest

from mailer.contacts import Contact, example_contacts
from mailer.errors import HeaderError
from mailer.message import build_message, message_id
from mailer.personalise import personalise
from mailer.project import Project
from mailer.render import Renderer
from mailer.settings import load_deployment_settings

from .conftest import FIXED_NOW, ROOT


@pytest.fixture(scope="module")
def setup():
    project = Project.at(ROOT)
    campaign = project.load_campaign()
    deployment = load_deployment_settings(Path("/nonexistent-home"))
    mail = Renderer(templates=project.templates, campaign=campaign, deployment=deployment).render(campaign.mail(3))
    return campaign, deployment, mail


def parse(data: bytes):
    return email.message_from_bytes(data, policy=policy.default)


def test_headers_and_parts(setup):
    campaign, deployment, mail = setup
    contact = example_contacts(ROOT)[1]
    env = build_message(personalise(mail, contact, settings=campaign.settings), sender=deployment.sender,
                        campaign=campaign.settings, now=FIXED_NOW)
    msg = parse(env.data)
    assert msg["From"] == "Leger des Heils <campagne@example.org>"
    assert msg["To"] == "Zoë van den Berg <zoe.vandenberg@example.org>"
    assert msg["Subject"] == mail.subject
    assert msg["Date"] == "Tue, 06 Jan 2026 09:00:00 +0100"  # the campaign time zone, with its offset
    assert msg["Message-ID"].endswith("@example.org>")
    assert msg["List-Unsubscribe"].startswith("<mailto:afmelden@example.org?subject=")
    assert "body=zoe.vandenberg@example.org>" in msg["List-Unsubscribe"]
    assert msg["List-Unsubscribe-Post"] is None  # no https endpoint configured
    assert msg["List-Id"].endswith("<gr2026.checklist.legerdesheils>")
    assert msg.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in msg.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in msg.iter_parts())
    assert "Geachte Zoë van den Berg," in msg.get_body(("plain",)).get_content()
    # The HTML part, encoded from fixed parts and contact values, decodes to exactly the mail.
    personal = personalise(mail, contact, settings=campaign.settings)
    assert personal.html_values
    assert msg.get_body(("html",)).get_content().replace("\r\n", "\n") == personal.html.replace("\r\n", "\n")
    assert all(len(line) <= 76 for line in env.data.split(b"\r\n\r\n", 1)[1].split(b"\r\n"))
    # Every header line fits the RFC 5322 limit.
    head = env.data.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))
    assert b"=?utf-8?q?=3Cmailto" not in head


def test_one_click_header_only_with_an_https_endpoint(setup):
    campaign, deployment, mail = setup
    from dataclasses import replace

    sender = replace(deployment.sender, optout_url="https://www.example.org/afmelden")
    contact = example_contacts(ROOT)[0]
    msg = parse(build_message(personalise(mail, contact, settings=campaign.settings), sender=sender,
                              campaign=campaign.settings, now=FIXED_NOW).data)
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["List-Unsubscribe"].startswith("<https://www.example.org/afmelden?list=")
    assert "<mailto:" in msg["List-Unsubscribe"]


def test_message_id_is_stable_and_distinct():
    a = message_id("gr2026", 1, "Renee.Jansen@example.nl", "example.org")
    assert a == message_id("gr2026", 1, "renee.jansen@example.nl", "example.org")
    assert a != message_id("gr2026", 2, "renee.jansen@example.nl", "example.org")
    assert a != message_id("gr2026", 1, "zoe@example.org", "example.org")


def test_header_injection_is_refused(setup):
    campaign, deployment, mail = setup
    evil = Contact(email="x@example.org", name="Eva\r\nBcc: all@example.org", party="P", municipality="M")
    with pytest.raises(HeaderError, match="line break"):
        build_message(personalise(mail, evil, settings=campaign.settings), sender=deployment.sender,
                      campaign=campaign.settings, now=FIXED_NOW)


def test_test_mail_is_marked(setup):
    campaign, deployment, mail = setup
    contact = example_contacts(ROOT)[0]
    env = build_message(personalise(mail, contact, settings=campaign.settings), sender=deployment.sender,
                        campaign=campaign.settings, now=FIXED_NOW, test=True, to="staf@example.org")
    msg = parse(env.data)
    assert msg["Subject"] == "[TEST] " + mail.subject
    assert msg["To"] == "staf@example.org"
    assert env.recipient == "staf@example.org"
    # The body still shows the chosen contact's personalisation.
    assert "Geachte Renée Jansen," in msg.get_body(("plain",)).get_content()


def test_encoding_round_trips_through_the_email_package(setup):
    from dataclasses import replace as dc_replace

    campaign, deployment, mail = setup
    contact = Contact(email="jan@example.nl", name='De Vries, Jan "JJ"', party="P", municipality="M")
    text = ("Één regel met = tekens en een spatie aan het eind \n"
            + "lang " * 60 + "\n.\n.punt aan het begin\n" + "ë" * 200 + "\n")
    awkward = dc_replace(mail, subject="Zoë, één thema: " + "ü" * 40, html="<p>" + text + "</p>", text=text)
    personal = personalise(awkward, contact, settings=campaign.settings)
    env = build_message(personal, sender=dc_replace(deployment.sender, name="Leger des Heils — Zoë"),
                        campaign=campaign.settings, now=FIXED_NOW)
    msg = parse(env.data)
    assert msg["Subject"] == "Zoë, één thema: " + "ü" * 40
    assert msg["To"].addresses[0].display_name == 'De Vries, Jan "JJ"'
    assert msg["To"].addresses[0].addr_spec == "jan@example.nl"
    assert msg["From"].addresses[0].display_name == "Leger des Heils — Zoë"
    assert msg.get_body(("plain",)).get_content().replace("\r\n", "\n") == text
    assert msg.get_body(("html",)).get_content().replace("\r\n", "\n") == "<p>" + text + "</p>"
    assert all(len(line) <= 998 for line in env.data.split(b"\r\n"))
    assert all(len(line) <= 76 for line in env.data.split(b"\r\n\r\n", 1)[1].split(b"\r\n"))
    assert env.data.isascii()
    assert not msg.defects and not any(p.defects for p in msg.walk())


@pytest.mark.parametrize("name", ["Renée Jansen", ".Punt Voorop", "A" * 90, "Jan = Jansen", "Zoë " * 30, ""])
def test_parts_encoded_from_pieces_decode_to_the_personal_mail(setup, name):
    # Fixed pieces are encoded and dot-stuffed once per mail and joined with each contact's
    # values; decoded and un-stuffed, that must be exactly the mail and the message.
    campaign, deployment, mail = setup
    contact = Contact(email="p@example.nl", name=name, party=".Partij", municipality="Gemeente = Stad")
    personal = personalise(mail, contact, settings=campaign.settings)
    env = build_message(personal, sender=deployment.sender, campaign=campaign.settings, now=FIXED_NOW)
    msg = parse(env.data)
    assert msg.get_body(("plain",)).get_content().replace("\r\n", "\n") == personal.text.replace("\r\n", "\n")
    assert msg.get_body(("html",)).get_content().replace("\r\n", "\n") == personal.html.replace("\r\n", "\n")
    assert env.payload() == env.data.replace(b"\r\n.", b"\r\n..")
    assert all(len(line) <= 76 for line in env.data.split(b"\r\n\r\n", 1)[1].split(b"\r\n"))
