"""Benchmarks for `campaign`, each side by side with its baseline in the same run.

    make bench                       # all of them (about 16 minutes on 2 cores)
    .venv/bin/python bench/run.py --sizes 1000 --only delivery

Absolute times on a shared 2-core machine are noise; the ratios against a baseline measured
in the same run are the figures to compare. Installs what it needs: Postfix's smtp-sink and
smtp-source (Debian package postfix) and mailmerge (PyPI, in bench/.peers).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
CAMPAIGN = str(VENV_BIN / "campaign")
PEERS = ROOT / "bench" / ".peers"
RESULTS = ROOT / "bench" / "results"

SETTINGS = """\
[sender]
name = "Leger des Heils"
address = "campagne@bench-zender.nl"
reply_to = "campagne@bench-zender.nl"
contact = "Benchstraat 1, 1000 AA Benchstad"
optout_address = "afmelden@bench-zender.nl"
[test]
recipients = ["staf@bench-zender.nl"]
[signatory]
name = "Bench Ondertekenaar"
role = "beleidsadviseur"
email = "beleid@bench-zender.nl"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_tools() -> None:
    if not shutil.which("smtp-sink"):
        print("installing Debian's postfix for smtp-sink and smtp-source", file=sys.stderr)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "postfix"], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, stdout=subprocess.DEVNULL)
    if not (PEERS / "bin" / "mailmerge").exists():
        print("installing mailmerge into bench/.peers", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(PEERS)], check=True)
        subprocess.run([str(PEERS / "bin" / "pip"), "install", "-q", "mailmerge"], check=True)


class Sink:
    """Postfix's smtp-sink on 127.0.0.1: accepts and discards, fast enough not to be the bottleneck."""

    options: tuple[str, ...] = ()  # more smtp-sink options (a subclass that reads its output)
    stdout = subprocess.DEVNULL

    def started(self) -> None:
        """Called once the process runs, before it listens."""

    def __enter__(self) -> "Sink":
        self.port = free_port()
        self.proc = subprocess.Popen(["smtp-sink", *self.options, "-u", "nobody", f"127.0.0.1:{self.port}", "256"],
                                     stdout=self.stdout, stderr=subprocess.DEVNULL)
        self.started()
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise RuntimeError("smtp-sink did not start")

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait()


def measured(cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path = ROOT) -> dict:
    """Run a command; wall time, CPU time (user + system) and peak RSS of that process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{cmd[0]} failed: {err[-2000:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024}


def contacts_file(folder: Path, n: int) -> Path:
    path = folder / f"contacts-{n}.csv"
    with path.open("w", encoding="utf-8") as fh:
        fh.write("email,name,party,municipality\n")
        for i in range(n):
            fh.write(f"persoon{i:06d}@bench-ontvanger.nl,Persoon {i},Partij {i % 40},Gemeente {i % 300}\n")
    return path


def campaign_env(home: Path, port: int) -> dict[str, str]:
    return {**os.environ, "CAMPAIGN_HOME": str(home), "CAMPAIGN_SMTP_URL": f"smtp://127.0.0.1:{port}"}


def campaign_ahead(work: Path, source: Path = ROOT) -> Path:
    """A copy of ``source``'s project whose campaign is for an election 400 days ahead (the
    bundled one is past), as `campaign new --from-campaign` makes one: the same content, another
    election_day."""
    project = work / "project"
    if not project.exists():
        for name in ("campaigns", "templates", "contacts"):
            shutil.copytree(source / name, project / name)
        toml = project / "campaigns" / "gr2026" / "campaign.toml"
        election = (dt.date.today() + dt.timedelta(days=400)).isoformat()
        text = toml.read_text(encoding="utf-8")
        toml.write_text("\n".join(f"election_day = {election}" if line.startswith("election_day =") else line
                                  for line in text.splitlines()) + "\n", encoding="utf-8")
    return project


def prepare_campaign(work: Path, n: int, port: int, tag: str = "", *, source: Path = ROOT) -> tuple[dict[str, str], Path]:
    home = work / f"home-{n}{tag}"
    home.mkdir()
    (home / "settings.toml").write_text(SETTINGS, encoding="utf-8")
    env = campaign_env(home, port)
    for args in (["contacts", "import", str(contacts_file(work, n))],
                 ["schedule", "--yes"],
                 ["reschedule", "--mail", "1", "--at", "now"]):
        done = subprocess.run([CAMPAIGN, *args], env=env, cwd=campaign_ahead(work, source), capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"campaign {' '.join(args)} failed: {done.stderr}")
    return env, home


def worker_run(cmd: list[str], env: dict[str, str], n: int, *, cwd: Path) -> dict:
    """A measured worker run, which must have sent mail 1 to all ``n`` contacts: a rate over
    fewer messages than it claims would flatter the worker."""
    import sqlite3

    result = measured(cmd, env=env, cwd=cwd)
    conn = sqlite3.connect(Path(env["CAMPAIGN_HOME"]) / "campaign.sqlite3")
    sent = conn.execute("SELECT COUNT(*) FROM ledger WHERE mail = 1 AND state = 'sent'").fetchone()[0]
    conn.close()
    if sent != n:
        raise RuntimeError(f"{' '.join(cmd[1:])}: sent {sent} of {n} messages")
    return result


def fresh_env(home: Path, tag: str, port: int) -> dict[str, str]:
    """The environment for a copy of a prepared home: each worker run needs one where mail 1
    is still unsent."""
    copy = home.with_name(f"{home.name}-{tag}")
    shutil.copytree(home, copy)
    return campaign_env(copy, port)


def bench_delivery(sizes: list[int], work: Path, *, peers: bool = True, connections: list[int] = (),
                   repeat: int = 3) -> list[dict]:
    """Each configuration runs ``repeat`` times, interleaved with its baselines so that all of
    them see the same machine, and the medians are reported; mailmerge runs once above 10,000
    contacts, where its rate is as steady as below and a run takes minutes."""
    rows = []
    worker = [CAMPAIGN, "worker", "--once", "--rate", "100000000"]
    project = campaign_ahead(work)
    with Sink() as sink:
        # Fixed cost (start-up, rendering) from one-contact runs, to get the cost per message.
        _, home1 = prepare_campaign(work, 1, sink.port)
        mm1 = work / "mailmerge-1"
        fixed, mm_fixed = [], []
        for i in range(repeat):
            fixed.append(worker_run(worker, fresh_env(home1, f"r{i}", sink.port), 1, cwd=project))
        for n in sizes:
            _, home = prepare_campaign(work, n, sink.port)
            # The same rendered mail as an .eml, for the peers.
            sample = work / f"sample-{n}"
            subprocess.run([CAMPAIGN, "build", "--out", str(sample), "--contact", "persoon000000@bench-ontvanger.nl"],
                           env={**campaign_env(home, sink.port), "CAMPAIGN_SMTP_URL": ""}, cwd=project, check=True,
                           stdout=subprocess.DEVNULL)
            eml = (sample / "01-wonen-eerst.eml").read_bytes()
            html = (sample / "01-wonen-eerst.html").read_text(encoding="utf-8")
            if peers and not mm_fixed:
                mm_fixed = [bench_mailmerge(mm1, 1, sink.port, html) for _ in range(repeat)]
            runs: dict[str, list[dict]] = {"ours": [], "mm": [], "src": [], **{f"k{k}": [] for k in connections}}
            for i in range(repeat):
                runs["ours"].append(worker_run(worker, fresh_env(home, f"r{i}", sink.port), n, cwd=project))
                for k in connections:
                    runs[f"k{k}"].append(worker_run([*worker, "--connections", str(k)],
                                                    fresh_env(home, f"k{k}r{i}", sink.port), n, cwd=project))
                if peers and (i == 0 or n <= 10_000):  # mailmerge takes minutes for 50,000
                    runs["mm"].append(bench_mailmerge(work / f"mailmerge-{n}", n, sink.port, html))
                runs["src"].append(measured(["smtp-source", "-s", "1", "-m", str(n), "-l", str(len(eml)), "-f",
                                             "campagne@bench-zender.nl", "-t", "persoon@bench-ontvanger.nl",
                                             f"127.0.0.1:{sink.port}"]))
            ours, src = median_of(runs["ours"]), median_of(runs["src"])
            mm = median_of(runs["mm"]) if peers else {"wall": float("nan"), "cpu": float("nan"), "rss_mb": 0}
            f, mmf = median_of(fixed), median_of(mm_fixed) if peers else {"wall": float("nan")}
            rows.append({
                "n": n, "size_kb": len(eml) / 1024, "runs": len(runs["ours"]),
                "ours_rate": n / ours["wall"], "ours_cpu_ms": (ours["cpu"] - f["cpu"]) / max(n - 1, 1) * 1000,
                "ours_rss": ours["rss_mb"], "ours_steady": (n - 1) / max(ours["wall"] - f["wall"], 1e-9),
                "mm_rate": n / mm["wall"], "mm_cpu_ms": mm["cpu"] / n * 1000, "mm_rss": mm["rss_mb"],
                "mm_steady": (n - 1) / max(mm["wall"] - mmf["wall"], 1e-9),
                "src_rate": n / src["wall"], "ours_wall": ours["wall"], "fixed_wall": f["wall"],
                "parallel": {k: n / median_of(runs[f"k{k}"])["wall"] for k in connections},
            })
            print(f"  delivery {n}: ours {rows[-1]['ours_rate']:.0f}/s, mailmerge {rows[-1]['mm_rate']:.0f}/s, "
                  f"smtp-source {rows[-1]['src_rate']:.0f}/s", file=sys.stderr)
            shutil.rmtree(work / f"mailmerge-{n}", ignore_errors=True)
            for copy in work.glob(f"{home.name}-*"):
                shutil.rmtree(copy)
    return rows


def median_of(runs: list[dict]) -> dict:
    """The run with the median wall time (its CPU and memory with it)."""
    return sorted(runs, key=lambda r: r["wall"])[len(runs) // 2]


def bench_mailmerge(folder: Path, n: int, port: int, html: str) -> dict:
    folder.mkdir(exist_ok=True)
    (folder / "server.conf").write_text(
        f"[smtp_server]\nhost = 127.0.0.1\nport = {port}\nsecurity = Never\nratelimit = 0\n", encoding="utf-8")
    with (folder / "db.csv").open("w", encoding="utf-8") as fh:
        fh.write("email,name\n")
        for i in range(n):
            fh.write(f"persoon{i:06d}@bench-ontvanger.nl,Persoon {i}\n")
    (folder / "template.txt").write_text(
        "TO: {{email}}\nSUBJECT: Wonen Eerst: herstel begint met een thuis\nFROM: Leger des Heils <campagne@bench-zender.nl>\n"
        "Content-Type: text/html\n\n{% raw %}" + html + "{% endraw %}\n", encoding="utf-8")
    return measured([str(PEERS / "bin" / "mailmerge"), "--template", "template.txt", "--database", "db.csv",
                     "--config", "server.conf", "--no-limit", "--no-dry-run", "--output-format", "raw"], cwd=folder)


def median_run(cmd: list[str], repeat: int, env: dict[str, str] | None = None) -> float:
    return statistics.median(measured(cmd, env=env)["wall"] for _ in range(repeat))


def bench_startup(repeat: int = 15) -> dict:
    base, ours = [], []
    for _ in range(repeat):  # alternate, so both see the same machine
        base.append(measured([sys.executable, "-c", "pass"])["wall"])
        ours.append(measured([CAMPAIGN, "--help"])["wall"])
    return {"python": statistics.median(base), "help": statistics.median(ours)}


def bench_render(work: Path, repeat: int = 5) -> dict:
    code = ("import sys; sys.path.insert(0, %r); from pathlib import Path; from mailer.project import Project; "
            "from mailer.service import render_all; render_all(Project.at(Path(%r)))") % (str(ROOT), str(ROOT))
    env = {**os.environ, "CAMPAIGN_HOME": str(work / "render-home")}
    cold = []
    for _ in range(repeat):  # cold: no rendered mail stored by an earlier process
        shutil.rmtree(work / "render-home", ignore_errors=True)
        cold.append(measured([sys.executable, "-c", code], env=env)["wall"])
    cold = statistics.median(cold)
    stored = median_run([sys.executable, "-c", code], repeat, env)  # what the worker, status and check see
    base = median_run([sys.executable, "-c", "pass"], repeat, env)
    # Warm: what the preview does after a content edit, in one process.
    warm_code = r"""
import os, shutil, statistics, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, %r)
from mailer.preview import build_site
from mailer.project import Project
root = Path(tempfile.mkdtemp())
for name in ("campaigns", "templates", "contacts"):
    shutil.copytree(Path(%r) / name, root / name)
project = Project.at(root)
build_site(project)
path = root / "campaigns/gr2026/mails/05-jeugd.md"
times = []
for i in range(7):
    path.write_text(path.read_text(encoding="utf-8") + "\nExtra zin %%d.\n" %% i, encoding="utf-8")
    start = time.perf_counter()
    build_site(project)
    times.append(time.perf_counter() - start)
print(statistics.median(times))
""" % (str(ROOT), str(ROOT))
    out = subprocess.run([sys.executable, "-c", warm_code], env=env, capture_output=True, text=True, check=True)
    return {"cold": cold, "stored": stored, "python": base, "warm_rebuild": float(out.stdout.strip())}


def bench_import(work: Path, n: int = 50_000) -> dict:
    path = contacts_file(work, n)
    home = work / "import-home"
    ours = measured([CAMPAIGN, "contacts", "import", str(path)], env={**os.environ, "CAMPAIGN_HOME": str(home)})
    parse = ("import csv, sys; f = open(sys.argv[1], newline='', encoding='utf-8'); "
             "rows = list(csv.reader(f)); print(len(rows))")
    base = measured([sys.executable, "-c", parse, str(path)])
    return {"n": n, "ours": ours["wall"], "csv": base["wall"], "rss": ours["rss_mb"]}


def report(delivery: list[dict], startup: dict | None, render: dict | None, imp: dict | None) -> str:
    lines = [f"Benchmarks of {dt.date.today().isoformat()} on {os.cpu_count()} cores "
             f"(`make bench`; ratios are against the baseline in the same run).", ""]
    if delivery:
        lines += ["**Delivery** of mail 1 into Postfix's smtp-sink, one SMTP session each (median of "
                  f"{delivery[0]['runs']} interleaved runs; mailmerge once above 10,000 contacts):", "",
                  "| contacts | message | campaign msg/s | mailmerge msg/s | smtp-source msg/s | vs mailmerge | vs smtp-source "
                  "| after start-up: campaign / mailmerge | CPU/msg campaign | CPU/msg mailmerge | peak RSS campaign |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in delivery:
            lines.append(f"| {r['n']:,} | {r['size_kb']:.1f} KB | {r['ours_rate']:.0f} | {r['mm_rate']:.0f} | {r['src_rate']:.0f} "
                         f"| {r['ours_rate'] / r['mm_rate']:.1f}x | {r['ours_rate'] / r['src_rate']:.2f}x "
                         f"| {r['ours_steady']:.0f} / {r['mm_steady']:.0f} ({r['ours_steady'] / r['mm_steady']:.1f}x) "
                         f"| {r['ours_cpu_ms']:.2f} ms | {r['mm_cpu_ms']:.2f} ms | {r['ours_rss']:.0f} MB |")
        for k in sorted({k for r in delivery for k in r["parallel"]}):
            cells = ", ".join(f"{r['n']:,}: {r['parallel'][k]:.0f} msg/s ({r['parallel'][k] / r['mm_rate']:.1f}x mailmerge, "
                              f"{r['parallel'][k] / r['src_rate']:.2f}x smtp-source)" for r in delivery)
            lines += ["", f"With `--connections {k}` (each connection one message in flight): {cells}."]
        small, large = delivery[0], delivery[-1]
        lines += ["", f"Peak memory at {large['n']:,} contacts is {large['ours_rss'] / small['ours_rss']:.2f}x that at "
                      f"{small['n']:,} (goal: at most 1.3x). Fixed cost of a worker run (start-up, rendering): "
                      f"{delivery[0]['fixed_wall']:.2f} s.", ""]
    if render:
        lines += [f"**Rendering** all nine mails in a new process: {render['cold'] * 1000:.0f} ms "
                  f"({render['cold'] / render['python']:.1f}x `python -c pass`, {render['python'] * 1000:.0f} ms); "
                  f"when an earlier process stored them (worker, status, check): {render['stored'] * 1000:.0f} ms; "
                  f"rebuild after editing one content file, as the preview does: {render['warm_rebuild'] * 1000:.0f} ms "
                  "(goal: under 150 ms).", ""]
    if startup:
        lines += [f"**Start-up**: `campaign --help` {startup['help'] * 1000:.0f} ms against `python -c pass` "
                  f"{startup['python'] * 1000:.0f} ms: {(startup['help'] - startup['python']) * 1000:.0f} ms more "
                  "(goal: within 150 ms).", ""]
    if imp:
        lines += [f"**Contact import** of {imp['n']:,} rows: {imp['ours']:.2f} s against {imp['csv']:.2f} s for reading the "
                  f"same file with `csv.reader` ({imp['ours'] / imp['csv']:.1f}x), peak RSS {imp['rss']:.0f} MB.", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,50000", help="contact counts for the delivery benchmark")
    parser.add_argument("--only", choices=["delivery", "startup", "render", "import"], action="append")
    parser.add_argument("--no-peers", action="store_true", help="skip mailmerge (quick runs while profiling)")
    parser.add_argument("--connections", default="4", help="also measure the worker with these connection counts")
    parser.add_argument("--repeat", type=int, default=3, help="runs per delivery measurement up to 10,000 contacts")
    args = parser.parse_args()
    only = set(args.only or ["delivery", "startup", "render", "import"])
    sizes = [int(s) for s in args.sizes.split(",")]
    if "delivery" in only:
        ensure_tools()
    with tempfile.TemporaryDirectory(prefix="campaign-bench-") as tmp:
        work = Path(tmp)
        startup = bench_startup() if "startup" in only else None
        render = bench_render(work) if "render" in only else None
        imp = bench_import(work) if "import" in only else None
        parallel = [int(k) for k in args.connections.split(",") if k.strip()]
        delivery = bench_delivery(sizes, work, peers=not args.no_peers, connections=parallel, repeat=args.repeat) if "delivery" in only else []
    text = report(delivery, startup, render, imp)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.md").write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
