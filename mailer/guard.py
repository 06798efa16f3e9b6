"""Who a test mail may go to: never a contact, never an address on the suppression list.

A test mail is personalised as a contact, so it must reach staff only. Comparing the typed
address with the stored keys is not enough: ``piet+test@victim.nl`` lands in the mailbox of
``piet@victim.nl``, Gmail ignores dots in the local part, and an erased person is only a
salted hash in ``suppressions``. So the address is reduced to the mailbox it reaches and
compared with the contacts reduced the same way, and the hashes of its forms are looked up.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence

from .i18n import _
from . import store
from .contacts import email_key, mask, normalise_address, same_mailbox
from .errors import DeliveryError, InvalidAddress

# Domains whose mailboxes ignore dots in the local part; googlemail.com is gmail.com.
DOTLESS_DOMAINS = ("gmail.com", "googlemail.com")


def reduced_key(key: str) -> str:
    """The mailbox an address key reaches: without a ``+tag``, and for Gmail without dots."""
    local, _, domain = key.rpartition("@")
    local = local.split("+", 1)[0]
    if domain in DOTLESS_DOMAINS:
        local, domain = local.replace(".", ""), DOTLESS_DOMAINS[0]
    return f"{local}@{domain}"


def _reaches_contact(conn: sqlite3.Connection, key: str) -> bool:
    return bool(same_mailbox(conn, key))


def _suppressed(conn: sqlite3.Connection, typed: str, key: str) -> bool:
    # Every row counts, whatever its reason (erased on request, an opt-out of a non-contact...).
    # The typed form is hashed too: rows written before addresses had one normal form.
    salt = store.salt(conn)
    forms = {email_key(typed), key, reduced_key(key)}
    hashes = [hashlib.sha256((salt + form).encode()).hexdigest() for form in forms]
    marks = ",".join("?" * len(hashes))
    return conn.execute(f"SELECT 1 FROM suppressions WHERE hash IN ({marks})", hashes).fetchone() is not None


def recipient_problem(conn: sqlite3.Connection, typed: str, normal: str) -> str | None:
    """Why a test mail must not go to ``normal`` (as typed: ``typed``): "contact" when it reaches
    the mailbox of an imported contact, "suppressed" when it is on the suppression list; else None."""
    key = email_key(normal)
    if _reaches_contact(conn, key):
        return "contact"
    if _suppressed(conn, typed, key):
        return "suppressed"
    return None


def check_test_recipients(conn: sqlite3.Connection | None, addresses: Sequence[str], *, origin: str) -> list[str]:
    """The addresses in their normal form, or :class:`DeliveryError` naming the first that reaches a
    contact or is suppressed. ``origin`` names where they came from (``--to``, the settings);
    ``conn`` is None while no state file exists (no contacts, nothing suppressed)."""
    checked = []
    for typed in addresses:
        try:
            normal = normalise_address(typed)
        except InvalidAddress as exc:
            raise DeliveryError(_("{origin}: {exc}").format(origin=origin, exc=exc)) from None
        problem = recipient_problem(conn, typed, normal) if conn is not None else None
        if problem is not None:
            if problem == "contact":
                raise DeliveryError(
                    _("{origin} {address} reaches the mailbox of an imported contact; test mails never go to "
                       "contacts, so nothing was sent: send test mails to your own address.").format(
                           origin=origin, address=mask(normal)))
            if problem == "suppressed":
                raise DeliveryError(
                    _("{origin} {address} is on the suppression list (erased or opted out); test mails never "
                       "go there, so nothing was sent: send test mails to your own address.").format(
                           origin=origin, address=mask(normal)))
        checked.append(normal)
    return checked
