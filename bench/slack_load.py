"""Load test of the Slack bot on loopback: N signed `app_mention` events (a share of them delivered again as
Slack retries) sent to `kbbot serve` in HTTP mode, its Web API client pointed at the local fake
Slack. Side by side in one run, the same app served by bolt's built-in development server (`App.start`,
single-threaded `http.server`), the server the issue rules out for production.

    nice -n 10 .venv/bin/python -m bench.slack_load [--kb demo|aws] [--events 200] [--rate 2]
        [--retry-share 0.2] [--workers 8] [--only kbbot|dev] [--backends torch,onnx [--rounds 2]]

Events arrive open-loop at `--rate` per second (`--rate 0`: all at once, a burst), each re-delivered as a
Slack retry (`X-Slack-Retry-Num: 1`, half a second later) with probability `--retry-share`.

Measured per event, from the moment the request is sent:
- ack: the HTTP response to the event POST (Slack retries after 3 s; target p99 < 100 ms);
- first visible: the placeholder reaching the fake Web API (`chat.postMessage` in the thread; target < 1 s);
- full answer: the placeholder replaced by the answer (`chat.update` with blocks; target p95 < 2 s);
- duplicates: threads with more than one answer (target 0); errors: non-200 acks, error replies, missing
  answers (target 0).

`--passes 2` sends the same events (new ids, new threads, the same questions in the same order) again to the
same server once the first pass is answered: the first pass starts with an empty sentence-vector cache
(retrieval/embedding_cache.py), the second finds the passages of those questions in it, as a bot does for the
topics its users keep asking about.

`--backends torch,onnx` runs `kbbot serve` once per local embedding runtime (KBBOT_EMBEDDING_BACKEND) on the
same index and questions instead of the dev-server comparison, alternating the order over `--rounds`
(issue 17: before/after ONNX Runtime in one run). `--json-out` saves the results.

`--unit-states warmed,never,memory` runs a fresh `kbbot serve` per state of the answer sentences' stored
vectors (retrieval/unit_vectors.py), order alternated over `--rounds`: `warmed`, the table as the warm left
it (bench/unit_warm.py fills it; the share of passages prepared is recorded); `never`, a never-warmed table
(the rows are set aside for the run and put back after), as right after a first sync, with the server's
background warm starting; `memory`, the same empty table with the warm off: only the in-memory cache, the
cold path before the table existed (each answer's one read of the table finds nothing).

`--kb aws` uses the index of ../shared/data/aws-docs-qa (2,791 articles, ~40k passages) that
bench/ingest_aws.py keeps in ~/.cache/kbbot-bench/aws (KBBOT_BENCH_DIR), building it there if it is absent
(kbbot's Indexer, vectors from the shared embedding cache of bench/common.py); `--kb demo` indexes the
35-article demo KB into a temporary directory. Processes started here are stopped by pid at the end.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

from slack_sdk.signature import SignatureVerifier  # noqa: E402

from tests.fakes.slack_api import BOT_USER_ID, TEAM_ID, FakeSlack  # noqa: E402

# The CLI of the interpreter running this (a worktree has no .venv of its own; PYTHONPATH picks the code).
KBBOT = Path(sys.executable).parent / "kbbot"
AWS_DIR = REPO.parent / "shared" / "data" / "aws-docs-qa"
BENCH_DIR = Path(os.environ.get("KBBOT_BENCH_DIR", Path.home() / ".cache" / "kbbot-bench"))
SECRET = "bench-signing-secret"
SEARCHING = "Searching the knowledge base"
WARM_UP_QUESTION = "what does the cafeteria serve on fridays"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


# --- the index --------------------------------------------------------------------------------------

def prepare_index(kb: str, workdir: Path) -> tuple[Path, list[str]]:
    """(KBBOT_DATA_DIR holding an indexed KB, questions to ask)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "KBBOT_LOG_LEVEL": "WARNING"}
    env.pop("DATABASE_URL", None)
    if kb == "aws":
        # The index bench/ingest_aws.py keeps for the other benchmarks; built here if absent.
        data_dir = BENCH_DIR / "aws"
        env["KBBOT_DATA_DIR"] = str(data_dir)
        status = json.loads(subprocess.run([str(KBBOT), "status", "--json"], env=env, check=True,
                                           capture_output=True, text=True).stdout)
        if status["running"]:
            sys.exit(f"a sync of {data_dir} is running (started {status['running'].get('started_at')}): "
                     "run this benchmark when it ends")
        if status["articles"] == 0:
            from bench.ingest_aws import build_full_index

            print(f"indexing {AWS_DIR / 'corpus.jsonl'} into {data_dir} (once) …", flush=True)
            print(json.dumps(build_full_index(data_dir)), flush=True)
        questions = [json.loads(line)["text"] for line in (AWS_DIR / "queries.jsonl").open()]
        return data_dir, questions
    data_dir = workdir / "data"
    subprocess.run([str(KBBOT), "ingest", str(REPO / "demo_kb"), "--name", "demo", "--json"],
                   env={**env, "KBBOT_DATA_DIR": str(data_dir)}, check=True, stdout=subprocess.DEVNULL)
    questions = [json.loads(line)["text"] for line in (REPO / "demo_eval" / "queries.jsonl").open()]
    return data_dir, questions


# --- the servers ------------------------------------------------------------------------------------

def dev_server_main(port: int) -> None:
    """Child process: the same app, served by bolt's development server instead of waitress."""
    from bot.app import build_parts, create_app
    from bot.cli_serve import warm_up
    from bot.services import Services
    from retrieval.settings import load_settings

    settings = load_settings()
    services = Services(settings)
    app = create_app(settings, services, build_parts(settings.slack, services))
    warm_up(services)
    print(f"dev server listening on {port}", flush=True)
    app.start(port=port, path="/slack/events", http_server_logger_enabled=False)


def start_server(kind: str, data_dir: Path, fake: FakeSlack, workers: int, log_path: Path,
                 backend: str | None = None, extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "KBBOT_", "OPENAI_"))},
           "KBBOT_DATA_DIR": str(data_dir), "SLACK_BOT_TOKEN": "xoxb-bench", "SLACK_SIGNING_SECRET": SECRET,
           "SLACK_API_URL": fake.api_url, "PORT": str(port), "KBBOT_HOST": "127.0.0.1",
           "KBBOT_SLACK_WORKERS": str(workers), "KBBOT_LOG_LEVEL": "WARNING", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    if backend:
        env["KBBOT_EMBEDDING_BACKEND"] = backend
    env |= extra_env or {}
    env.pop("DATABASE_URL", None)
    dev = [sys.executable, "-m", "bench.slack_load", "_dev", str(port)]
    command = [str(KBBOT), "serve"] if kind == "kbbot" else dev
    log = log_path.open("w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{kind} server exited: {log_path.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return process, port
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"{kind} server did not start; see {log_path}")


def stop_server(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- the answer sentences' stored vectors ----------------------------------------------------------------

UNIT_STATES = ("warmed", "never", "memory")
SET_ASIDE = "unit_vectors_set_aside_by_bench"


def _index_db(data_dir: Path):  # type: ignore[no-untyped-def]
    from retrieval.db import Database
    from retrieval.settings import load_settings

    return Database.open(load_settings(_env_file=None, data_dir=data_dir).storage)


def restore_unit_vectors(data_dir: Path) -> None:
    """Put back rows a run set aside (also after a crash of an earlier run: called before any run)."""
    db = _index_db(data_dir)
    try:
        with db.raw_connection() as conn, conn.transaction():
            if conn.execute("SELECT to_regclass(%s)", (SET_ASIDE,)).fetchone()[0] is not None:  # type: ignore[index]
                conn.execute("DROP TABLE IF EXISTS unit_vectors")
                conn.execute(f"ALTER TABLE {SET_ASIDE} RENAME TO unit_vectors")
    finally:
        db.close()


def set_unit_vectors_aside(data_dir: Path) -> None:
    """An empty `unit_vectors` for one run (a rename: instant, and nothing is copied)."""
    db = _index_db(data_dir)
    try:
        with db.raw_connection() as conn, conn.transaction():
            conn.execute(f"ALTER TABLE unit_vectors RENAME TO {SET_ASIDE}")
            conn.execute(f"CREATE TABLE unit_vectors (LIKE {SET_ASIDE} INCLUDING ALL)")
    finally:
        db.close()


def unit_preparation(data_dir: Path) -> dict[str, int]:
    from retrieval.unit_warm import preparation

    db = _index_db(data_dir)
    try:
        with db.raw_connection() as conn:
            state = preparation(conn)
    finally:
        db.close()
    return {"prepared": state.prepared, "passages": state.passages} if state else {}


# --- the load ---------------------------------------------------------------------------------------

def post_event(url: str, event: dict[str, Any], event_id: str, retry: int | None) -> tuple[int, float]:
    body = json.dumps({
        "token": "unused", "team_id": TEAM_ID, "api_app_id": "A0BENCH", "event": event, "type": "event_callback",
        "event_id": event_id, "event_time": int(time.time()),
        "authorizations": [{"team_id": TEAM_ID, "user_id": BOT_USER_ID, "is_bot": True}],
    })
    ts = str(int(time.time()))
    headers = {"Content-Type": "application/json", "X-Slack-Request-Timestamp": ts,
               "X-Slack-Signature": SignatureVerifier(SECRET).generate_signature(timestamp=ts, body=body)}
    if retry:
        headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
    request = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError:  # refused or reset: Slack would count a failed delivery and retry
        status = 0
    return status, (time.perf_counter() - started) * 1000


def run_load(kind: str, port: int, fake: FakeSlack, questions: list[str], *, events: int, rate: float,
             concurrency: int, retry_share: float, seed: int) -> dict[str, Any]:
    """Send `events` mentions at `rate` per second (0: all at once), each retried with probability
    `retry_share` half a second later (as if Slack had missed the first ack); wait for every answer."""
    url = f"http://127.0.0.1:{port}/slack/events"
    rng = random.Random(seed)
    plan: list[tuple[float, dict[str, Any], str, int | None]] = []  # (send offset s, event, id, retry)
    for i in range(events):
        channel = f"C0LOAD{i % 20:02d}"
        message = fake.add_message(channel, f"U0ASKER{i % 50:02d}", f"<@{BOT_USER_ID}> {rng.choice(questions)}")
        event = {"type": "app_mention", "user": message["user"], "text": message["text"], "ts": message["ts"],
                 "channel": channel, "team": TEAM_ID, "event_ts": message["ts"]}
        offset = i / rate if rate > 0 else 0.0
        plan.append((offset, event, f"Ev{kind}{i:06d}", None))
        if rng.random() < retry_share:
            plan.append((offset + 0.5, event, f"Ev{kind}{i:06d}", 1))
    plan.sort(key=lambda item: item[0])
    sent_at: dict[str, float] = {}
    lock = threading.Lock()
    started = time.monotonic()

    def send(item: tuple[float, dict[str, Any], str, int | None]) -> tuple[int, float, bool]:
        offset, event, event_id, retry = item
        delay = started + offset - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        with lock:
            sent_at.setdefault(event["ts"], time.monotonic())
        status, ms = post_event(url, event, event_id, retry)
        return status, ms, retry is not None

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(send, plan))
    threads = {(e["channel"], e["ts"]) for _, e, _, _ in plan}
    # A thread none of whose deliveries was accepted cannot be answered: counted as missing, not awaited.
    accepted = {(item[1]["channel"], item[1]["ts"]) for item, (status, _, _) in zip(plan, results, strict=True)
                if status == 200}
    # Poll gently: the fake Web API shares this process, and a busy poll would slow down its replies.
    pending, deadline = set(accepted), time.monotonic() + 600
    while pending and time.monotonic() < deadline:
        time.sleep(1.0)
        pending = {t for t in pending if _final(fake, *t) is None}
    wall = time.monotonic() - started
    answered_at = [f[0] for c, ts in threads if (f := _final(fake, c, ts))]
    throughput = len(answered_at) / (max(answered_at) - started) if answered_at else 0.0
    acks = [ms for _, ms, _ in results]
    first_visible, full, errors, duplicates, missing = [], [], 0, 0, 0
    for channel, ts in threads:
        mine = [m for m in fake.thread(channel, ts) if m.get("user") == BOT_USER_ID]
        if len(mine) > 1:
            duplicates += 1
        posts = [c for c in fake.calls_to("chat.postMessage") if c.params.get("thread_ts") == ts]
        if posts:
            first_visible.append((posts[0].at - sent_at[ts]) * 1000)
        final = _final(fake, channel, ts)
        if final is None:
            missing += 1
            continue
        if "error id" in final[1].get("text", ""):
            errors += 1
        full.append((final[0] - sent_at[ts]) * 1000)
    return {
        "server": kind, "events": events, "rate_per_s": rate, "deliveries": len(plan),
        "retries": sum(r for _, _, r in results), "wall_s": round(wall, 1),
        "non_200_acks": sum(1 for s, _, _ in results if s != 200),
        "connection_failures": sum(1 for s, _, _ in results if s == 0),
        "ack_p50_ms": round(_pct(acks, 50), 1), "ack_p99_ms": round(_pct(acks, 99), 1),
        "ack_max_ms": round(max(acks), 1),
        "first_visible_p50_ms": round(_pct(first_visible, 50)), "first_visible_p95_ms": round(_pct(first_visible, 95)),
        "full_answer_p50_ms": round(_pct(full, 50)), "full_answer_p95_ms": round(_pct(full, 95)),
        "answers_per_s": round(throughput, 2), "duplicates": duplicates, "errors": errors, "missing": missing,
    }


def stage_breakdown(data_dir: Path, since: datetime, until: datetime) -> dict[str, float]:
    """Median latency per stage of the answers logged between `since` and `until`, from the answer log."""
    env = {**os.environ, "KBBOT_DATA_DIR": str(data_dir), "KBBOT_LOG_LEVEL": "WARNING"}
    env.pop("DATABASE_URL", None)
    out = subprocess.run([str(KBBOT), "answers", "export", "--since", since.isoformat(), "--format", "jsonl"],
                         env=env, check=True, capture_output=True, text=True).stdout
    stages: dict[str, list[float]] = {}
    for line in filter(None, out.split("\n")):  # not splitlines(): answers quote texts holding U+2028
        record = json.loads(line)
        if datetime.fromisoformat(record["created_at"]) > until:
            continue
        for stage, ms in record["latency_ms"].items():
            stages.setdefault(stage, []).append(ms)
    return {f"{stage}_p50_ms": round(_pct(values, 50), 1) for stage, values in sorted(stages.items())}


def _final(fake: FakeSlack, channel: str, ts: str) -> tuple[float, dict[str, Any]] | None:
    """(arrival time, message) of the call that turned the thread's placeholder into the answer."""
    for message in fake.thread(channel, ts):
        if message.get("user") == BOT_USER_ID and message.get("text") and SEARCHING not in message["text"]:
            updates = [c for c in fake.calls_to("chat.update") if c.params.get("ts") == message["ts"]]
            posts = [c for c in fake.calls_to("chat.postMessage") if c.params.get("thread_ts") == ts]
            at = updates[-1].at if updates else posts[-1].at
            return at, message
    return None


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "_dev":
        dev_server_main(int(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kb", choices=["demo", "aws"], default="demo")
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--rate", type=float, default=2.0, help="events per second; 0 sends all at once")
    parser.add_argument("--concurrency", type=int, default=32, help="client threads (open connections)")
    parser.add_argument("--retry-share", type=float, default=0.2)
    parser.add_argument("--workers", type=int, default=4, help="KBBOT_SLACK_WORKERS of the server")
    parser.add_argument("--only", choices=["kbbot", "dev"], help="Run one server only.")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--backends", help="comma-separated KBBOT_EMBEDDING_BACKEND values, e.g. torch,onnx: "
                        "`kbbot serve` once per runtime instead of the dev-server comparison")
    parser.add_argument("--rounds", type=int, default=1, help="with --backends: rounds, order alternated")
    parser.add_argument("--passes", type=int, default=1, help="the same events again to the same server "
                        "(the second pass finds the sentence-vector cache warm)")
    parser.add_argument("--unit-states", help="comma-separated of warmed,never,memory: `kbbot serve` once per "
                        "state of the answer sentences' stored vectors, order alternated over --rounds")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    if args.kb == "aws" and not AWS_DIR.exists():
        sys.exit(f"{AWS_DIR} is absent: use --kb demo")
    workdir = Path(tempfile.mkdtemp(prefix="kbbot-slack-load-"))
    results = []
    try:
        data_dir, questions = prepare_index(args.kb, workdir)
        runs: list[tuple[str, str | None, str | None]] = [
            (k, None, None) for k in ([args.only] if args.only else ["kbbot", "dev"])]
        if args.backends:
            names = args.backends.split(",")
            runs = [("kbbot", b, None) for n in range(args.rounds) for b in (names if n % 2 == 0 else names[::-1])]
        if args.unit_states:
            states = args.unit_states.split(",")
            if unknown := set(states) - set(UNIT_STATES):
                sys.exit(f"unknown --unit-states {sorted(unknown)}: choose from {', '.join(UNIT_STATES)}")
            runs = [("kbbot", None, u) for n in range(args.rounds) for u in (states if n % 2 == 0 else states[::-1])]
            restore_unit_vectors(data_dir)
        for number, (kind, backend, unit_state) in enumerate(runs):
            # Event ids unique across runs and invocations: the server remembers the deliveries it has seen in
            # the index's database, and a repeated id is dropped as a Slack retry (no answer, a 600 s wait).
            label = f"{kind}{(backend or '').replace('-', '')}{unit_state or ''}{number}t{int(time.time())}"
            passes: list[tuple[dict[str, Any], datetime, datetime]] = []
            extra_env = {}
            if unit_state in ("never", "memory"):
                set_unit_vectors_aside(data_dir)
                extra_env["KBBOT_PREPARE_ANSWER_SENTENCES"] = "true" if unit_state == "never" else "false"
            prepared = unit_preparation(data_dir) if unit_state else None
            if unit_state == "warmed" and prepared and prepared["prepared"] < prepared["passages"]:
                # What a completed warm leaves: nothing to prepare. A partly warmed index (the passages of
                # the questions only, bench/unit_warm.py --questions) would otherwise start the rest now.
                extra_env["KBBOT_PREPARE_ANSWER_SENTENCES"] = "false"
            with FakeSlack() as fake:
                process, port = start_server(kind, data_dir, fake, args.workers, workdir / f"{kind}.log", backend,
                                             extra_env)
                try:
                    # One question first, off every topic of the set: the model and the database pool are
                    # warm in every server, and no passage of the questions is cached by it.
                    run_load(f"{label}warm", port, fake, [WARM_UP_QUESTION], events=1, rate=0, concurrency=1,
                             retry_share=0, seed=args.seed)
                    for number_of_pass in range(1, args.passes + 1):
                        since = datetime.now(UTC)
                        load_before = round(os.getloadavg()[0], 1)
                        result = run_load(f"{label}p{number_of_pass}", port, fake, questions, events=args.events,
                                          rate=args.rate, concurrency=args.concurrency,
                                          retry_share=args.retry_share, seed=args.seed)
                        result |= {"pass": number_of_pass, "load_avg_1m_before": load_before}
                        passes.append((result, since, datetime.now(UTC)))
                finally:
                    stop_server(process)
                    if unit_state in ("never", "memory"):
                        restore_unit_vectors(data_dir)
            for result, since, until in passes:
                result["stages"] = stage_breakdown(data_dir, since, until)
                result["kb"], result["server"] = args.kb, kind
                result["embedding_backend"] = backend or "default"
                if unit_state:
                    result["unit_vectors"] = {"state": unit_state, **(prepared or {}),
                                              "warm_running": extra_env.get("KBBOT_PREPARE_ANSWER_SENTENCES",
                                                                            "true") == "true"}
                result["load_avg_1m_after"] = round(os.getloadavg()[0], 1)
                results.append(result)
                print(json.dumps(result), flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps({"args": vars(args) | {"json_out": str(args.json_out)},
                                             "runs": results}, indent=2) + "\n")
    if len(results) == 2 and not args.backends:
        a, b = results
        print(f"ack p99: kbbot serve {a['ack_p99_ms']} ms vs bolt dev server {b['ack_p99_ms']} ms "
              f"(x{b['ack_p99_ms'] / a['ack_p99_ms']:.1f}); full answer p95: {a['full_answer_p95_ms']} ms vs "
              f"{b['full_answer_p95_ms']} ms (x{b['full_answer_p95_ms'] / max(a['full_answer_p95_ms'], 1):.2f})")


if __name__ == "__main__":
    main()
