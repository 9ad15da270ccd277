"""Rolling deploys: an older kbbot on a database a newer one migrated runs (with a warning) when every newer
migration keeps its code working, and otherwise refuses with one line naming the release to upgrade to.

"Older" and "newer" kbbots are real copies of this code tree in their own directories, run as separate
processes: the older one without this tree's newest migration (the code as of the previous head), the
newer one with one more migration. They migrate and open the same real PostgreSQL database.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from retrieval.db import Database
from retrieval.errors import SchemaError
from retrieval.schema_versions import CodeSchema, read_database_schema

REPO = Path(__file__).resolve().parents[1]
HEAD = CodeSchema.load().head
OPEN = (
    "import logging, sys\n"
    "logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(message)s')\n"
    "from retrieval.db import Database\n"
    "from retrieval.errors import KbbotError\n"
    "try:\n"
    "    Database.from_url(sys.argv[1]).close()\n"
    "except KbbotError as exc:\n"
    "    print(exc, file=sys.stderr)\n"
    "    sys.exit(1)\n"
)


def _code_tree(root: Path) -> Path:
    for package in ("retrieval", "migrations"):
        shutil.copytree(REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def previous_release(root: Path) -> Path:
    """This code as it was at the previous head: the newest migration is not there yet."""
    tree = _code_tree(root)
    newest = CodeSchema.load().script.get_revision(HEAD)
    assert newest is not None and newest.path is not None
    (tree / "migrations" / "versions" / Path(newest.path).name).unlink()
    return tree


def next_release(root: Path, *, compatible: bool) -> Path:
    """This code plus one newer migration, compatible with this code or not."""
    tree = _code_tree(root)
    (tree / "migrations" / "versions" / "9001_next_release.py").write_text(
        f'"""A later release\'s migration."""\n\nfrom alembic import op\n\nrevision = "9001"\n'
        f'down_revision = "{HEAD}"\nbranch_labels = None\ndepends_on = None\n'
        f"compatible_with_previous = {compatible}\n\n\n"
        "def upgrade() -> None:\n    op.execute('CREATE TABLE next_release_table (id int)')\n\n\n"
        "def downgrade() -> None:\n    op.execute('DROP TABLE next_release_table')\n")
    return tree


def run_kbbot(tree: Path, url: str) -> subprocess.CompletedProcess[str]:
    """Open (and so migrate) the database with the kbbot in `tree`, in a process of its own."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([sys.executable, "-c", OPEN, url], env=env, cwd=tree, capture_output=True,
                          text=True, timeout=120)


def _revision(db: Database) -> str | None:
    return db.current_revision()


def test_the_previous_release_runs_on_a_database_this_one_migrated(database_url: str, tmp_path: Path) -> None:
    """The real case of this release's deploy: its newest migration declares the previous code safe."""
    newest = CodeSchema.load().script.get_revision(HEAD)
    assert newest is not None and newest.module.compatible_with_previous is True
    db = Database.from_url(database_url)  # migrated by this code (the fixture's template already was)
    with db.engine.connect() as conn:
        recorded = read_database_schema(conn)
    assert recorded is not None and recorded.revision == HEAD
    previous = newest.down_revision
    assert isinstance(previous, str) and recorded.oldest_code_revision <= previous

    result = run_kbbot(previous_release(tmp_path / "old"), database_url)

    assert result.returncode == 0, result.stderr
    warning = [line for line in result.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warning) == 1, result.stderr
    assert "newer kbbot (kbbot " in warning[0] and f"schema revision {HEAD})" in warning[0]
    assert "this one (kbbot " in warning[0] and f"schema revision {previous})" in warning[0]
    assert _revision(db) == HEAD  # the older code did not touch the schema
    db.close()


def test_a_release_whose_migration_breaks_this_code_is_refused_in_one_line(
        database_url: str, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    newer = run_kbbot(next_release(tmp_path / "new", compatible=False), database_url)
    assert newer.returncode == 0, newer.stderr
    db = Database.from_url(database_url, migrate=False)
    assert _revision(db) == "9001"
    db.close()

    with pytest.raises(SchemaError) as refused:
        Database.from_url(database_url)
    message = str(refused.value)
    assert "\n" not in message
    assert "migrated by a newer kbbot (kbbot " in message and "schema revision 9001)" in message
    assert f"schema revision {HEAD})" in message  # this code's own revision
    assert "upgrade kbbot to a release with schema revision 9001 or later" in message

    result = cli("status", ok=False)  # what an operator sees: the one line, exit code 1
    assert result.exit_code == 1
    assert "upgrade kbbot to a release with schema revision 9001 or later" in result.output
    assert "Traceback" not in result.output


def test_a_release_whose_migration_keeps_this_code_working_is_run_on_with_a_warning(  # type: ignore[no-untyped-def]
        database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, cli) -> None:
    assert run_kbbot(next_release(tmp_path / "new", compatible=True), database_url).returncode == 0

    with caplog.at_level("WARNING", logger="retrieval.schema_versions"):
        db = Database.from_url(database_url)
    try:
        assert _revision(db) == "9001"
        with db.engine.connect() as conn:  # the newer release's table is there, this code's tables work
            assert conn.execute(text("SELECT count(*) FROM next_release_table")).scalar() == 0
            assert conn.execute(text("SELECT count(*) FROM articles")).scalar() == 0
            recorded = read_database_schema(conn)
        assert recorded is not None and recorded.revision == "9001"
        assert recorded.oldest_code_revision == CodeSchema.load().oldest_compatible_revision()
    finally:
        db.close()
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "schema revision 9001" in warning and f"schema revision {HEAD})" in warning
    migrated = cli("migrate")  # the release step of an old release: it says it left the database alone
    assert migrated.output.strip().endswith(f"is at revision 9001, newer than this kbbot's {HEAD}: left as it "
                                            "is (see the warning above).")


def test_the_oldest_compatible_revision_walks_back_over_compatible_migrations(tmp_path: Path) -> None:
    assert CodeSchema.load(next_release(tmp_path / "a", compatible=True) / "migrations").oldest_compatible_revision() \
        == CodeSchema.load().oldest_compatible_revision()
    assert CodeSchema.load(next_release(tmp_path / "b", compatible=False) / "migrations").oldest_compatible_revision() \
        == "9001"


def test_every_new_migration_says_whether_the_previous_release_still_runs() -> None:
    """From 0012 on (the first release with the check) a migration must declare it, True or False."""
    script = CodeSchema.load().script
    for migration in script.walk_revisions():
        if migration.revision >= "0012":
            assert isinstance(getattr(migration.module, "compatible_with_previous", None), bool), migration.path


ANSWER = (
    "import json, logging, sys\n"
    "logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(name)s: %(message)s')\n"
    "from bot.services import Services\n"
    "from retrieval.settings import load_settings\n"
    "services = Services(load_settings(_env_file=None, database_url=sys.argv[1], data_dir=sys.argv[2]))\n"
    "answer = services.pipeline.answer(sys.argv[3])\n"
    "print(json.dumps({'outcome': answer.outcome, 'text': answer.text,\n"
    "                  'cited': [c.hit.chunk_id for c in answer.citations]}))\n"
)


def released_code(root: Path, revision: str) -> Path:
    """The code as committed just before the migration `revision` was added: the previous release, from
    git (a copy of this tree would carry this release's code). Skips outside a git checkout."""
    newest = CodeSchema.load().script.get_revision(revision)
    assert newest is not None and newest.path is not None
    path = Path(newest.path).relative_to(REPO)

    def git(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, timeout=60)

    added = git("log", "--diff-filter=A", "--format=%H", "--", str(path))
    if added.returncode != 0:
        pytest.skip("not a git checkout: the previous release's code is not at hand")
    commits = added.stdout.decode().split()
    commit = f"{commits[-1]}^" if commits else "HEAD"  # not committed yet: HEAD is the previous release
    archive = git("archive", "--format=tar", commit)
    if archive.returncode != 0:
        pytest.skip(f"the previous release's commit is not in this clone ({archive.stderr.decode().strip()})")
    root.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive.stdout, check=True, timeout=60)
    return root


def test_the_previous_release_answers_on_this_releases_database(demo_database: Database, embedder,  # type: ignore[no-untyped-def]
                                                                 tmp_path: Path) -> None:
    """The deploy this release is: its first process has migrated (the demo KB indexed, answer sentences
    stored by this code), an old process restarts on the database and answers the same question."""
    from bot.services import Services
    from retrieval.settings import load_settings

    newest = CodeSchema.load().script.get_revision(HEAD)
    assert newest is not None and isinstance(newest.down_revision, str)
    if newest.down_revision < "0012":
        pytest.skip("the previous release predates the check")
    url = demo_database.engine.url.render_as_string(hide_password=False)
    question = "How do I connect to the VPN when I'm working from home?"
    services = Services(load_settings(_env_file=None, database_url=url, data_dir=tmp_path / "data"),
                        database=demo_database, embedder=embedder)
    ours = services.pipeline.answer(question)
    services.sentence_embedder.flush()  # this release's rows are in the table

    old = released_code(tmp_path / "previous", HEAD)
    env = {**os.environ, "PYTHONPATH": str(old)}
    result = subprocess.run([sys.executable, "-c", ANSWER, url, str(tmp_path / "data"), question], env=env,
                            cwd=old, capture_output=True, text=True, timeout=300)

    assert result.returncode == 0, result.stderr
    theirs = json.loads(result.stdout)
    assert theirs["outcome"] == ours.outcome == "answered"
    assert theirs["cited"] == [c.hit.chunk_id for c in ours.citations]
    assert theirs["text"] == ours.text
    assert f"schema revision {HEAD})" in result.stderr and "still runs on it" in result.stderr
    if HEAD == "0013":  # float16 rows: the old code cannot read them, so it computes the sentences' vectors
        assert "answer units' vectors could not be read (computing them)" in result.stderr, result.stderr
    assert _revision(demo_database) == HEAD
