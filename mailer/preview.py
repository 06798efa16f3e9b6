"""``campaign preview``: every mail as it will arrive, at desktop and phone width, with its checks.

The same pages are served on 127.0.0.1 (rebuilt and reloaded when a file changes) or written
as static files. Nothing on the pages loads anything from the network.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import hashlib
import hmac
import html
import json
import secrets
import threading
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from . import checks
from .contacts import Contact, _row_to_contact, address_key, example_contacts
from .errors import CampaignError, InvalidAddress
from .message import build_message
from .personalise import personalise
from .project import Project
from .i18n import N_, _, format_moment, language
from .render import Renderer

DESKTOP, PHONE = 600, 375

STYLE = """
*{box-sizing:border-box}body{margin:0;font:15px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;color:#1f1f1f;background:#f4f4f5}
header{background:#c8102e;color:#fff;padding:14px 24px;display:flex;gap:24px;align-items:center;flex-wrap:wrap}
header h1{font-size:18px;margin:0}header a{color:#fff}main{padding:20px 24px;max-width:1400px}
.sender{font-size:13px;opacity:.95}.warn{background:#fff4d6;color:#6b4b00;border:1px solid #f0d58a;padding:8px 12px;border-radius:6px;margin:0 0 16px}
table.inbox{border-collapse:collapse;width:100%;background:#fff;border-radius:8px;overflow:hidden}
.inbox td,.inbox th{padding:10px 12px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
.inbox a{color:inherit;text-decoration:none}.inbox tr:hover{background:#fbf3f4}.subject{font-weight:600}.pre{color:#666}
.ok{color:#17803d}.err{color:#b00020;font-weight:600}.wrn{color:#8a5a00}
nav.tabs{display:flex;gap:6px;margin:12px 0}nav.tabs button{border:1px solid #ccc;background:#fff;padding:6px 14px;border-radius:6px;cursor:pointer;font:inherit}
nav.tabs button[aria-selected=true]{background:#1f1f1f;color:#fff;border-color:#1f1f1f}
.panel{display:none}.panel.active{display:block}.views{display:flex;gap:24px;align-items:flex-start;flex-wrap:wrap}
.views figure{margin:0}.views figcaption{font-size:13px;color:#555;margin-bottom:6px}
iframe{border:1px solid #ccc;background:#fff;border-radius:4px;display:block}
pre{background:#fff;border:1px solid #ddd;padding:14px;overflow:auto;white-space:pre-wrap;word-break:break-word;font-size:13px}
dl.headers{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;background:#fff;padding:12px;border-radius:6px;font-size:13px}
dl.headers dt{color:#666}dl.headers dd{margin:0;word-break:break-all}
select{font:inherit;padding:4px}.nav a{margin-right:14px}
.picker{position:relative;font-size:14px}.picker input{font:inherit;padding:4px 8px;width:22em;margin-left:8px}
#contact-results{position:absolute;right:0;z-index:2;list-style:none;margin:4px 0 0;padding:0;background:#fff;color:#1f1f1f;
border-radius:6px;box-shadow:0 4px 14px rgba(0,0,0,.2);max-width:44em}#contact-results:empty{display:none}
#contact-results li{padding:6px 12px;border-bottom:1px solid #eee}#contact-results a{color:inherit;display:block}
#contact-results .more{color:#666;font-style:italic}
"""

RELOAD = """
<script>
(function(){var v=document.documentElement.dataset.version;
setInterval(function(){fetch('/__version',{cache:'no-store'}).then(function(r){return r.text()})
.then(function(t){if(t&&t!==v){location.reload()}}).catch(function(){})},400);})();
</script>"""

TABS = """
<script>
document.querySelectorAll('nav.tabs button').forEach(function(b){b.addEventListener('click',function(){
document.querySelectorAll('nav.tabs button').forEach(function(x){x.setAttribute('aria-selected','false')});
document.querySelectorAll('.panel').forEach(function(p){p.classList.remove('active')});
b.setAttribute('aria-selected','true');document.getElementById(b.dataset.panel).classList.add('active');});});
document.querySelectorAll('iframe').forEach(function(f){f.addEventListener('load',function(){
try{f.style.height=(f.contentDocument.documentElement.scrollHeight+4)+'px'}catch(e){}});});
</script>"""


def source_version(project: Project) -> str:
    """Changes whenever a content file, a template or a settings file changes."""
    h = hashlib.sha256()
    folders = [project.root / "campaigns" / project.campaign_name, project.templates]
    files = sorted(p for folder in folders if folder.is_dir() for p in folder.rglob("*") if p.is_file())
    files.append(project.home / "settings.toml")
    for path in files:
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        h.update(f"{path}:{st.st_mtime_ns}:{st.st_size};".encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Page:
    content_type: str
    body: bytes


# The preview's own texts (its chrome: the mails keep their language), marked for extraction here
# because the extractor does not look inside f-strings; translated where each page is made.
T = {
    "search": N_('Search by address, name, party or municipality'),
    "search_label": N_('Search another contact'),
    "preview": N_('Preview'),
    "cannot_build": N_('The campaign cannot be built.'),
    "fix_and_save": N_('Fix the file and save: this page reloads by itself.'),
    "from_": N_('From:'),
    "checks_pass": N_('✓ checks pass'),
    "draft": N_('draft'),
    "all_pass": N_('All checks pass.'),
    "previous": N_('← previous'),
    "next": N_('next →'),
    "all_mails": N_('All mails'),
    "views": N_('Desktop and phone'),
    "plain_text": N_('Plain text'),
    "html_source": N_('HTML source'),
    "desktop_view": N_('desktop view'),
    "phone_view": N_('phone view'),
    "from_column": N_('From'),
    "subject_column": N_('Subject and preheader'),
    "planned_column": N_('Planned'),
    "checks_column": N_('Checks'),
    "contact": N_('Contact ({source}):'),
    "title": N_('Preview: {name}'),
    "errors": N_('{count} error(s)'),
    "warnings": N_('{count} warning(s)'),
    "desktop": N_('Desktop, {width} px'),
    "phone": N_('Phone, {width} px'),
}


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _page(title: str, body: str, *, version: str, live: bool) -> bytes:
    # The page's language is the interface's: the mails inside keep their own (Dutch) in their frames.
    return (f'<!doctype html><html lang="{language()}" data-version="{_e(version)}"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{_e(title)}</title>'
            f"<style>{STYLE}</style></head><body>{body}{RELOAD + _picker_script() if live else ''}</body></html>"
            ).encode("utf-8")


def _picker_script() -> str:
    """The live picker's script with its two sentences in the interface language (as JSON strings)."""
    import json

    return (PICKER.replace("'More contacts match: type more to narrow the list.'",
                           json.dumps(_("More contacts match: type more to narrow the list.")))
            .replace("'No contact matches.'", json.dumps(_("No contact matches."))))


SEARCH_LIMIT = 20

# The live picker: a search box that asks the server for a few matches, so that no page holds
# the contact list. Results are built with textContent: names come from a spreadsheet.
PICKER = """
<script>
(function(){var box=document.getElementById('contact-search'),list=document.getElementById('contact-results'),timer=null,asked=0;
if(!box){return}
function show(found,n){if(n!==asked){return}list.replaceChildren();found.matches.forEach(function(m){
var li=document.createElement('li'),a=document.createElement('a');a.href=location.pathname+'?contact='+encodeURIComponent(m.email);
a.textContent=(m.name||m.email)+' \u00b7 '+m.party+', '+m.municipality+' <'+m.email+'>';li.appendChild(a);list.appendChild(li);});
if(found.more){var li=document.createElement('li');li.className='more';li.textContent='More contacts match: type more to narrow the list.';list.appendChild(li);}
if(!found.matches.length&&box.value.trim()){var li=document.createElement('li');li.className='more';li.textContent='No contact matches.';list.appendChild(li);}}
box.addEventListener('input',function(){clearTimeout(timer);timer=setTimeout(function(){var n=++asked,q=box.value.trim();
if(!q){list.replaceChildren();return}
fetch('/__contacts?q='+encodeURIComponent(q),{cache:'no-store'}).then(function(r){return r.json()}).then(function(f){show(f,n)}).catch(function(){});},150);});})();
</script>"""


def _fold(text: str) -> str:
    """Case and accents ignored: 'renee' finds Renée, 'unal' finds Ünal."""
    import unicodedata

    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)).casefold()


def _db_exists(project: Project) -> bool:
    from . import store

    # Looked up each time: a long-running preview sees contacts imported after it started.
    return store.db_path(project.home).exists()


def _lookup_key(address: str) -> str:
    try:
        return address_key(address)
    except InvalidAddress:
        return address.strip().casefold()


def chosen_contact(project: Project, contact: str | None) -> tuple[Contact, str]:
    """The contact the preview is personalised for, and which list it is from: the asked one among the
    active imported contacts (or, while none are imported, the example list), else the first."""
    key = _lookup_key(contact) if contact else None
    if _db_exists(project):
        with project.db() as conn:
            row = None
            if key:
                row = conn.execute("SELECT * FROM contacts WHERE email_key = ? AND status = 'active'", (key,)).fetchone()
            row = row or conn.execute("SELECT * FROM contacts WHERE status = 'active' ORDER BY id LIMIT 1").fetchone()
            if row is not None:
                return _row_to_contact(row), "imported contacts"
    examples = example_contacts(project.root)
    return next((c for c in examples if key and c.key == key), examples[0]), "contacts/example.csv"


def _matches(contact: Contact, folded: str) -> bool:
    if _fold(contact.email).startswith(folded):
        return True
    for value in (contact.name, contact.party, contact.municipality):
        value = _fold(value)
        if value.startswith(folded) or f" {folded}" in value:
            return True
    return False


def _search_imported(conn, folded: str, limit: int) -> tuple[list[Contact], bool]:
    # LIKE (in C, case-insensitive for ASCII) decides for the rows whose fields are ASCII; only the
    # few rows with other characters are folded in Python, which would take seconds for all of
    # 200,000 contacts. Addresses are ASCII in their normal form.
    def folded_match(name: str, party: str, municipality: str) -> bool:
        return any(v.startswith(folded) or f" {folded}" in v for v in map(_fold, (name, party, municipality)))

    conn.create_function("folded_match", 3, folded_match, deterministic=True)
    escaped = folded.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    like = " LIKE :{} ESCAPE '\\'"
    fields = " OR ".join(f"{f}{like.format('start')} OR {f}{like.format('word')}" for f in ("name", "party", "municipality"))
    rows = conn.execute(
        f"SELECT * FROM contacts WHERE status = 'active' AND (email_key{like.format('start')} OR {fields}"
        # A text longer in bytes than in characters holds something beyond ASCII.
        " OR (length(CAST(name || party || municipality AS BLOB)) != length(name || party || municipality)"
        " AND folded_match(name, party, municipality)))"
        " ORDER BY email_key LIMIT :limit",
        {"start": escaped + "%", "word": "% " + escaped + "%", "limit": limit + 1}).fetchall()
    found = [_row_to_contact(r) for r in rows]
    return found[:limit], len(found) > limit


def search_contacts(project: Project, query: str, *, limit: int = SEARCH_LIMIT) -> tuple[list[Contact], bool]:
    """At most ``limit`` contacts whose address, or a word of whose name, party or municipality, starts
    with ``query`` (case and accents ignored), and whether there are more."""
    folded = _fold(query.strip())
    if not folded:
        return [], False
    if _db_exists(project):
        with project.db() as conn:
            if conn.execute("SELECT 1 FROM contacts WHERE status = 'active' LIMIT 1").fetchone():
                return _search_imported(conn, folded, limit)
    if not (project.root / "contacts" / "example.csv").exists():
        return [], False  # no one to find: the pages say what to do
    found = [c for c in example_contacts(project.root) if _matches(c, folded)][:limit + 1]
    return found[:limit], len(found) > limit


def _picker(chosen: Contact, source: str, *, live: bool) -> str:
    """Who the mails are shown for; live, a search box to choose another (no list of everyone)."""
    who = (f"<span id='contact-current'>{_e(chosen.name or chosen.email)} · {_e(chosen.party)}, "
           f"{_e(chosen.municipality)}</span>")
    if not live:
        return f"<span class='picker'>{_e(_(T['contact']).format(source=source))} {who}</span>"
    return (f"<div class='picker'>{_e(_(T['contact']).format(source=source))} {who} <input type='search' "
            f"id='contact-search' placeholder='{_e(_(T['search']))}' "
            f"aria-label='{_e(_(T['search_label']))}' autocomplete='off'><ul id='contact-results'></ul></div>")


def _planned(project: Project) -> dict[int, dt.datetime]:
    if not project.db_exists:
        return {}
    from . import store
    from .schedule import get_plan

    conn = project.connect()
    try:
        plan = get_plan(conn, project.campaign_name)
        if plan is None or plan.cancelled:
            return {}
        return {r["mail"]: store.parse_iso(r["due_at"]) for r in conn.execute(
            "SELECT mail, due_at FROM schedule WHERE campaign = ? AND state != 'cancelled'", (project.campaign_name,))}
    finally:
        conn.close()


def build_site(project: Project, *, contact: str | None = None, live: bool = False, version: str = "",
               now: dt.datetime | None = None) -> dict[str, Page]:
    """Every page of the preview, by path (``index.html``, ``mail-N.html``, ``raw/N.html`` ...)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    try:
        return _build_site(project, contact=contact, live=live, version=version, now=now)
    except CampaignError as exc:
        body = (f"<header><h1>{_e(_(T['preview']))}</h1></header><main><div class='warn' role='alert'><strong>"
                f"{_e(_(T['cannot_build']))}</strong><pre>{_e(exc)}</pre>"
                f"{_e(_(T['fix_and_save']))}</div></main>")
        return {"index.html": Page("text/html; charset=utf-8", _page(_("Preview: error"), body, version=version,
                                                                      live=live))}


def _build_site(project: Project, *, contact: str | None, live: bool, version: str, now: dt.datetime) -> dict[str, Page]:
    campaign = project.load_campaign()
    settings = campaign.settings
    deployment = project.deployment()
    sender = deployment.sender
    chosen, source = chosen_contact(project, contact)
    planned = _planned(project)
    tz = settings.schedule.timezone
    query = f"?contact={urllib.parse.quote(chosen.email)}" if live else ""
    rendered = Renderer(templates=project.templates, campaign=campaign, deployment=deployment,
                        cache=project.render_cache).render_all()
    pages: dict[str, Page] = {}
    rows = []
    warn = ""
    if deployment.problems:
        warn = ("<p class='warn'>" + _e(_("Sender not configured: the mails show example values; sending beyond the "
                                          "outbox is refused until settings.toml holds the real sender.")) + "</p>")
    picker = _picker(chosen, _("imported contacts") if source == "imported contacts" else source, live=live)
    header = (f"<header><h1><a href='index.html{query}'>{_e(_(T['title']).format(name=settings.name))}</a></h1>"
              f"<span class='sender'>{_e(_(T['from_']))} {_e(sender.name)} &lt;{_e(sender.address)}&gt;</span>{picker}"
              "</header>")
    total = len(rendered)
    drafts = {m.number for m in campaign.mails if m.draft}
    for i, mail in enumerate(rendered):
        n = mail.number
        personal = personalise(mail, chosen, settings=settings)
        envelope = build_message(personal, sender=sender, campaign=settings, now=now)
        findings = checks.check_mail(mail, personal, envelope, campaign=settings)
        errors = [f for f in findings if f.level == "error"]
        when = planned.get(n)
        when_text = format_moment(when, tz) if when else _("not scheduled")
        verdict = (f"<span class='err'>{_e(_(T['errors']).format(count=len(errors)))}</span>" if errors else
                   f"<span class='wrn'>{_e(_(T['warnings']).format(count=len(findings)))}</span>" if findings
                   else f"<span class='ok'>{_e(_(T['checks_pass']))}</span>")
        draft = f"<span class='err draft'>{_e(_(T['draft']))}</span> " if n in drafts else ""
        verdict = draft + verdict
        rows.append(
            f"<tr data-mail='{n}'><td>{n}</td><td>{_e(sender.name)}</td><td><a href='mail-{n}.html{query}'>"
            f"<span class='subject'>{_e(personal.subject)}</span><br><span class='pre'>{_e(mail.preheader)}</span></a></td>"
            f"<td>{_e(when_text)}</td><td>{verdict}</td></tr>")
        pages[f"raw/{n}.html"] = Page("text/html; charset=utf-8", personal.html.encode("utf-8"))
        pages[f"raw/{n}.txt"] = Page("text/plain; charset=utf-8", personal.text.encode("utf-8"))
        parsed = email.message_from_bytes(envelope.data, policy=email.policy.default)
        headers = "".join(f"<dt>{_e(k)}</dt><dd>{_e(parsed[k])}</dd>" for k in
                          ("From", "To", "Reply-To", "Subject", "Date", "Message-ID", "List-Unsubscribe", "List-Id")
                          if parsed[k] is not None)
        levels = {"error": _("error"), "warning": _("warning")}
        finding_list = "".join(f"<li class='{'err' if f.level == 'error' else 'wrn'}'>{_e(levels.get(f.level, f.level))}: "
                               f"{_e(f.message)}</li>" for f in findings) or f"<li class='ok'>{_e(_(T['all_pass']))}</li>"
        prev_link = f"<a href='mail-{rendered[i - 1].number}.html{query}'>{_e(_(T['previous']))}</a>" if i > 0 else ""
        next_link = (f"<a href='mail-{rendered[i + 1].number}.html{query}'>{_e(_(T['next']))}</a>" if i + 1 < total
                     else "")
        body = (
            f"{header}<main>{warn}<p class='nav'><a href='index.html{query}'>{_e(_(T['all_mails']))}</a>{prev_link}"
            f"{next_link}</p>"
            f"<h2>{draft}{n}/{total} · {_e(personal.subject)}</h2><p class='pre'>{_e(mail.preheader)}</p>"
            f"<dl class='headers'>{headers}</dl><ul class='findings'>{finding_list}</ul>"
            "<nav class='tabs' role='tablist'>"
            f"<button role='tab' data-panel='p-views' aria-selected='true'>{_e(_(T['views']))}</button>"
            f"<button role='tab' data-panel='p-text' aria-selected='false'>{_e(_(T['plain_text']))}</button>"
            "<button role='tab' data-panel='p-mjml' aria-selected='false'>MJML</button>"
            f"<button role='tab' data-panel='p-html' aria-selected='false'>{_e(_(T['html_source']))}</button></nav>"
            f"<section id='p-views' class='panel active'><div class='views'>"
            f"<figure><figcaption>{_e(_(T['desktop']).format(width=DESKTOP))}</figcaption>"
            f"<iframe class='desktop' title='{_e(_(T['desktop_view']))}' "
            f"src='raw/{n}.html{query}' width='{DESKTOP}' height='900'></iframe></figure>"
            f"<figure><figcaption>{_e(_(T['phone']).format(width=PHONE))}</figcaption>"
            f"<iframe class='phone' title='{_e(_(T['phone_view']))}' "
            f"src='raw/{n}.html{query}' width='{PHONE}' height='900'></iframe></figure></div></section>"
            f"<section id='p-text' class='panel'><pre class='text'>{_e(personal.text)}</pre></section>"
            f"<section id='p-mjml' class='panel'><pre>{_e(mail.mjml)}</pre></section>"
            f"<section id='p-html' class='panel'><pre>{_e(personal.html)}</pre></section>"
            f"</main>{TABS}")
        pages[f"mail-{n}.html"] = Page("text/html; charset=utf-8", _page(f"{n}. {personal.subject}", body,
                                                                          version=version, live=live))
    index = (f"{header}<main>{warn}<table class='inbox'><thead><tr><th>#</th><th>{_e(_(T['from_column']))}</th>"
             f"<th>{_e(_(T['subject_column']))}</th><th>{_e(_(T['planned_column']))}</th><th>{_e(_(T['checks_column']))}</th></tr>"
             f"</thead><tbody>{''.join(rows)}</tbody></table></main>")
    pages["index.html"] = Page("text/html; charset=utf-8", _page(_("Preview: {name}").format(name=settings.name), index,
                                                                  version=version, live=live))
    return pages


def _page_owner(project: Project, contact: str | None) -> int | None:
    """The id of the imported contact the pages are made for; None for the example contacts.

    Pages hold the chosen contact only (no picker lists the others), so only that person's
    erasure removes them."""
    chosen, source = chosen_contact(project, contact)
    return chosen.id if source == "imported contacts" else None


def write_site(project: Project, out: Path, *, contact: str | None = None) -> list[Path]:
    """The preview as static files, for sharing with colleagues; owner-only, and recorded for erasure."""
    from . import files, store

    pages = build_site(project, contact=contact)
    owner = _page_owner(project, contact)
    paths = [out / name for name in pages]
    if owner is not None:
        with project.db() as conn:
            store.record_files(conn, paths, contact_id=owner)
    files.private_dir(out, tighten_existing=project.owns_folder(out))
    for path, page in zip(paths, pages.values()):
        if path.parent != out:
            files.private_dir(path.parent)
        files.write_private(path, page.body)
    return paths


TOKEN_PARAM = "token"
FORBIDDEN = (b"forbidden: open the preview at the address `campaign preview` printed; it holds this run's token, "
             b"and only a browser that opened it is answered")


class PreviewServer:
    """Serves the preview on 127.0.0.1; rebuilds when the sources change."""

    def __init__(self, project: Project, *, port: int = 0, contact: str | None = None) -> None:
        self.project = project
        self.default_contact = contact
        # Anyone on this machine can reach 127.0.0.1: the pages and the search hold personal data,
        # so only a browser that was given this run's secret (in the printed URL) is answered.
        self.token = secrets.token_urlsafe(24)
        self._cache: dict[tuple[str, str | None], dict[str, Page]] = {}
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                if not server.host_allowed(self.headers.get_all("Host") or []):
                    # A DNS-rebinding page reaches this port under a name of its own: it gets nothing.
                    self._send(421, "text/plain; charset=utf-8", b"misdirected request: open the preview at its own address")
                    return
                url = urllib.parse.urlsplit(self.path)
                if not self._authorised(url):
                    return
                if url.path == "/__contacts":
                    query = urllib.parse.parse_qs(url.query).get("q", [""])[0]
                    found, more = search_contacts(server.project, query)
                    body = json.dumps({"matches": [{"email": c.email, "name": c.name, "party": c.party,
                                                    "municipality": c.municipality} for c in found], "more": more},
                                      ensure_ascii=False).encode("utf-8")
                    self._send(200, "application/json; charset=utf-8", body)
                    return
                if url.path == "/__version":
                    self._send(200, "text/plain", source_version(server.project).encode())
                    return
                contact = urllib.parse.parse_qs(url.query).get("contact", [server.default_contact])[0]
                pages = server.pages(contact)
                name = url.path.lstrip("/") or "index.html"
                page = pages.get(name)
                if page is None and len(pages) == 1 and name.endswith(".html"):
                    page = pages["index.html"]  # the campaign is broken: every page shows the error
                if page is None:
                    self._send(404, "text/plain; charset=utf-8", b"not found")
                else:
                    self._send(200, page.content_type, page.body)

            def _authorised(self, url: urllib.parse.SplitResult) -> bool:
                """True when the request carries this run's cookie; otherwise it has been answered
                (a redirect that sets the cookie for the right token, else 403) and gets nothing more."""
                params = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
                tokens = [value for key, value in params if key == TOKEN_PARAM]
                if tokens:
                    if len(tokens) == 1 and server.token_matches(tokens[0]):
                        rest = urllib.parse.urlencode([(k, v) for k, v in params if k != TOKEN_PARAM])
                        # The token leaves the address bar (and the history); the cookie carries it.
                        self._send(303, "text/plain; charset=utf-8", b"see other", extra={
                            # One leading '/': '//host/...' would send the browser to another site.
                            "Location": "/" + url.path.lstrip("/") + (f"?{rest}" if rest else ""),
                            "Set-Cookie": f"{server.cookie_name}={server.token}; Path=/; HttpOnly; SameSite=Strict"})
                        return False
                elif server.cookie_matches(self.headers.get_all("Cookie") or []):
                    return True
                self._send(403, "text/plain; charset=utf-8", FORBIDDEN)
                return False

            def _send(self, code: int, content_type: str, body: bytes, *, extra: dict[str, str] | None = None) -> None:
                self.send_response(code)
                for name, value in (extra or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                # The mails must not load anything; the CSP makes the browser refuse if they try.
                self.send_header("Content-Security-Policy", "default-src 'self' 'unsafe-inline' data:")
                # Query strings hold a contact's address: never in a Referer to a site a mail links to.
                self.send_header("Referrer-Policy", "no-referrer")
                self.send_header("X-Content-Type-Options", "nosniff")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # query strings hold contact addresses: nothing is logged

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:PORT/``: where the pages are, once the browser holds the cookie."""
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    @property
    def url(self) -> str:
        """The address to open: the origin with this run's token, exchanged for a cookie on first use."""
        return f"{self.origin}?{TOKEN_PARAM}={self.token}"

    @property
    def cookie_name(self) -> str:
        # Browsers share a host's cookies across its ports: each preview port has a cookie of its own.
        return f"campaign_preview_{self.httpd.server_address[1]}"

    def token_matches(self, value: str) -> bool:
        """Whether ``value`` is this run's token, compared in constant time."""
        return hmac.compare_digest(value.encode("utf-8", "replace"), self.token.encode("ascii"))

    def cookie_matches(self, headers: list[str]) -> bool:
        """Whether a ``Cookie`` header holds this run's cookie with this run's token."""
        for header in headers:
            for pair in header.split(";"):
                name, sep, value = pair.strip().partition("=")
                if sep and name == self.cookie_name and self.token_matches(value.strip().strip('"')):
                    return True
        return False

    def host_allowed(self, hosts: list[str]) -> bool:
        """One Host header naming this server by a loopback name and its port; anything else (no
        Host, another name, as a rebinding attacker's page sends) is refused."""
        port = self.httpd.server_address[1]
        allowed = {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}
        return len(hosts) == 1 and hosts[0].strip().lower() in allowed

    def pages(self, contact: str | None) -> dict[str, Page]:
        version = source_version(self.project)
        with self._lock:
            key = (version, contact)
            if key not in self._cache:
                self._cache = {key: build_site(self.project, contact=contact, live=True, version=version)}
            return self._cache[key]

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.2)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
