"""`prepare`: read chat logs, build the sanitized dataset, write it with its report and manifest."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from finetune.builder import BuildOptions, build_dataset
from finetune.errors import EmptyDatasetError
from finetune.output import jsonl_bytes, write_atomic, write_manifest
from finetune.pii.sanitizer import Sanitizer, SanitizerConfig
from finetune.readers import SlackAgents, read_inputs
from finetune.validate import validate_file
from retrieval.tokens import default_counter

logger = logging.getLogger(__name__)

TRAIN_NAME, VALIDATION_NAME, REPORT_NAME = "train.jsonl", "validation.jsonl", "report.json"


@dataclass(frozen=True)
class PrepareRequest:
    inputs: Sequence[Path]
    out_dir: Path
    fmt: str | None = None
    slack_agents: SlackAgents | None = None
    csv_agents: frozenset[str] = frozenset()
    options: BuildOptions = field(default_factory=BuildOptions)
    sanitizer: SanitizerConfig = field(default_factory=SanitizerConfig)
    base_model: str = "gpt-4o-mini"
    epochs: int | None = None


def prepare(request: PrepareRequest) -> dict[str, object]:
    """Run the whole preparation; return the report (also written to ``out_dir/report.json``)."""
    started = time.perf_counter()
    read = read_inputs(
        request.inputs, request.fmt, slack_agents=request.slack_agents, csv_agents=request.csv_agents
    )
    read_seconds = time.perf_counter() - started
    counter = default_counter()
    dataset = build_dataset(read.conversations, request.options, Sanitizer(request.sanitizer), counter)
    build_seconds = time.perf_counter() - started - read_seconds
    if not dataset.train:
        reasons = ", ".join(f"{n} {r}" for r, n in dataset.report.dropped.most_common()) or "none read"
        raise EmptyDatasetError(
            f"No training example is left from {len(read.conversations)} conversations ({reasons}; "
            f"{len(read.problems)} unreadable lines/rows). Check --format and the agent mapping; nothing "
            "was written."
        )
    out = request.out_dir
    write_atomic(out / TRAIN_NAME, jsonl_bytes(dataset.train))
    write_atomic(out / VALIDATION_NAME, jsonl_bytes(dataset.validation))
    validation = {
        name: validate_file(out / name, request.base_model, counter).as_dict(
            request.base_model, request.epochs
        )
        for name in (TRAIN_NAME, VALIDATION_NAME)
    }
    problems_by_reason = Counter(p.reason.split(" (")[0] for p in read.problems)
    report: dict[str, object] = {
        "inputs": [str(p) for p in request.inputs],
        "format": request.fmt or "inferred",
        "conversations_read": len(read.conversations),
        "unreadable": {
            "count": len(read.problems),
            "by_reason": dict(problems_by_reason.most_common()),
            # Locations and reasons only: a reason never quotes the text.
            "first": [f"{p.location}: {p.reason}" for p in read.problems[:20]],
        },
        "role_mapping": dict(read.role_mapping.most_common()),
        **dataset.report.as_dict(),
        "validation": validation,
        "timing_seconds": {"read": round(read_seconds, 3), "sanitize_and_build": round(build_seconds, 3)},
        "conversations_per_second": round(len(read.conversations) / max(build_seconds, 1e-9), 1),
    }
    write_atomic(out / REPORT_NAME, json.dumps(report, indent=2).encode("utf-8"))
    write_manifest(
        out,
        {TRAIN_NAME: len(dataset.train), VALIDATION_NAME: len(dataset.validation)},
        {"report_file": REPORT_NAME, "system_prompt": request.options.system_prompt},
    )
    logger.info("prepared %s in %.1fs", out, time.perf_counter() - started)
    return report
