"""How many threads one embedding call may use, and no spin-waiting while it waits for work.

Measured on 2 shared cores (issue 17, BENCHMARKS.md): torch with its default OpenMP settings took 30-500 ms
per question embedding while other answers ran, because idle OpenMP threads spin on the cores the other
workers (and PostgreSQL) need. The rule here: a process that runs N embeddings at once (the Slack server
with KBBOT_SLACK_WORKERS answer workers) gives each call cores/N threads, at least one; a CLI command runs
one call at a time and gets all the cores. Idle threads sleep instead of spinning, for both backends.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, which containers and `taskset` narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def embedding_threads(concurrent_calls: int = 1, *, configured: int | None = None,
                      cores: int | None = None) -> int:
    """Intra-op threads for one embedding call when `concurrent_calls` may run at the same time.

    `configured` (KBBOT_EMBEDDING_THREADS) wins when set. More threads than cores/calls only makes the
    calls preempt each other: on 2 cores, 4 busy answer workers each embed single-threaded.
    """
    if configured is not None:
        return max(1, configured)
    return max(1, (cores or available_cores()) // max(1, concurrent_calls))


class PassageGate:
    """Lets at most `slots` passage embeddings run at once; question embeddings never wait for it.

    A question's embedding is what an asker waits for (a few ms of compute); a passage batch (the
    extractive answerer's sentences, an ingest slice) takes tens to hundreds of ms. With 4 answer workers
    on 2 cores, 4 passage batches and the question shared the cores five ways (p95 24 ms, BENCHMARKS.md).
    Held to as many batches as the cores run side by side, the passages still use every core, and the
    question shares one with a single batch instead of waiting behind the others.
    """

    def __init__(self, slots: int) -> None:
        self.slots = max(1, slots)
        self._semaphore = threading.BoundedSemaphore(self.slots)

    @contextlib.contextmanager
    def passages(self) -> Iterator[None]:
        with self._semaphore:
            yield


def passage_gate(concurrent_calls: int, threads: int, *, cores: int | None = None) -> PassageGate | None:
    """The gate for a process running `concurrent_calls` embeddings of `threads` threads each, or None
    when they all fit on the cores at once anyway (a CLI command, or cores to spare)."""
    slots = max(1, (cores or available_cores()) // max(1, threads))
    if concurrent_calls <= slots:
        return None
    return PassageGate(slots)


def prepare_torch_threads() -> None:
    """Make OpenMP threads sleep when idle. Must run before torch is imported: OpenMP reads it once."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def set_torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
