"""An opt-out reaches every contact on the same mailbox, whether it comes alone (read from the
inbox, one message at a time) or in a list: the two ways of finding them agree."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailer import store
from mailer.contacts import import_contacts, unsubscribe

CONTACTS = ["piet+raad@ok.nl", "piet@ok.nl", "piet.x@ok.nl", "pi_t@ok.nl", "pi%t@ok.nl", "anna@ok.nl",
            "base.person@gmail.com", "baseperson+x@googlemail.com", "base.person@other.nl"]
# (typed, the contacts it reaches)
CASES = [
    ("PIET+nieuws@OK.nl", {"piet+raad@ok.nl", "piet@ok.nl"}),
    ("piet@ok.nl", {"piet+raad@ok.nl", "piet@ok.nl"}),
    ("pixt@ok.nl", set()),  # '_' and '%' are no wildcards here
    ("pi_t+a@ok.nl", {"pi_t@ok.nl"}),
    ("b.a.s.e.p.e.r.s.o.n@gmail.com", {"base.person@gmail.com", "baseperson+x@googlemail.com"}),
    ("nobody@ok.nl", set()),
]


def statuses(conn) -> dict[str, str]:
    return {r["email"]: r["status"] for r in conn.execute("SELECT email, status FROM contacts")}


def fresh(home: Path, tmp_path: Path, name: str):
    folder = home / name
    conn = store.connect(folder)
    csv = tmp_path / f"{name}.csv"
    csv.write_text("email,party,municipality\n" + "".join(f"{a},P,Ede\n" for a in CONTACTS), encoding="utf-8")
    import_contacts(conn, csv, default_basis="published-address")
    return conn


@pytest.mark.parametrize("typed, reached", CASES)
def test_one_opt_out_reaches_exactly_the_contacts_on_its_mailbox(home: Path, tmp_path: Path, typed, reached):
    conn = fresh(home, tmp_path, "one")
    unsubscribe(conn, [typed], reason="per mail")
    assert {a for a, s in statuses(conn).items() if s == "unsubscribed"} == reached


def test_a_long_list_finds_the_same_contacts_as_one_address_at_a_time(home: Path, tmp_path: Path):
    # More than a few addresses take the one-pass route over all contacts: the result must agree.
    typed = [t for t, _ in CASES] + [f"filler{i}@elders.nl" for i in range(30)]
    one_by_one = fresh(home, tmp_path, "a")
    for address in typed:
        unsubscribe(one_by_one, [address], reason="per mail")
    at_once = fresh(home, tmp_path, "b")
    unsubscribe(at_once, typed, reason="per mail")
    assert statuses(one_by_one) == statuses(at_once)
    assert {a for a, s in statuses(at_once).items() if s == "unsubscribed"} == set().union(*(r for _, r in CASES))
