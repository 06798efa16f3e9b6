"""The live preview answers only the person who started it: a per-run token, then a cookie.

Any local user or process can reach 127.0.0.1; the pages and the contact search hold personal
data, so every request without the run's token (once) or its cookie gets 403 and nothing else.
"""

from __future__ import annotations

import json
import socket
import urllib.parse
from pathlib import Path

import pytest

from mailer.preview import PreviewServer
from mailer.project import Project

from .test_preview_safety import import_people, people

PATHS = ["/", "/index.html", "/mail-1.html", "/raw/1.html", "/raw/1.txt", "/__version", "/__contacts?q=p",
         "/__contacts?q=e", "/no-such-page", "/mail-1.html?contact=persoon0001%40gemeente1.example.nl"]


def request(port: int, path: str, *, headers: dict[str, str] | None = None) -> tuple[int, dict[str, list[str]], bytes]:
    """One HTTP/1.0 GET with a correct Host header; the status, the headers (by lower-case name) and the body."""
    head = f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items()) + "\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head.encode("latin-1"))
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    top, _, body = data.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    found: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        found.setdefault(name.strip().lower(), []).append(value.strip())
    return int(lines[0].split()[1]), found, body


@pytest.fixture
def server(project_copy: Path, home: Path, tmp_path: Path):
    project = Project.at(project_copy)
    import_people(project, tmp_path, people(40))
    server = PreviewServer(project, port=0)
    server.start()
    yield server
    server.stop()


def token_of(server: PreviewServer) -> str:
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(server.url).query)
    assert list(query) == ["token"], server.url
    return query["token"][0]


def assert_refused(status: int, body: bytes) -> None:
    assert status == 403
    assert b"@" not in body and b"persoon" not in body.lower() and b"Naam" not in body and len(body) < 300


def test_the_printed_url_carries_a_long_random_token_once(server, project_copy, home):
    token = token_of(server)
    assert server.url == f"http://127.0.0.1:{server.httpd.server_address[1]}/?token={token}"
    assert len(token) >= 32
    other = PreviewServer(Project.at(project_copy), port=0)
    try:
        assert token_of(other) != token  # a new secret for every run
    finally:
        other.httpd.server_close()


@pytest.mark.parametrize("path", PATHS)
def test_no_token_and_no_cookie_gets_403_and_no_data(server, path):
    status, _, body = request(server.httpd.server_address[1], path)
    assert_refused(status, body)


@pytest.mark.parametrize("path", PATHS)
def test_a_wrong_token_gets_403(server, path):
    port = server.httpd.server_address[1]
    token = token_of(server)
    sep = "&" if "?" in path else "?"
    for wrong in (token[:-1], token + "x", "", "x" * len(token), token.upper() if token.upper() != token else token + "A",
                  "%C3%A9" * 4):
        status, headers, body = request(port, f"{path}{sep}token={wrong}")
        assert_refused(status, body)
        assert "set-cookie" not in headers


def test_a_wrong_cookie_gets_403(server):
    port = server.httpd.server_address[1]
    name = server.cookie_name
    token = token_of(server)
    for cookie in (f"{name}={token[:-1]}", f"{name}=", f"other={token}", f"{name}=\u00e9\u00e9", "garbage"):
        status, _, body = request(port, "/__contacts?q=p", headers={"Cookie": cookie})
        assert_refused(status, body)


def test_the_right_token_sets_a_strict_httponly_cookie_and_redirects_without_it(server):
    port = server.httpd.server_address[1]
    token = token_of(server)
    status, headers, _ = request(port, f"/?token={token}")
    assert status == 303
    assert headers["location"] == ["/"]
    (cookie,) = headers["set-cookie"]
    attributes = [a.strip() for a in cookie.split(";")]
    assert attributes[0] == f"{server.cookie_name}={token}"
    assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= set(attributes)
    # The rest of the address is kept; only the token is dropped from it.
    status, headers, _ = request(port, f"/mail-2.html?contact=persoon0001%40gemeente1.example.nl&token={token}")
    assert status == 303
    assert headers["location"] == ["/mail-2.html?contact=persoon0001%40gemeente1.example.nl"]


def test_with_the_cookie_pages_search_and_reload_work(server):
    port = server.httpd.server_address[1]
    token = token_of(server)
    _, headers, _ = request(port, f"/?token={token}")
    cookie = {"Cookie": headers["set-cookie"][0].split(";")[0]}
    status, _, body = request(port, "/", headers=cookie)
    assert status == 200 and b"tr data-mail='1'" in body
    status, _, body = request(port, "/mail-3.html", headers=cookie)
    assert status == 200 and b"<h2>3/9" in body
    status, _, body = request(port, "/raw/3.txt", headers=cookie)
    assert status == 200 and b"persoon0000@" in body
    status, _, body = request(port, "/__contacts?q=persoon", headers=cookie)
    assert status == 200 and len(json.loads(body)["matches"]) == 20
    status, _, body = request(port, "/__version", headers=cookie)
    assert status == 200 and len(body) == 16
    # Among other cookies of the same host (other local servers set their own).
    status, _, _ = request(port, "/", headers={"Cookie": f"a=b; {cookie['Cookie']}; c=d"})
    assert status == 200


def test_a_cookie_from_another_preview_run_is_refused(server, project_copy, home):
    other = PreviewServer(Project.at(project_copy), port=0)
    try:
        stale = f"{server.cookie_name}={token_of(other)}"
    finally:
        other.httpd.server_close()
    status, _, body = request(server.httpd.server_address[1], "/", headers={"Cookie": stale})
    assert_refused(status, body)


def test_the_redirect_stays_on_the_preview(server):
    port = server.httpd.server_address[1]
    status, headers, _ = request(port, f"//evil.example/x?token={token_of(server)}")
    assert status == 303 and headers["location"] == ["/evil.example/x"]


def test_campaign_preview_prints_the_url_with_its_token(project_copy: Path, home: Path):
    import os
    import re
    import subprocess
    import sys

    env = {**os.environ, "CAMPAIGN_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-u", "-c", "import cli; cli.cli()", "--project", str(project_copy),
                             "preview", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=Path(__file__).resolve().parent.parent)
    try:
        line = proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/\?token=([A-Za-z0-9_-]{32})\s", line)
        assert m, line
        port, token = int(m.group(1)), m.group(2)
        assert request(port, "/")[0] == 403
        status, headers, _ = request(port, f"/?token={token}")
        assert status == 303 and headers["location"] == ["/"]
        status, _, body = request(port, "/", headers={"Cookie": headers["set-cookie"][0].split(";")[0]})
        assert status == 200 and b"tr data-mail='9'" in body
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()
