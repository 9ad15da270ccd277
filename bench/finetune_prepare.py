"""Benchmark `kbbot finetune prepare` on real support threads, and score the sanitizer.

    .venv/bin/python -m bench.finetune_prepare [--input PATH] [--repeats 3] [--audit-dir DIR]

Input defaults to ../shared/data/support-threads/twitter-support-dev.json (real threads with real PII;
skipped cleanly when absent). Reports conversations/s for the whole `prepare` (read, sanitize, build,
write, validate), redactions by type, drops by reason, and the sanitizer's precision/recall per type on
the labelled sets in tests/fixtures/finetune/. With --audit-dir, writes a seeded random sample of 50
sanitized conversations there for a person to read for leftover PII: keep that folder out of the repo.
"""

from __future__ import annotations

import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[1]

from finetune.pii.scoring import score_sanitizer  # noqa: E402 - after the path set-up above
from finetune.prepare import PrepareRequest, prepare  # noqa: E402

DEFAULT_INPUT = REPO.parent / "shared" / "data" / "support-threads" / "twitter-support-dev.json"
LABELLED = REPO / "tests" / "fixtures" / "finetune"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


@click.command()
@click.option(
    "--input", "input_path", type=click.Path(path_type=Path), default=DEFAULT_INPUT, show_default=True
)
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(1))
@click.option(
    "--audit-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write 50 sampled sanitized conversations here for a manual audit (outside the repo).",
)
@click.option("--audit-seed", default=50, show_default=True)
def main(input_path: Path, repeats: int, audit_dir: Path | None, audit_seed: int) -> None:
    click.echo("## Sanitizer on the labelled sets (precision / recall / gold spans / leaked)")
    for name in ("pii_labelled.jsonl", "pii_heldout.jsonl"):
        score = score_sanitizer(LABELLED / name)
        click.echo(f"{name}:")
        for pii_type, entry in sorted(score.by_type.items()):
            click.echo(
                f"  {pii_type:<12} P {_fmt(entry.precision)}  R {_fmt(entry.recall)}  "
                f"gold {entry.gold:>3}  leaked {entry.leaked}"
            )
        if score.false_positive_examples:
            click.echo(f"  false positives: {sum(score.false_positive_examples.values())}")

    if not input_path.exists():
        click.echo(f"\n{input_path} is absent: prepare benchmark skipped.")
        return
    click.echo(f"\n## prepare on {input_path.name}")
    seconds: list[float] = []
    report: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as temp:
        for run in range(repeats):
            out = Path(temp) / f"run{run}"
            started = time.perf_counter()
            report = prepare(PrepareRequest(inputs=[input_path], out_dir=out))
            seconds.append(time.perf_counter() - started)
        n = int(report["conversations_read"])  # type: ignore[call-overload]
        best, median = min(seconds), statistics.median(seconds)
        click.echo(
            f"conversations: {n}; wall time best {best:.2f}s, median {median:.2f}s over {repeats} runs "
            f"(first run includes loading the gazetteer and tokenizer)"
        )
        click.echo(f"throughput: {n / best:.0f} conversations/s (best), {n / median:.0f} (median)")
        click.echo(f"redactions by type: {json.dumps(report['redactions_by_type'])}")
        click.echo(f"dropped by reason: {json.dumps(report['dropped_by_reason'])}")
        click.echo(
            f"kept {report['kept']}: train {report['train_examples']}, "
            f"validation {report['validation_examples']}; unreadable {report['unreadable']}"
        )
        train = report["validation"]["train.jsonl"]  # type: ignore[index]
        click.echo(
            f"train tokens {train['tokens_total']} ({train['token_counter']}); "
            f"estimated cost {train['base_model']} x{train['epochs']} epochs: "
            f"${train['estimated_cost_usd']}"
        )
        if audit_dir is not None:
            lines = (Path(temp) / "run0" / "train.jsonl").read_text(encoding="utf-8").splitlines()
            lines += (Path(temp) / "run0" / "validation.jsonl").read_text(encoding="utf-8").splitlines()
            sample = random.Random(audit_seed).sample(lines, min(50, len(lines)))
            audit_dir.mkdir(parents=True, exist_ok=True)
            with (audit_dir / "audit_sample.txt").open("w", encoding="utf-8") as handle:
                for number, line in enumerate(sample, start=1):
                    handle.write(f"=== {number}\n")
                    for message in json.loads(line)["messages"][1:]:
                        handle.write(f"{message['role'][0].upper()}: {message['content']}\n")
            click.echo(
                f"audit sample: {audit_dir / 'audit_sample.txt'} (50 conversations, seed {audit_seed})"
            )


if __name__ == "__main__":
    main()
