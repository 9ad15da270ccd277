"""What better PII recall costs: sanitizer throughput of this checkout next to another one (e.g. the
sanitizer before issue 18), on the real support threads, in alternating rounds.

    git worktree add /tmp/pii-old b1b39aa
    nice python -m bench.pii_throughput --other /tmp/pii-old [--rounds 5]

Each round runs every checkout in its own process (so each imports its own ``finetune`` package) and
measures conversations per CPU second for ``Sanitizer.sanitize_conversation`` over all 525 threads,
after one warm-up conversation (the gazetteer is built once per process). CPU time, not wall time: the
two cores are shared with other work. Skipped cleanly when ../shared/data/support-threads is absent.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[1]
THREADS = REPO.parent / "shared" / "data" / "support-threads" / "twitter-support-dev.json"

_ONE_ROUND = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from finetune.readers.twitter_threads import read_twitter_threads
from finetune.pii.sanitizer import Sanitizer
conversations = read_twitter_threads(Path(sys.argv[2])).conversations
sanitizer = Sanitizer()
sanitizer.sanitize_conversation(conversations[0])
started = time.process_time()
for conversation in conversations:
    sanitizer.sanitize_conversation(conversation)
print(json.dumps({"conversations": len(conversations), "cpu_seconds": time.process_time() - started}))
"""


def _round(checkout: Path, threads: Path) -> float:
    out = subprocess.run(
        [sys.executable, "-c", _ONE_ROUND, str(checkout), str(threads)], check=True, capture_output=True, text=True
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return result["conversations"] / result["cpu_seconds"]


@click.command()
@click.option("--other", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--threads", "threads_path", type=click.Path(path_type=Path), default=THREADS, show_default=True)
@click.option("--rounds", default=5, show_default=True, type=click.IntRange(1))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def main(other: Path, threads_path: Path, rounds: int, out: Path | None) -> None:
    if not threads_path.exists():
        click.echo(f"{threads_path} is absent: skipped.")
        return
    rates: dict[str, list[float]] = {"this": [], "other": []}
    for _ in range(rounds):
        rates["this"].append(_round(REPO, threads_path))
        rates["other"].append(_round(other, threads_path))
    medians = {name: round(statistics.median(values), 1) for name, values in rates.items()}
    click.echo(f"conversations per CPU second, median of {rounds} alternating rounds:")
    click.echo(f"  this checkout ({REPO}): {medians['this']}")
    click.echo(f"  other ({other}): {medians['other']}")
    click.echo(f"  this / other: {medians['this'] / medians['other']:.2f}")
    if out is not None:
        out.write_text(json.dumps({"rounds": rounds, "median": medians, "all": rates}, indent=2) + "\n")


if __name__ == "__main__":
    main()
