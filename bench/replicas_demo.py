"""Several kbbot processes against one PostgreSQL, on loopback: what scaling out relies on, shown with the
real `kbbot serve` and `kbbot ingest`/`kbbot sync` processes.

    .venv/bin/python -m bench.replicas_demo

1. Starts an embedded PostgreSQL in a temporary directory and indexes the demo KB into it (`kbbot ingest`).
2. Starts a local fake of the Slack Web API and two `kbbot serve` replicas on two ports, both pointed at
   that one database (as two containers behind a load balancer would be).
3. Delivers one signed `app_mention` to replica A and Slack's retry of it (`X-Slack-Retry-Num: 1`) to
   replica B: the event id is claimed in PostgreSQL, so exactly one answer is posted and logged.
4. Sends more questions alternately to A and B: every answer lands in the one answer log.
5. Starts a long `kbbot ingest` and, while it runs, a `kbbot sync` in another process: the advisory lock
   refuses the second with the message the admin sees, and the first finishes.
6. Starts a hot standby of the database (streaming replication) and searches it through
   KBBOT_SEARCH_DATABASE_URL with `kbbot search`, while writes keep going to the primary.

Everything is created in a temporary directory and removed at the end; the processes are stopped by pid.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
from slack_sdk.signature import SignatureVerifier
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[1]
from retrieval.db import embedded_url  # noqa: E402
from tests.fakes.slack_api import BOT_USER_ID, TEAM_ID, FakeSlack  # noqa: E402
from tests.pg_standby import standby_of, wait_for_replay  # noqa: E402

KBBOT = str(REPO / ".venv" / "bin" / "kbbot")
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"  # the example signing secret of Slack's docs
AWS_CORPUS = REPO.parent / "shared" / "data" / "aws-docs-qa" / "corpus.jsonl"
QUESTIONS = ["How do I connect to the VPN?", "How many PTO days carry over?",
             "What do I do with a phishing email?", "How do I book travel?"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


@contextlib.contextmanager
def replica(env: dict[str, str], port: int, log_path: Path) -> Iterator[str]:
    """One `kbbot serve` process; stopped with SIGTERM (it finishes answers in flight), by its pid."""
    log = log_path.open("w")
    proc = subprocess.Popen([KBBOT, "serve", "--host", "127.0.0.1", "--port", str(port)], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # loading the embedding model on 2 busy cores takes a while
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"replica on port {port} exited; see {log_path}:\n{log_path.read_text()[-2000:]}")
            with contextlib.suppress(OSError), urllib.request.urlopen(url + "/healthz", timeout=2) as response:
                if response.status == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit(f"replica on port {port} did not become healthy; see {log_path}")
            time.sleep(0.5)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def deliver(url: str, fake: FakeSlack, event_id: str, question: str, *, message: dict | None = None,
            retry: int | None = None) -> tuple[int, dict]:
    message = message or fake.add_message("C0DEMO", "U0EMPLOYEE", f"<@{BOT_USER_ID}> {question}")
    envelope = {
        "token": "unused", "team_id": TEAM_ID, "api_app_id": "A0KBBOT", "type": "event_callback",
        "event_id": event_id, "event_time": int(time.time()),
        "event": {"type": "app_mention", "user": "U0EMPLOYEE", "text": message["text"], "ts": message["ts"],
                  "channel": "C0DEMO", "team": TEAM_ID, "event_ts": message["ts"]},
        "authorizations": [{"team_id": TEAM_ID, "user_id": BOT_USER_ID, "is_bot": True}],
    }
    body = json.dumps(envelope)
    ts = str(int(time.time()))
    headers = {"Content-Type": "application/json", "X-Slack-Request-Timestamp": ts,
               "X-Slack-Signature": SignatureVerifier(SECRET).generate_signature(timestamp=ts, body=body)}
    if retry is not None:
        headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
    request = urllib.request.Request(url + "/slack/events", data=body.encode(), headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, message


def count(conninfo: str, sql: str, *params: object) -> int:
    with psycopg.connect(conninfo) as conn:
        return int(conn.execute(sql, params).fetchone()[0])


def wait_until(predicate, timeout: float = 120.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return False


def check(ok: bool, what: str) -> None:
    print(("   OK   " if ok else "   FAIL ") + what, flush=True)
    if not ok:
        raise SystemExit(1)


def main() -> None:
    tmp_path = Path(tempfile.mkdtemp(prefix="kbbot-replicas-"))
    # Registered before the embedded server's own exit handler, so it runs after the server has stopped.
    atexit.register(shutil.rmtree, tmp_path, ignore_errors=True)
    step("one embedded PostgreSQL for every process")
    url = make_url(embedded_url(tmp_path / "data"))
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    print("   DATABASE_URL =", url.set(drivername="postgresql").render_as_string(hide_password=True))
    env = {**os.environ, "DATABASE_URL": conninfo, "KBBOT_DATA_DIR": str(tmp_path / "unused"),
           "SLACK_BOT_TOKEN": "xoxb-demo", "SLACK_SIGNING_SECRET": SECRET, "KBBOT_LOG_LEVEL": "WARNING",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    subprocess.run([KBBOT, "ingest", str(REPO / "demo_kb"), "--name", "demo", "--json"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    print("   demo KB indexed:", count(conninfo, "SELECT count(*) FROM chunks"), "chunks")

    with FakeSlack() as fake:
        env["SLACK_API_URL"] = fake.api_url
        step("two `kbbot serve` replicas on one database")
        with replica(env, free_port(), tmp_path / "a.log") as a, replica(env, free_port(), tmp_path / "b.log") as b:
            print(f"   replica A {a}, replica B {b}")

            step("an event to A, and Slack's retry of it to B")
            status_a, message = deliver(a, fake, "Ev0DEMO1", QUESTIONS[0])
            status_b, _ = deliver(b, fake, "Ev0DEMO1", QUESTIONS[0], message=message, retry=1)
            check(status_a == status_b == 200, "both replicas acknowledged at once (HTTP 200)")
            check(wait_until(lambda: count(conninfo, "SELECT count(*) FROM answers") >= 1),
                  "the question was answered")
            time.sleep(3)  # room for a duplicate answer to show up, if dedupe failed
            check(count(conninfo, "SELECT count(*) FROM answers") == 1, "answered once, not twice")
            check(count(conninfo, "SELECT count(*) FROM slack_events WHERE event_id = 'Ev0DEMO1'") == 1,
                  "the event id is claimed once in PostgreSQL (slack_events)")

            step("more questions, alternately to A and B")
            for i, question in enumerate(QUESTIONS[1:], start=2):
                deliver(a if i % 2 else b, fake, f"Ev0DEMO{i}", question)
            check(wait_until(lambda: count(conninfo, "SELECT count(*) FROM answers") == len(QUESTIONS)),
                  f"all {len(QUESTIONS)} answers are in the one answer log, whichever replica wrote them")
            threads = {c.params.get("thread_ts") for c in fake.calls_to("chat.postMessage")}
            print(f"   the fake Slack received replies in {len(threads - {None})} threads")

    step("two syncs at once: the advisory lock lets one run")
    source = tmp_path / "bulk.jsonl"
    if AWS_CORPUS.is_file():
        with AWS_CORPUS.open() as src, source.open("w") as dst:
            for _, line in zip(range(60), src, strict=False):
                dst.write(line)
    else:  # a generated source big enough to take a while to embed
        with source.open("w") as dst:
            for i in range(600):
                dst.write(json.dumps({"id": f"a{i}", "title": f"Article {i}",
                                      "text": f"Paragraph {i}. " * 200}) + "\n")
    first = subprocess.Popen([KBBOT, "ingest", str(source), "--name", "bulk", "--json"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        check(wait_until(lambda: count(conninfo, "SELECT count(*) FROM sync_runs WHERE status = 'running'") == 1),
              "the first sync is running (sync_runs.status = running)")
        second = subprocess.run([KBBOT, "sync"], env=env, capture_output=True, text=True, timeout=120)
        print("   second process said:", (second.stderr or second.stdout).strip().splitlines()[-1])
        check(second.returncode != 0 and "already running" in (second.stderr + second.stdout),
              "the second sync was refused with who/when, and exited non-zero")
        first.wait(timeout=1800)
    finally:
        if first.poll() is None:
            first.send_signal(signal.SIGTERM)
            first.wait(timeout=60)
    check(first.returncode == 0, "the first sync finished")
    runs = count(conninfo, "SELECT count(*) FROM sync_runs WHERE status = 'succeeded'")
    check(runs == 2, "sync_runs holds the demo ingest and the bulk ingest, both succeeded")
    step("a read replica for search (KBBOT_SEARCH_DATABASE_URL)")
    with standby_of(url, tmp_path / "replica") as replica_url:
        wait_for_replay(url, replica_url)
        replica_conninfo = replica_url.set(drivername="postgresql").render_as_string(hide_password=False)
        check(count(replica_conninfo, "SELECT pg_is_in_recovery()::int") == 1,
              "a hot standby streams from the primary (pg_basebackup -R, second postmaster)")
        searched = subprocess.run([KBBOT, "search", QUESTIONS[0], "--k", "1", "--json"], capture_output=True,
                                  text=True, env={**env, "KBBOT_SEARCH_DATABASE_URL": replica_conninfo}, check=True)
        print("   top hit from the replica:", json.loads(searched.stdout)["hits"][0]["title"])
        with psycopg.connect(replica_conninfo) as conn:
            scans = conn.execute("SELECT sum(idx_scan + seq_scan) FROM pg_stat_user_tables "
                                 "WHERE relname = 'embeddings'").fetchone()[0]
        check(bool(scans), "the search read the replica's tables")
    print("\nall checks passed")


if __name__ == "__main__":
    main()
