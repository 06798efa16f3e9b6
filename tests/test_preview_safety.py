"""The preview shows personal data to the person at this machine only, and no more of it than needed."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from mailer.contacts import example_contacts, import_contacts
from mailer.preview import PreviewServer, search_contacts, write_site
from mailer.project import Project

from .conftest import ROOT

MANY = 300


def people(n: int) -> list[tuple[str, str, str, str]]:
    """(address, name, party, municipality) for n fictional contacts."""
    return [(f"persoon{i:04d}@gemeente{i % 13}.example.nl", f"Naam{i:04d} Achternaam{i % 17}", f"Partij{i % 7}",
             f"Gemeente{i % 11}") for i in range(n)]


def import_people(project: Project, tmp_path: Path, rows) -> None:
    path = tmp_path / "lijst.csv"
    path.write_text("email,name,party,municipality\n" + "".join(",".join(r) + "\n" for r in rows), encoding="utf-8")
    conn = project.connect()
    try:
        import_contacts(conn, path, default_basis="published-address")
    finally:
        conn.close()


def cookie(server: PreviewServer) -> str:
    """The header line a browser sends once it has opened ``server.url`` (see test_preview_token)."""
    return f"Cookie: {server.cookie_name}={server.token}\r\n"


def raw_get(port: int, path: str, host: str | None, *, extra: str = "") -> tuple[int, bytes]:
    """One HTTP/1.0 request over a plain socket, so that the Host header is exactly what the test says."""
    head = f"GET {path} HTTP/1.0\r\n" + (f"Host: {host}\r\n" if host is not None else "") + extra + "\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head.encode("latin-1"))
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    body = rest.partition(b"\r\n\r\n")[2]
    return int(status_line.split()[1]), body


@pytest.fixture
def server(project_copy: Path, home: Path, tmp_path: Path):
    project = Project.at(project_copy)
    import_people(project, tmp_path, people(MANY))
    server = PreviewServer(project, port=0)
    server.start()
    yield server, server.httpd.server_address[1]
    server.stop()


FOREIGN_HOSTS = [
    "rebind.attacker.example",
    "rebind.attacker.example:{port}",
    "127.0.0.1",  # no port: not what a browser sends for this server
    "127.0.0.1:{other}",
    "localhost.:{port}",
    "127.0.0.2:{port}",
    "evil.example@127.0.0.1:{port}",
]


@pytest.mark.parametrize("host", FOREIGN_HOSTS + [None])
@pytest.mark.parametrize("path", ["/", "/mail-1.html", "/raw/1.html", "/raw/1.txt", "/__version", "/__contacts?q=p"])
def test_a_request_for_another_host_is_refused_without_data(server, host, path):
    server, port = server
    host = host.format(port=port, other=port + 1) if host else None
    # Refused by its Host header, even with the run's cookie.
    status, body = raw_get(port, path, host, extra=cookie(server))
    assert status == 421
    assert b"@" not in body and b"persoon" not in body.lower() and len(body) < 200


def test_two_host_headers_are_refused(server):
    _, port = server
    status, _ = raw_get(port, "/", f"127.0.0.1:{port}", extra="Host: rebind.attacker.example\r\n")
    assert status == 421


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LocalHost:{port}", "[::1]:{port}"])
def test_the_previews_own_names_are_served(server, host):
    server, port = server
    status, body = raw_get(port, "/", host.format(port=port), extra=cookie(server))
    assert status == 200 and b"tr data-mail='1'" in body


def test_live_pages_hold_the_chosen_contact_only(server):
    server, port = server
    everyone = people(MANY)
    chosen = everyone[5]
    for path in ("/", "/mail-3.html", "/raw/3.html", "/raw/3.txt"):
        status, body = raw_get(port, f"{path}?contact={chosen[0]}", f"127.0.0.1:{port}", extra=cookie(server))
        assert status == 200
        text = body.decode("utf-8")
        others = [p for p in everyone if p != chosen and (p[0] in text or p[1] in text)]
        assert not others, f"{path} holds {len(others)} other contacts"
    assert chosen[0] in text


def test_the_search_returns_at_most_twenty_matches_on_a_prefix(server):
    server, port = server
    c = cookie(server)
    status, body = raw_get(port, "/__contacts?q=persoon", f"localhost:{port}", extra=c)
    assert status == 200
    found = json.loads(body)
    assert len(found["matches"]) == 20 and found["more"] is True
    assert set(found["matches"][0]) == {"email", "name", "party", "municipality"}
    # One contact by address; by a word of the name; by party and municipality, any case.
    one = json.loads(raw_get(port, "/__contacts?q=PERSOON0042%40", f"localhost:{port}", extra=c)[1])["matches"]
    assert [m["email"] for m in one] == ["persoon0042@gemeente3.example.nl"]
    by_surname = json.loads(raw_get(port, "/__contacts?q=achternaam16", f"localhost:{port}", extra=c)[1])["matches"]
    assert by_surname and all(m["name"].endswith("Achternaam16") for m in by_surname)
    by_party = json.loads(raw_get(port, "/__contacts?q=partij3", f"localhost:{port}", extra=c)[1])["matches"]
    assert len(by_party) == 20 and all(m["party"] == "Partij3" for m in by_party)
    by_place = json.loads(raw_get(port, "/__contacts?q=gemeente10", f"localhost:{port}", extra=c)[1])["matches"]
    assert by_place and all(m["municipality"] == "Gemeente10" for m in by_place)
    # Not a substring search: a prefix of a field or of a word in it.
    assert json.loads(raw_get(port, "/__contacts?q=ersoon", f"localhost:{port}", extra=c)[1])["matches"] == []
    assert json.loads(raw_get(port, "/__contacts?q=", f"localhost:{port}", extra=c)[1])["matches"] == []
    # LIKE's wildcards are searched for as characters.
    assert json.loads(raw_get(port, "/__contacts?q=%25", f"localhost:{port}", extra=c)[1])["matches"] == []
    assert json.loads(raw_get(port, "/__contacts?q=_", f"localhost:{port}", extra=c)[1])["matches"] == []


def test_the_search_ignores_case_and_accents_in_the_example_list(project_copy, home):
    server = PreviewServer(Project.at(project_copy), port=0)  # no imported contacts: the example list
    server.start()
    try:
        port = server.httpd.server_address[1]
        for query in ("unal", "ÜNAL", "demir", "stadsbel", "rotter"):
            got = json.loads(raw_get(port, f"/__contacts?q={query}", f"127.0.0.1:{port}", extra=cookie(server))[1])["matches"]
            assert [m["email"] for m in got] == ["unal.demir@example.nl"], query
        renee = json.loads(raw_get(port, "/__contacts?q=renee", f"127.0.0.1:{port}", extra=cookie(server))[1])["matches"]
        assert [m["name"] for m in renee] == ["Renée Jansen"]
    finally:
        server.stop()


def test_static_pages_hold_the_chosen_contact_only(project_copy, home, tmp_path):
    project = Project.at(project_copy)
    everyone = people(MANY)
    import_people(project, tmp_path, everyone)
    out = tmp_path / "static"
    files = write_site(project, out, contact=everyone[7][0])
    assert files
    seen_chosen = False
    for path in files:
        text = path.read_text(encoding="utf-8")
        others = [p for p in everyone if p != everyone[7] and (p[0] in text or p[1] in text)]
        assert not others, f"{path.name} holds {len(others)} other contacts"
        seen_chosen = seen_chosen or everyone[7][0] in text
    assert seen_chosen
    assert "contact-search" not in (out / "index.html").read_text(encoding="utf-8")  # no live search offline


def test_static_pages_of_the_example_list_hold_one_example(project_copy, home, tmp_path):
    out = tmp_path / "static"
    files = write_site(Project.at(project_copy), out)
    examples = example_contacts(ROOT)
    assert examples[0].name in (out / "index.html").read_text(encoding="utf-8")
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert not [c.email for c in examples[1:] if c.email in text or (c.name and c.name in text)], path.name


def test_the_search_ignores_case_and_accents_in_imported_contacts(project_copy, home, tmp_path):
    project = Project.at(project_copy)
    import_people(project, tmp_path, people(50) + [("r.unal@example.nl", "Renée Ünal", "Partij Één", "Súdwest-Fryslân")])
    for query in ("renee", "RENÉE", "unal", "ünal", "een", "sudwest", "r.un"):
        found, more = search_contacts(project, query)
        assert [c.email for c in found] == ["r.unal@example.nl"] and not more, query
    assert search_contacts(project, "enee") == ([], False)
