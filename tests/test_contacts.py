"""Contact import as spreadsheets really arrive; opt-outs; erasure that leaves no trace."""

from __future__ import annotations

import json
from pathlib import Path



def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def listed(run) -> list[dict]:
    result = run("contacts", "list", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_excel_semicolon_windows_1252_with_diacritics(run, tmp_path: Path):
    f = write(tmp_path / "leden.csv",
              "Naam;E-mailadres;Partij;Gemeente;Functie;Wijk\r\n"
              "Renée Jansen;renee@example.nl;Partij voor de Wijk;Zwolle;raadslid;Assendorp\r\n"
              "Zoë Bakker;ZOE@Example.NL;Samen Lokaal;'s-Hertogenbosch;;\r\n"
              "Ünal Demir;unal@example.nl;Stadsbelang;Rotterdam;wethouder;Feijenoord\r\n", "cp1252")
    result = run("contacts", "import", str(f))
    assert result.exit_code == 0, result.output
    assert "windows-1252" in result.output and "3 added" in result.output
    rows = {r["email"].lower(): r for r in listed(run)}
    assert rows["renee@example.nl"]["name"] == "Renée Jansen"
    assert rows["zoe@example.nl"]["name"] == "Zoë Bakker"
    assert rows["zoe@example.nl"]["municipality"] == "'s-Hertogenbosch"
    assert rows["unal@example.nl"]["name"] == "Ünal Demir"
    assert rows["unal@example.nl"]["extra"] == {"wijk": "Feijenoord"}
    assert rows["renee@example.nl"]["basis"] == "published-address"
    assert rows["renee@example.nl"]["source"] == "leden.csv"


def test_utf8_bom_comma_english_headers(run, tmp_path: Path):
    f = tmp_path / "contacts.csv"
    f.write_bytes(b"\xef\xbb\xbf" + "EMAIL,Name,Party,Municipality,basis\n"
                  "an@example.org,Än Smit,Lijst A,Ede,consent\n".encode())
    result = run("contacts", "import", str(f))
    assert result.exit_code == 0, result.output
    [row] = listed(run)
    assert row["email"] == "an@example.org" and row["name"] == "Än Smit" and row["basis"] == "consent"


def test_mixed_file_stores_nothing_and_names_every_bad_line(run, tmp_path: Path):
    f = write(tmp_path / "mixed.csv",
              "naam;email;partij;gemeente\n"
              "Goed;goed@example.nl;A;Ede\n"
              "Fout;jan@@example.nl;A;Ede\n"
              "Leeg;leeg@example.nl;;Ede\n"
              "Dubbel;GOED@example.nl;A;Ede\n"
              "\"Twee\nregels\";twee@example.nl;A;Ede\n"
              "Weer goed;weer@example.nl;B;Zwolle\n")
    result = run("contacts", "import", str(f))
    assert result.exit_code == 1
    out = result.output
    assert "nothing was imported" in out
    assert f"{f}:3: column 'email': 'jan@@example.nl' is not a valid address" in out
    assert f"{f}:4: column 'partij': is empty" in out
    assert f"{f}:5: column 'email': repeats the address of line 2" in out
    assert f"{f}:6: column 'naam': contains a line break" in out
    assert listed(run) == []


def test_skip_invalid_stores_the_valid_rows_and_lists_the_rest(run, tmp_path: Path):
    f = write(tmp_path / "mixed.csv", "email,party,municipality\nok@example.nl,A,Ede\nnot-an-address,A,Ede\n")
    result = run("contacts", "import", "--skip-invalid", str(f))
    assert result.exit_code == 0, result.output
    assert "1 added" in result.output and "1 invalid" in result.output
    assert f"refused: {f}:3: column 'email'" in result.output
    assert [r["email"] for r in listed(run)] == ["ok@example.nl"]


def test_dry_run_shows_changes_and_stores_nothing(run, tmp_path: Path):
    f = write(tmp_path / "a.csv", "email,party,municipality\na@example.nl,A,Ede\nb@example.nl,B,Ede\n")
    result = run("contacts", "import", "--dry-run", str(f))
    assert result.exit_code == 0
    assert "Would import" in result.output and "2 added" in result.output and "nothing was stored" in result.output
    assert listed(run) == []
    run("contacts", "import", str(f))
    f2 = write(tmp_path / "b.csv", "email,party,municipality\na@example.nl,A2,Ede\nb@example.nl,B,Ede\nc@example.nl,C,Ede\n")
    result = run("contacts", "import", "--dry-run", str(f2))
    assert "1 added, 1 updated, 1 unchanged" in result.output
    assert {r["party"] for r in listed(run)} == {"A", "B"}


def test_missing_required_column_names_the_header(run, tmp_path: Path):
    f = write(tmp_path / "x.csv", "naam;email;gemeente\nA;a@example.nl;Ede\n")
    result = run("contacts", "import", str(f))
    assert result.exit_code == 1
    assert f"Error: {f}:1: missing required column 'party'" in result.output


def test_reimport_updates_and_keeps_opt_outs(run, tmp_path: Path):
    f = write(tmp_path / "a.csv", "email,name,party,municipality\na@example.nl,An,A,Ede\nb@example.nl,Bo,B,Ede\n")
    run("contacts", "import", str(f))
    result = run("contacts", "unsubscribe", "A@example.nl", "--reason", "antwoord op mail 1")
    assert "Unsubscribed 1 contact." in result.output
    f2 = write(tmp_path / "a2.csv", "email,name,party,municipality\na@example.nl,Anna,A,Ede\nb@example.nl,Bo,B,Ede\nc@example.nl,Cor,C,Ede\n")
    result = run("contacts", "import", str(f2))
    assert "1 added" in result.output and "1 kept as opted out" in result.output
    rows = {r["email"]: r for r in listed(run)}
    assert rows["a@example.nl"]["status"] == "unsubscribed"
    assert rows["a@example.nl"]["status_reason"] == "antwoord op mail 1"
    assert rows["a@example.nl"]["name"] == "Anna"
    unsub = json.loads(run("contacts", "list", "--status", "unsubscribed", "--json").output)
    assert [r["email"] for r in unsub] == ["a@example.nl"]


def test_unsubscribe_from_a_file(run, tmp_path: Path):
    f = write(tmp_path / "a.csv", "email,party,municipality\na@example.nl,A,Ede\nb@example.nl,B,Ede\nc@example.nl,C,Ede\n")
    run("contacts", "import", str(f))
    replies = write(tmp_path / "replies.txt", "a@example.nl\nC@EXAMPLE.NL\nonbekend@example.nl\n")
    result = run("contacts", "unsubscribe", "--from", str(replies))
    assert "Unsubscribed 2 contacts." in result.output
    assert "not a contact: o***@example.nl" in result.output
    assert {r["email"]: r["status"] for r in listed(run)} == {
        "a@example.nl": "unsubscribed", "b@example.nl": "active", "c@example.nl": "unsubscribed"}


def test_show_names_origin_and_basis(run, tmp_path: Path):
    f = write(tmp_path / "lijst.csv", "email,name,party,municipality,Telefoon\na@example.nl,An,A,Ede,0612345678\n")
    run("contacts", "import", str(f))
    result = run("contacts", "show", "a@example.nl")
    assert result.exit_code == 0
    assert "lijst.csv" in result.output and "published-address" in result.output
    assert "telefoon" in result.output and "Nothing sent" in result.output


def test_forget_leaves_no_trace(run, home: Path, tmp_path: Path):
    secret = "geheim.persoon@example.nl"
    rows = "".join(f"p{i}@example.nl,Persoon {i},P,Ede\n" for i in range(200))
    f = write(tmp_path / "a.csv", f"email,name,party,municipality\n{secret},Geheim Persoon,P,Ede\n{rows}")
    run("contacts", "import", str(f))
    result = run("contacts", "forget", secret, "--yes")
    assert result.exit_code == 0, result.output
    assert "Erased g***@example.nl" in result.output
    for path in home.rglob("*"):
        if path.is_file():
            data = path.read_bytes().lower()
            assert b"geheim" not in data, path
    # A later import cannot bring the address back.
    result = run("contacts", "import", str(f))
    assert "1 refused as erased" in result.output
    assert secret not in {r["email"] for r in listed(run)}


def test_forget_without_terminal_needs_yes(run):
    result = run("contacts", "forget", "x@example.nl")
    assert result.exit_code == 2
    assert "--yes" in result.output
