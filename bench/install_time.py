"""`make setup` on a fresh clone: wall time and installed size, for each git ref given (issue 17).

    nice -n 5 .venv/bin/python -m bench.install_time [--refs BEFORE AFTER] [--rounds 1]

Each round clones the repository at each ref into a temporary directory and times `make setup` there
with pip's cache off (PIP_NO_CACHE_DIR=1: every wheel is fetched from the configured index and unpacked,
as on a fresh machine; `--keep-pip-cache` for a developer's machine that installed before). Refs
alternate within a round, so shared-machine load falls on both. Writes bench/results/install_time.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def install(ref: str, *, pip_cache: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="kbbot-install-") as tmp:
        clone = Path(tmp) / "kbbot"
        subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
        subprocess.run(["git", "-C", str(clone), "checkout", "--quiet", ref], check=True)
        load = os.getloadavg()[0]
        started = time.perf_counter()
        env = {**os.environ} if pip_cache else {**os.environ, "PIP_NO_CACHE_DIR": "1"}
        subprocess.run(["make", "setup"], cwd=clone, env=env, check=True, capture_output=True)
        wall = time.perf_counter() - started
        venv = clone / ".venv"
        site = next(venv.glob("lib/python*/site-packages"))
        has_torch = (site / "torch").exists()
        return {"ref": ref, "seconds": round(wall, 1), "venv_mb": round(_du(venv) / 2**20),
                "has_torch": has_torch, "pip_cache": pip_cache, "load_avg_1m": round(load, 1),
                "load_avg_1m_after": round(os.getloadavg()[0], 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--refs", nargs=2, default=["main", "HEAD"], metavar=("BEFORE", "AFTER"))
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--keep-pip-cache", action="store_true")
    parser.add_argument("--json-out", default=str(REPO / "bench" / "results" / "install_time.json"))
    args = parser.parse_args()
    refs = [subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", r], check=True, capture_output=True,
                           text=True).stdout.strip() for r in args.refs]
    results = []
    for round_no in range(args.rounds):
        for ref in refs if round_no % 2 == 0 else refs[::-1]:
            results.append(install(ref, pip_cache=args.keep_pip_cache))
            print(json.dumps(results[-1]), flush=True)
    Path(args.json_out).write_text(json.dumps({"before": refs[0], "after": refs[1], "runs": results}, indent=2)
                                   + "\n")


if __name__ == "__main__":
    sys.exit(main())
