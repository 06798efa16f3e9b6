"""Texts the engine stores in English, shown to a person in the chosen language.

The ledger's errors, a contact's status reason and the inbox's actions and notes are stored (or
given to ``--json``) in English, so that scripts and later runs read the same words whatever the
locale. A person reads them translated here, at display time: each stored form is a pattern with
named parts, and the parts are put into the translated sentence. A text that matches no pattern
(a server's own answer, a reason typed by staff) is shown as it is.

Imported only by the commands that show such texts, not by ``campaign --help``.
"""

from __future__ import annotations

import re

from .i18n import N_, _, ngettext

# (pattern of the stored English text, the sentence to show). The English sentence is the msgid,
# so that English shows exactly what was stored. Parts named ``error`` are stored texts themselves
# (a ledger error inside "gave up after ..."), and are translated in turn.
_STORED: tuple[tuple[str, str], ...] = (
    # the ledger's errors (mailer/deliver.py)
    (r"resent: the previous worker stopped while sending", N_("resent: the previous worker stopped while sending")),
    (r"resent: the answer to the earlier attempt never came",
     N_("resent: the answer to the earlier attempt never came")),
    (r"unknown: the worker stopped before the server answered",
     N_("unknown: the worker stopped before the server answered")),
    (r"held back: the server refused (?P<count>\d+) messages in a row with: (?P<error>.*)",
     N_("held back: the server refused {count} messages in a row with: {error}")),
    (r"gave up after (?P<attempts>\d+) attempts: (?P<error>.*)", N_("gave up after {attempts} attempts: {error}")),
    # unknown outcomes (mailer/transport.py), with what the connection said
    (r"connection lost while the message was handed over: (?P<error>.*)",
     N_("connection lost while the message was handed over: {error}")),
    (r"no answer within (?P<seconds>\d+) s after the message was handed over; the server may have taken it",
     N_("no answer within {seconds} s after the message was handed over; the server may have taken it")),
    (r"the server closed the connection", N_("the server closed the connection")),
    (r"the server's answer is too long", N_("the server's answer is too long")),
    (r"not an SMTP answer: (?P<line>.*)", N_("not an SMTP answer: {line}")),
    # a contact's status reason (mailer/inbox.py, mailer/contacts.py)
    (r"bounced \((?P<code>[^)]*)\), per mail", N_("bounced ({code}), per mail")),
    (r"bounced, per mail", N_("bounced, per mail")),
    (r"soft bounces on (?P<count>\d+) mails in a row, per mail",
     N_("soft bounces on {count} mails in a row, per mail")),
    (r"abuse report \(per mail\)", N_("abuse report (per mail)")),
    (r"per mail", N_("per mail")),
    (r"removed by staff", N_("removed by staff")),
    # the inbox's actions (mailer/inbox.py _decide)
    (r"none", N_("none")),
    (r"none: not a contact", N_("none: not a contact")),
    (r"none: already (?P<status>\w+)", N_("none: already {status}")),
    (r"none: no address found; check it by hand", N_("none: no address found; check it by hand")),
    (r"none: already on the suppression list", N_("none: already on the suppression list")),
    (r"already handled", N_("already handled")),
    (r"listed for staff", N_("listed for staff")),
    (r"marked bounced; no further mail", N_("marked bounced; no further mail")),
    (r"would be marked bounced; no further mail", N_("would be marked bounced; no further mail")),
    (r"marked bounced: soft bounces on (?P<count>\d+) mails in a row",
     N_("marked bounced: soft bounces on {count} mails in a row")),
    (r"would be marked bounced: soft bounces on (?P<count>\d+) mails in a row",
     N_("would be marked bounced: soft bounces on {count} mails in a row")),
    (r"counted: (?P<count>\d+) of (?P<limit>\d+) soft bounces in a row",
     N_("counted: {count} of {limit} soft bounces in a row")),
    (r"put on the suppression list \(not imported\)", N_("put on the suppression list (not imported)")),
    (r"would be put on the suppression list \(not imported\)",
     N_("would be put on the suppression list (not imported)")),
    (r"unsubscribed", N_("unsubscribed")),
    (r"would be unsubscribed", N_("would be unsubscribed")),
    # the inbox's notes (mailer/inbox.py)
    (r"the message could not be read \((?P<problem>.*)\); left for staff",
     N_("the message could not be read ({problem}); left for staff")),
    (r"a mailing \(Precedence: bulk\), not a person", N_("a mailing (Precedence: bulk), not a person")),
    (r"sent from the organisation's own address", N_("sent from the organisation's own address")),
    (r"from a mail system, and no bounce could be read from it",
     N_("from a mail system, and no bounce could be read from it")),
    (r"a delivery report that is no failure", N_("a delivery report that is no failure")),
    (r"the file could not be read \((?P<problem>.*)\)", N_("the file could not be read ({problem})")),
)
_COMPILED = tuple((re.compile(pattern, re.DOTALL), text) for pattern, text in _STORED)

# The inbox's kinds (``--json`` keeps these words) as a person reads them.
INBOX_KINDS = {
    "bounce-hard": N_("bounce-hard"), "bounce-soft": N_("bounce-soft"), "delay": N_("delay"),
    "optout": N_("optout"), "complaint": N_("complaint"), "autoreply": N_("autoreply"), "reply": N_("reply"),
    "other": N_("other"),
}
# The effect an inbox event had on a contact (stored with the event).
INBOX_EFFECTS = {"bounced": N_("bounced"), "unsubscribed": N_("unsubscribed"), "suppressed": N_("suppressed")}
_STATUSES = {"active": N_("active"), "unsubscribed": N_("unsubscribed"), "bounced": N_("bounced"),
             "removed": N_("removed")}


def stored(text: str | None) -> str:
    """A stored English text in the chosen language; unknown texts as they are."""
    if not text:
        return text or ""
    for pattern, sentence in _COMPILED:
        found = pattern.fullmatch(text)
        if found is None:
            continue
        parts = found.groupdict()
        if "error" in parts:
            parts["error"] = stored(parts["error"])
        if "status" in parts:
            parts["status"] = _(_STATUSES.get(parts["status"], parts["status"]))
        return _(sentence).format(**parts)
    return text


def inbox_kind(kind: str) -> str:
    """An inbox kind (``bounce-hard``) as a person reads it."""
    return _(INBOX_KINDS[kind]) if kind in INBOX_KINDS else kind


def inbox_effect(effect: str | None) -> str:
    """What an inbox event changed (``bounced``), as a person reads it."""
    return _(INBOX_EFFECTS[effect]) if effect in INBOX_EFFECTS else (effect or "")


def inbox_count(kind: str, count: int) -> str:
    """``5 bounce-hard`` as the inbox's summary line counts it, in the chosen language."""
    if kind == "bounce-hard":
        return ngettext("{count} bounce-hard", "{count} bounce-hard", count).format(count=count)
    if kind == "bounce-soft":
        return ngettext("{count} bounce-soft", "{count} bounce-soft", count).format(count=count)
    if kind == "delay":
        return ngettext("{count} delay", "{count} delay", count).format(count=count)
    if kind == "optout":
        return ngettext("{count} optout", "{count} optout", count).format(count=count)
    if kind == "complaint":
        return ngettext("{count} complaint", "{count} complaint", count).format(count=count)
    if kind == "autoreply":
        return ngettext("{count} autoreply", "{count} autoreply", count).format(count=count)
    if kind == "reply":
        return ngettext("{count} reply", "{count} reply", count).format(count=count)
    if kind == "other":
        return ngettext("{count} other", "{count} other", count).format(count=count)
    return f"{count} {kind}"
