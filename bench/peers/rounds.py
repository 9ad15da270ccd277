"""Latency rounds driven over stdin/stdout, so that `compare.py` can interleave the systems' timed rounds.

Timing each system in its own phase made the ratios follow the machine's load (the two cores are shared):
three runs in a row gave kbbot/langchain hybrid ratios of 1.3, 2.2 and 1.0. With rounds, every system's
samples are spread over the same minutes. A peer, once its index is built, prints READY and then answers
each line `<mode>` with one line `ROUND <json list of milliseconds>` (one timed search per question at
k=10) until it reads `quit`. Standard library only: it runs in the peers' virtualenv and in kbbot's.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence

READY = "READY"
ROUND = "ROUND "


def timed_round(search: Callable[[int], object], count: int) -> list[float]:
    """Milliseconds of `search(i)` for each question index i."""
    times = []
    for i in range(count):
        t0 = time.perf_counter()
        search(i)
        times.append(round((time.perf_counter() - t0) * 1000, 3))
    return times


def serve(run_round: Callable[[str], Sequence[float]]) -> None:
    """The peer side: answer round requests until `quit` (or the driver closes the pipe)."""
    print(READY, flush=True)
    for line in sys.stdin:
        mode = line.strip()
        if mode == "quit":
            return
        print(ROUND + json.dumps(list(run_round(mode))), flush=True)


def request_round(stdin, stdout, mode: str) -> list[float]:  # type: ignore[no-untyped-def]
    """The driver side: ask a served peer for one round; lines that are not ours (library output) are skipped."""
    stdin.write(mode + "\n")
    stdin.flush()
    for line in stdout:
        if line.startswith(ROUND):
            return [float(x) for x in json.loads(line[len(ROUND):])]
    raise RuntimeError("the peer exited before answering a latency round (its stderr says why)")


def wait_ready(stdout) -> None:  # type: ignore[no-untyped-def]
    for line in stdout:
        if line.strip() == READY:
            return
    raise RuntimeError("the peer exited before its index was ready (its stderr says why)")
