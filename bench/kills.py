"""How often a kill -9 at full speed duplicates a message (goal: at most 0.2 per kill and connection).

    .venv/bin/python bench/kills.py --contacts 20000 --kills 25 --connections 1
    .venv/bin/python bench/kills.py --code /tmp/old-checkout   # the same against other code

One home with ``--contacts`` contacts and mail 1 due now; Postfix's smtp-sink on 127.0.0.1
counts the messages it accepts (after the final dot). Again and again: start ``campaign worker
--once --rate 100000000``, wait until it sends, SIGKILL it at a random moment, and count the
rows it left in ``sending`` (the ambiguous ones, which the next start sends again). At the end
a last worker run finishes the list: every row must be ``sent`` (so nobody is missing), and
what the sink accepted beyond one message per contact are the duplicates.
"""

from __future__ import annotations

import argparse
import random
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402  (bench/run.py: the same preparation as the throughput benchmark)

MESG = re.compile(rb"mesg=(\d+)")


class CountingSink(bench.Sink):
    """smtp-sink -c: it reports how many messages it has accepted (after the final dot). A dump
    of each message (-D) would tell who got what, but writing it slows the sink's answer to the
    dot and so widens the very window this measures."""

    options = ("-c",)
    stdout = subprocess.PIPE

    def started(self) -> None:
        import threading

        self.messages = 0
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        # "sess=2 quit=0 mesg=2\r" after every session and every final dot.
        buf = b""
        while chunk := self.proc.stdout.read1(65536):
            buf += chunk
            *lines, buf = buf.split(b"\r")
            for line in reversed(lines):
                found = MESG.search(line)
                if found:
                    self.messages = int(found.group(1))
                    break

    def settled(self) -> int:
        """The count once the sink has caught up (no connection is open when this is asked)."""
        last, same = -1, 0
        while same < 5:
            time.sleep(0.02)
            same = same + 1 if self.messages == last else 0
            last = self.messages
        return last


def worker_cmd(project: Path, connections: int) -> list[str]:
    return [sys.executable, "-c", "import cli; cli.cli()", "--project", str(project), "worker", "--once",
            "--rate", "100000000", "--connections", str(connections)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=60000)
    parser.add_argument("--kills", type=int, default=25, help="kills that land while messages are being sent")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--code", type=Path, default=bench.ROOT, help="the checkout whose worker is measured")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    bench.ensure_tools()
    rng = random.Random(args.seed)
    code = args.code.resolve()
    with tempfile.TemporaryDirectory(prefix="campaign-kills-") as tmp:
        work = Path(tmp)
        kills = misses = ambiguous = 0
        with CountingSink() as sink:
            # The campaign of the measured code, moved to an election ahead (the bundled one is
            # past): the worker must send the very mail that `schedule` approved.
            env, home = bench.prepare_campaign(work, args.contacts, sink.port, source=code)
            # The measured code runs from its own folder, so that `import cli` finds it first.
            env = {**env, "PYTHONPATH": str(code)}
            db = home / "campaign.sqlite3"
            cmd = worker_cmd(bench.campaign_ahead(work, code), args.connections)
            while kills < args.kills:
                before = sink.messages
                proc = subprocess.Popen(cmd, env=env, cwd=code, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                # Start-up (imports, rendering, connecting) takes about half a second: wait until
                # the sink has taken a message of this run, then kill at a random moment after that.
                deadline = time.monotonic() + 20
                while proc.poll() is None and time.monotonic() < deadline and sink.messages == before:
                    time.sleep(0.002)
                time.sleep(rng.uniform(0.02, 0.3))
                proc.kill()
                proc.wait()
                conn = sqlite3.connect(db)
                left = conn.execute("SELECT COUNT(*) FROM ledger WHERE state = 'sending'").fetchone()[0]
                pending = conn.execute("SELECT COUNT(*) FROM ledger WHERE state = 'pending'").fetchone()[0]
                conn.close()
                if sink.settled() == before:
                    misses += 1  # killed before it sent anything: not a kill at full speed
                    if misses > 3 * args.kills:
                        raise RuntimeError("the worker never got to sending before the kill")
                    continue
                if not pending:
                    raise RuntimeError(f"the list ran out after {kills} kills: use more --contacts")
                kills += 1
                ambiguous += left
            started = time.perf_counter()
            final = subprocess.run(cmd, env=env, cwd=code, capture_output=True, text=True)
            if final.returncode:
                raise RuntimeError(f"the last worker run failed: {final.stderr[-2000:]}")
            accepted = sink.settled()
        conn = sqlite3.connect(db)
        states = dict(conn.execute("SELECT state, COUNT(*) FROM ledger GROUP BY state").fetchall())
        resent = conn.execute("SELECT SUM(resent) FROM ledger").fetchone()[0]
        conn.close()
    # A row is 'sent' only after the server's 250, so with every row sent nobody is missing and
    # every message the sink accepted beyond one per contact is a duplicate.
    complete = states == {"sent": args.contacts}
    duplicates = accepted - args.contacts
    per = duplicates / (kills * args.connections)
    print(f"code {code}: {args.contacts} contacts, {args.connections} connection(s), {kills} kills at full speed "
          f"(and {misses} that came before the first message)")
    print(f"rows left in 'sending' by the kills: {ambiguous} ({ambiguous / kills:.2f} per kill), sent again: {resent}")
    print(f"messages accepted by the sink: {accepted}; duplicates: {duplicates}, {per:.2f} per kill and connection "
          f"(goal: at most 0.2); ledger: {states}{'' if complete else ' INCOMPLETE'}")
    return 0 if complete else 1


if __name__ == "__main__":
    raise SystemExit(main())
