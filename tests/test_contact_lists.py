"""Contact lists as staff really have them: every row imported or named, opt-outs for
addresses that are not contacts yet, reactivation after a bounce, Excel workbooks, UTF-16
text, mixed encodings and split name columns."""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile
from pathlib import Path

import openpyxl

from mailer import store
from mailer.contacts import import_contacts, set_status
from mailer.deliver import Worker
from mailer.project import Project
from mailer.schedule import cancel
from mailer.service import plan_campaign, schedule_campaign

from .conftest import ROOT, copy_project, for_election
from .smtp_server import Server
from .test_deliver import ELECTION, MAIL1, PLANNED_AT, contacts_csv


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def listed(run) -> dict[str, dict]:
    result = run("contacts", "list", "--json")
    assert result.exit_code == 0, result.output
    return {r["email"]: r for r in json.loads(result.output)}


# --- never skip anyone --------------------------------------------------------------------------

def test_a_bad_quote_is_named_and_the_rows_after_it_are_still_read(run, tmp_path: Path):
    f = write(tmp_path / "leden.csv",
              "naam;email;partij;gemeente\n"
              "A;s1@example.nl;P;Ede\n"
              'B;"x"@ok.nl;P;Ede\n'
              "C;s3@example.nl;P;Ede\n"
              "D;s4@example.nl;P;Ede\n")
    result = run("contacts", "import", str(f))
    assert result.exit_code == 1
    assert f"{f}:3: " in result.output and "quote" in result.output
    assert listed(run) == {}
    result = run("contacts", "import", "--skip-invalid", str(f))
    assert result.exit_code == 0, result.output
    assert "3 added" in result.output and "1 invalid" in result.output
    assert f"refused: {f}:3: " in result.output
    assert set(listed(run)) == {"s1@example.nl", "s3@example.nl", "s4@example.nl"}


def test_an_overlong_field_is_named_by_line_and_column_and_reading_goes_on(run, tmp_path: Path):
    f = write(tmp_path / "leden.csv",
              "naam;email;partij;gemeente\n"
              "A;s1@example.nl;P;Ede\n"
              f"{'x' * 200_000};s2@example.nl;P;Ede\n"
              f'"{"y" * 200_000}";s3@example.nl;P;Ede\n'
              "D;s4@example.nl;P;Ede\n")
    result = run("contacts", "import", "--skip-invalid", str(f))
    assert result.exit_code == 0, result.output
    assert f"refused: {f}:3: column 'naam': is 200,000 characters long" in result.output
    assert f"refused: {f}:4: column 'naam': is 200,000 characters long" in result.output
    assert "2 added" in result.output and "2 invalid" in result.output
    assert set(listed(run)) == {"s1@example.nl", "s4@example.nl"}


def test_a_quote_that_never_closes_is_named_and_the_lines_after_it_are_read(run, tmp_path: Path):
    f = write(tmp_path / "leden.csv",
              "naam,email,partij,gemeente\n"
              "A,s1@example.nl,P,Ede\n"
              '"Bo,s2@example.nl,P,Ede\n'
              "C,s3@example.nl,P,Ede\n"
              '"Dirk, de",s4@example.nl,P,Ede\n')
    result = run("contacts", "import", "--skip-invalid", str(f))
    assert result.exit_code == 0, result.output
    assert f"refused: {f}:3: " in result.output
    assert "3 added" in result.output and "1 invalid" in result.output
    rows = listed(run)
    assert set(rows) == {"s1@example.nl", "s3@example.nl", "s4@example.nl"}
    assert rows["s4@example.nl"]["name"] == "Dirk, de"


# --- never mail someone against their wish --------------------------------------------------------

def test_an_opt_out_for_an_address_that_is_not_a_contact_is_honoured_by_later_imports(run, home: Path, tmp_path: Path):
    result = run("contacts", "unsubscribe", "Niet.Bestaand@X.nl")
    assert result.exit_code == 0, result.output
    assert "Unsubscribed 0 contacts." in result.output
    assert "Recorded 1 opt-out for an address that is not a contact; a later import refuses it." in result.output
    assert "not a contact: n***@x.nl" in result.output
    conn = store.connect(home)
    assert [r["reason"] for r in conn.execute("SELECT reason FROM suppressions")] == ["opt-out"]
    assert b"bestaand" not in (home / store.DB_NAME).read_bytes().lower()
    conn.close()
    f = write(tmp_path / "a.csv", "email,party,municipality\nok@example.nl,A,Ede\nniet.bestaand@x.nl,A,Ede\n")
    result = run("contacts", "import", str(f))
    assert result.exit_code == 0, result.output
    assert "1 added" in result.output and "1 refused as opted out" in result.output
    assert "0 refused as erased" in result.output
    assert f"{f}:3: " in result.output and "opted out" in result.output
    assert set(listed(run)) == {"ok@example.nl"}
    # Saying it again changes nothing and says so.
    result = run("contacts", "unsubscribe", "niet.bestaand@x.nl")
    assert "1 of the addresses had opted out already" in result.output


def test_an_erased_row_and_an_opted_out_row_are_told_apart(run, tmp_path: Path):
    run("contacts", "forget", "weg@example.nl", "--not-imported", "--yes")
    run("contacts", "unsubscribe", "nee@example.nl")
    f = write(tmp_path / "a.csv", "email,party,municipality\nweg@example.nl,A,Ede\nnee@example.nl,A,Ede\n")
    result = run("contacts", "import", str(f))
    assert "1 refused as opted out" in result.output and "1 refused as erased" in result.output
    assert f"{f}:2: " in result.output and f"{f}:3: " in result.output


def test_an_invalid_typed_address_is_an_error_and_changes_nothing(run, home: Path, tmp_path: Path):
    f = write(tmp_path / "a.csv", "email,party,municipality\na@example.nl,A,Ede\n")
    run("contacts", "import", str(f))
    result = run("contacts", "unsubscribe", "a@example.nl", "jan@@example.nl")
    assert result.exit_code == 1
    assert "j***@@example.nl" in result.output and "nothing was changed" in result.output
    assert "jan@@" not in result.output
    assert listed(run)["a@example.nl"]["status"] == "active"


def test_an_opt_out_list_in_utf16_is_applied_and_no_raw_bytes_are_echoed(run, tmp_path: Path):
    f = write(tmp_path / "a.csv", "email,party,municipality\na@example.nl,A,Ede\nb@example.nl,B,Ede\n")
    run("contacts", "import", str(f))
    run("contacts", "unsubscribe", "b@example.nl")
    replies = tmp_path / "afmeldingen.txt"
    replies.write_bytes("E-mail\tNaam\r\na@example.nl\tAn\r\nb@example.nl\tBo\r\nnieuw@example.nl\tNieuw\r\n"
                        .encode("utf-16"))
    result = run("contacts", "unsubscribe", "--from", str(replies))
    assert result.exit_code == 0, result.output
    assert "\x00" not in result.output
    assert "Unsubscribed 1 contact.\nRecorded 1 opt-out for an address that is not a contact" in result.output
    assert "1 of the addresses had opted out already" in result.output
    assert listed(run)["a@example.nl"]["status"] == "unsubscribed"


def test_an_opt_out_list_without_any_address_is_an_error(run, tmp_path: Path):
    empty = tmp_path / "leeg.txt"
    empty.write_bytes("Naam\r\nAn\r\nBo\r\n".encode("utf-16"))
    result = run("contacts", "unsubscribe", "--from", str(empty))
    assert result.exit_code == 1
    assert f"{empty} holds no e-mail address" in result.output and "nothing was changed" in result.output
    broken = write(tmp_path / "kapot.txt", "a@example.nl\nb@@example.nl\n")
    result = run("contacts", "unsubscribe", "--from", str(broken))
    assert result.exit_code == 1
    assert f"{broken}:2: b***@@example.nl is not a usable address" in result.output


def test_a_bounce_never_overrides_an_opt_out(run, home: Path, tmp_path: Path):
    f = write(tmp_path / "a.csv", "email,party,municipality\na@example.nl,A,Ede\n")
    run("contacts", "import", str(f))
    run("contacts", "unsubscribe", "a@example.nl")
    conn = store.connect(home)
    set_status(conn, ["a@example.nl"], status="bounced", reason="550 user unknown")
    conn.close()
    assert listed(run)["a@example.nl"]["status"] == "unsubscribed"
    result = run("contacts", "reactivate", "a@example.nl")
    assert result.exit_code == 1
    assert "only the person" in result.output and listed(run)["a@example.nl"]["status"] == "unsubscribed"


def test_show_takes_an_address_as_a_person_types_it(run, tmp_path: Path):
    f = write(tmp_path / "a.csv", "email,party,municipality\nverkoop@bücher.nl,A,Ede\n")
    run("contacts", "import", str(f))
    result = run("contacts", "show", "Verkoop@Bücher.NL")
    assert result.exit_code == 0, result.output
    assert "verkoop@xn--bcher-kva.nl" in result.output
    result = run("contacts", "show", "verkoop@@bücher.nl")
    assert result.exit_code == 1 and "is not a usable address" in result.output


def test_reactivate_refuses_erased_opted_out_unknown_and_active(run, tmp_path: Path):
    f = write(tmp_path / "a.csv", "email,party,municipality\na@example.nl,A,Ede\n")
    run("contacts", "import", str(f))
    run("contacts", "forget", "weg@example.nl", "--not-imported", "--yes")
    run("contacts", "unsubscribe", "nee@example.nl")
    for address, words in (("weg@example.nl", "erased on request"), ("nee@example.nl", "only the person"),
                           ("nooit@example.nl", "no contact n***@example.nl"), ("a@example.nl", "already active"),
                           ("a@@example.nl", "is not a usable address")):
        result = run("contacts", "reactivate", address)
        assert result.exit_code == 1, (address, result.output)
        assert words in result.output, (address, result.output)


def _stopped_after_one(tmp_path: Path, monkeypatch, smtp: Server, addresses: list[str]) -> Project:
    """A campaign whose mail 1 has gone to the first contact only: the other rows are pending."""
    monkeypatch.setenv("CAMPAIGN_SMTP_URL", smtp.url)
    project = Project.at(for_election(copy_project(tmp_path / "project"), ELECTION))
    conn = project.connect()
    import_contacts(conn, contacts_csv(tmp_path, addresses), default_basis="published-address")
    conn.close()
    report = plan_campaign(project, now=PLANNED_AT)
    assert schedule_campaign(project, report, now=PLANNED_AT)
    worker = Worker(project, clock=lambda: MAIL1, rate_per_minute=1_000_000,
                    progress=lambda mail, done, total: worker.stop.set())
    assert worker.run(once=True).sent == 1
    return project


def _states(project: Project) -> dict[str, str]:
    conn = project.connect()
    try:
        return {r[0]: r[1] for r in conn.execute(
            "SELECT c.email, l.state FROM ledger l JOIN contacts c ON c.id = l.contact_id WHERE l.mail = 1")}
    finally:
        conn.close()


def test_reactivating_a_bounced_contact_puts_its_unsent_mail_back(configured_home, tmp_path, monkeypatch, run):
    monkeypatch.setenv("LOGNAME", "medewerker")
    with Server() as smtp:
        project = _stopped_after_one(tmp_path, monkeypatch, smtp, ["a@example.nl", "b@example.nl"])
        conn = project.connect()
        set_status(conn, ["b@example.nl"], status="bounced", reason="550 5.1.1 user unknown")
        conn.close()
        assert _states(project)["b@example.nl"] == "suppressed"
        result = run("contacts", "reactivate", "B@example.nl")
        assert result.exit_code == 0, result.output
        assert "Reactivated b***@example.nl" in result.output and "1 unsent mail" in result.output
        assert _states(project)["b@example.nl"] == "pending"
        shown = run("contacts", "show", "b@example.nl").output
        assert "reactivated by medewerker" in shown and "was bounced" in shown
        assert listed(run)["b@example.nl"]["status"] == "active"
        assert Worker(project, clock=lambda: MAIL1, rate_per_minute=1_000_000).run(once=True).sent == 1
        assert sorted(m["To"].addresses[0].addr_spec for m in smtp.recorder.messages) == ["a@example.nl", "b@example.nl"]


def test_reactivating_leaves_a_cancelled_mail_alone(configured_home, tmp_path, monkeypatch, run):
    with Server() as smtp:
        project = _stopped_after_one(tmp_path, monkeypatch, smtp, ["a@example.nl", "b@example.nl"])
        conn = project.connect()
        set_status(conn, ["b@example.nl"], status="bounced", reason="550 5.1.1 user unknown")
        cancel(conn, "gr2026", mail=1, now=MAIL1)
        conn.close()
        result = run("contacts", "reactivate", "b@example.nl")
        assert result.exit_code == 0, result.output
        assert "0 unsent mails" in result.output
        assert _states(project)["b@example.nl"] == "suppressed"


# --- contact lists as staff have them --------------------------------------------------------------

def _workbook(path: Path, rows: list[list], *, title: str = "Leden", more: dict[str, list[list]] | None = None) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = title
    for row in rows:
        ws.append(row)
    for name, extra_rows in (more or {}).items():
        other = wb.create_sheet(name)
        for row in extra_rows:
            other.append(row)
    wb.save(path)
    return path


def _with_cached_values(path: Path, values: dict[str, str]) -> None:
    """Give formula cells the value Excel would have stored with them (openpyxl stores none)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                text = data.decode()
                for ref, value in values.items():
                    start = text.index(f'<c r="{ref}"')
                    end = text.index("</c>", start)
                    cell = text[start:end].replace("<v></v>", f"<v>{value}</v>").replace(f'<c r="{ref}"', f'<c r="{ref}" t="str"', 1)
                    text = text[:start] + cell + text[end:]
                data = text.encode()
            target.writestr(item, data)
    path.write_bytes(buffer.getvalue())


def test_an_excel_workbook_is_imported_with_numbers_dates_empty_rows_and_formulas(run, tmp_path: Path):
    f = _workbook(tmp_path / "leden.xlsx", [
        ["E-mailadres", "Naam", "Partij", "Gemeente", "Telefoon", "Lid sinds", "Lijst"],
        ["an@example.nl", "An", "Lokaal", "Ede", 612345678, dt.date(2020, 1, 2), 3],
        [],
        ["bo@example.nl", "=B2&\" Bo\"", "Lokaal", "Ede", None, dt.datetime(2021, 5, 6, 13, 30), 2.5],
        [None, None, None, None],
    ])
    _with_cached_values(f, {"B4": "An Bo"})
    result = run("contacts", "import", str(f))
    assert result.exit_code == 0, result.output
    assert "Excel workbook, sheet 'Leden'" in result.output and "2 added" in result.output
    rows = listed(run)
    assert rows["an@example.nl"]["extra"] == {"telefoon": "612345678", "lid_sinds": "2020-01-02", "lijst": "3"}
    assert rows["bo@example.nl"]["name"] == "An Bo"
    assert rows["bo@example.nl"]["extra"] == {"telefoon": "", "lid_sinds": "2021-05-06 13:30", "lijst": "2.5"}
    assert rows["bo@example.nl"]["source"] == "leden.xlsx"


def test_an_excel_workbook_gets_file_row_errors_and_a_sheet_can_be_chosen(run, tmp_path: Path):
    f = _workbook(tmp_path / "leden.xlsx", [["Toelichting"], ["niets"]], title="Uitleg", more={
        "Leden": [["email", "partij", "gemeente"], ["ok@example.nl", "A", "Ede"], ["jan@@example.nl", "A", "Ede"],
                  ["leeg@example.nl", None, "Ede"], ["x@example.nl", "A", "Ede", None, "te veel"]]})
    result = run("contacts", "import", str(f))
    assert result.exit_code == 1
    assert "missing required column" in result.output and "'Toelichting'" in result.output
    result = run("contacts", "import", "--sheet", "Ledenlijst", str(f))
    assert result.exit_code == 1
    assert "has no sheet 'Ledenlijst'" in result.output and "'Uitleg', 'Leden'" in result.output
    result = run("contacts", "import", "--sheet", "Leden", str(f))
    assert result.exit_code == 1
    assert f"{f}:3: column 'email': 'jan@@example.nl' is not a valid address" in result.output
    assert f"{f}:4: column 'partij': is empty" in result.output
    assert f"{f}:5: column E has a value, but the header has 3 columns" in result.output
    assert listed(run) == {}


def test_an_xlsx_renamed_to_csv_is_read_as_a_workbook(run, tmp_path: Path):
    f = tmp_path / "leden.csv"
    _workbook(tmp_path / "leden.xlsx", [["email", "party", "municipality"], ["a@example.nl", "A", "Ede"]]).rename(f)
    result = run("contacts", "import", str(f))
    assert result.exit_code == 0, result.output
    assert "Excel workbook" in result.output and set(listed(run)) == {"a@example.nl"}


def test_an_old_xls_or_an_ods_file_gets_a_sentence_not_garbage(run, tmp_path: Path):
    xls = tmp_path / "leden.xls"
    xls.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600)
    result = run("contacts", "import", str(xls))
    assert result.exit_code == 1
    assert "Excel 97-2003" in result.output and "\x00" not in result.output
    ods = tmp_path / "leden.ods"
    with zipfile.ZipFile(ods, "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        z.writestr("content.xml", "<x/>")
    result = run("contacts", "import", str(ods))
    assert result.exit_code == 1
    assert "OpenDocument" in result.output and "save it as .xlsx or as CSV" in result.output


def test_utf16_unicode_text_from_excel_is_read(run, tmp_path: Path):
    f = tmp_path / "leden.txt"
    f.write_bytes("Naam\tE-mailadres\tPartij\tGemeente\r\nRenée Jansen\trenee@example.nl\tWijk\tZwolle\r\n"
                  .encode("utf-16"))
    result = run("contacts", "import", str(f))
    assert result.exit_code == 0, result.output
    assert "utf-16" in result.output and "'\\t'" in result.output
    assert listed(run)["renee@example.nl"]["name"] == "Renée Jansen"


def test_a_file_mixing_utf8_and_windows_1252_is_refused_naming_the_line(run, tmp_path: Path):
    f = tmp_path / "mixed.csv"
    f.write_bytes("naam;email;partij;gemeente\n".encode()
                  + "Zoë Bakker;zoe@example.nl;A;Ede\n".encode("cp1252")
                  + "Renée Jansen;renee@example.nl;A;Ede\n".encode("utf-8"))
    result = run("contacts", "import", "--skip-invalid", str(f))
    assert result.exit_code == 1
    assert f"{f}:3: " in result.output and "line 2" in result.output and "mixes" in result.output
    assert listed(run) == {}


def test_mojibake_in_a_utf8_file_is_refused_naming_the_line(run, tmp_path: Path):
    f = write(tmp_path / "dubbel.csv", "naam;email;partij;gemeente\nAn;an@example.nl;A;Ede\nRenÃ©e Jansen;renee@example.nl;A;Ede\n")
    result = run("contacts", "import", str(f))
    assert result.exit_code == 1
    assert f"{f}:3: 'Ã©' is what 'é' looks like" in result.output
    assert listed(run) == {}


def test_split_dutch_name_columns_make_the_name_and_extras_are_named(run, tmp_path: Path):
    f = write(tmp_path / "export.csv",
              "Voornaam;Tussenvoegsel;Achternaam;E-mail;Partij;Gemeente;Telefoon;Opmerking\n"
              "Jan;van der;Berg;jan@example.nl;A;Ede;0612345678;belt liever\n"
              "Els;;Smit;els@example.nl;A;Ede;;\n")
    result = run("contacts", "import", str(f))
    assert result.exit_code == 0, result.output
    assert "Name made from the columns Voornaam, Tussenvoegsel, Achternaam." in result.output
    assert "Kept as extra fields (contact.extra.NAME in templates): telefoon, opmerking." in result.output
    rows = listed(run)
    assert rows["jan@example.nl"]["name"] == "Jan van der Berg"
    assert rows["els@example.nl"]["name"] == "Els Smit"


def test_english_first_and_last_name_columns_make_the_name(run, tmp_path: Path):
    f = write(tmp_path / "export.csv", "First Name,Last Name,Email,Party,Municipality\nAnn,Lee,ann@example.org,A,Ede\n")
    result = run("contacts", "import", str(f))
    assert result.exit_code == 0, result.output
    assert listed(run)["ann@example.org"]["name"] == "Ann Lee"
    assert "Kept as extra fields" not in result.output
