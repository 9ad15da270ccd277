"""Dataset builder, atomic writes, manifest and the whole `prepare` on the fixtures."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from finetune.builder import BuildOptions, build_dataset, in_validation, merge_turns
from finetune.conversation import Conversation, Turn
from finetune.errors import EmptyDatasetError, ManifestError
from finetune.output import verify_against_manifest, write_atomic
from finetune.prepare import PrepareRequest, prepare
from finetune.readers import SlackAgents
from retrieval.tokens import CharEstimateCounter

FIXTURES = Path(__file__).parent / "fixtures" / "finetune"
COUNTER = CharEstimateCounter()  # the builder's logic does not depend on the tokenizer

# Planted PII from every fixture: none of it may reach a written file.
PLANTED = [
    "Priya",
    "Raman",
    "priya.raman84@gmail.com",
    "Marcus",
    "4111 1111 1111 1111",
    "hunter22",
    "sk-proj-4fG7hJ9kL2mN5pQ8rS1tU3vW6xY0zA",
    "7946 0958",
    "Baker Street",
    "Oliver",
    "Dmitri",
    "203.0.113.42",
    "Sarah",
    "DE89 3704",
    "Ana",
    "219-09-9999",
    "Kwame",
    "Ngozi",
    "07911 123456",
    "Jonas",
    "Berg",
    "U03EMPLOY",
    "jen.r1988@yahoo.com",
    "jen_r_1988",
    "Jennifer",
    "gamer_kid42",
]


def _conversation(cid: str, *turns: tuple[str, str]) -> Conversation:
    return Conversation(cid, tuple(Turn(role, text) for role, text in turns))  # type: ignore[arg-type]


def test_merge_turns_joins_consecutive_messages_of_one_speaker() -> None:
    merged, joins = merge_turns(
        [Turn("user", "hi"), Turn("user", "my app crashes"), Turn("assistant", "ok!")]
    )
    assert [(t.role, t.text) for t in merged] == [("user", "hi\nmy app crashes"), ("assistant", "ok!")]
    assert joins == 1


def test_drops_are_counted_by_reason_and_auto_replies_removed() -> None:
    reply = "Thanks for the details! Updating to 5.2.3 fixes the drops, let us know how it goes."
    conversations = [
        _conversation("ok", ("user", "VPN drops every ten minutes"), ("assistant", reply)),
        _conversation("no-agent", ("user", "anyone there?")),
        _conversation("short", ("user", "thanks"), ("assistant", "np")),
        _conversation("dup", ("user", "VPN drops every ten minutes"), ("assistant", reply)),
        _conversation(
            "auto",
            ("user", "Where is my refund?"),
            ("assistant", "This is an automated message: we have received your request."),
        ),
        _conversation("long", ("user", "logs: " + "x " * 5000), ("assistant", reply)),
        _conversation(
            "trim",
            ("assistant", "Hi! How can we help?"),
            ("user", "Reset my password please"),
            ("assistant", "Done: check your inbox for the reset link, it is valid for an hour."),
            ("user", "thx"),
        ),
    ]
    dataset = build_dataset(conversations, BuildOptions(max_example_tokens=1000), counter=COUNTER)
    report = dataset.report
    assert dict(report.dropped) == {"no agent reply": 2, "too short": 1, "near-duplicate": 1, "too long": 1}
    assert report.auto_reply_turns_removed == 1
    assert report.kept == 2
    examples = dataset.train + dataset.validation
    trimmed = next(e for e in examples if "reset link" in json.dumps(e))
    roles = [m["role"] for m in trimmed["messages"]]  # type: ignore[index]
    assert roles == ["system", "user", "assistant"]  # agent opener and the unanswered "thx" trimmed


def test_split_is_deterministic_and_keeps_a_validation_example() -> None:
    options = BuildOptions(validation_fraction=0.2)
    assert [in_validation(f"c{i}", options) for i in range(50)] == [
        in_validation(f"c{i}", options) for i in range(50)
    ]
    conversations = [
        _conversation(
            f"c{i}",
            ("user", f"question number {i} about topic {i * 7}"),
            ("assistant", f"Here is a detailed answer {i} about topic {i * 13}, hope it helps."),
        )
        for i in range(3)
    ]
    dataset = build_dataset(conversations, BuildOptions(validation_fraction=0.01), counter=COUNTER)
    assert len(dataset.train) == 2 and len(dataset.validation) == 1


def test_write_atomic_leaves_old_file_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "train.jsonl"
    write_atomic(target, b"old\n")

    def boom(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, b"new\n")
    assert target.read_bytes() == b"old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["train.jsonl"]  # no temp file left behind


def _prepare_all(out: Path) -> dict[str, object]:
    return prepare(
        PrepareRequest(
            inputs=[
                FIXTURES / "chats.jsonl",
                FIXTURES / "transcripts.csv",
                FIXTURES / "slack_export",
                FIXTURES / "twitter_threads.json",
            ],
            out_dir=out,
            slack_agents=SlackAgents(group="support-team"),
            options=BuildOptions(validation_fraction=0.2),
        )
    )


def test_prepare_writes_sanitized_files_report_and_manifest(tmp_path: Path) -> None:
    report = _prepare_all(tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["manifest.json", "report.json", "train.jsonl", "validation.jsonl"]
    written = "".join(p.read_text(encoding="utf-8") for p in tmp_path.iterdir())
    leaked = [pii for pii in PLANTED if pii in written]
    assert leaked == []
    assert report["unreadable"]["count"] == 8  # 2 JSONL lines, 3 CSV rows, 2 Slack, 1 thread  # type: ignore[index]
    redactions = report["redactions_by_type"]
    for pii_type in ("NAME", "EMAIL", "PHONE", "CARD", "IBAN", "SSN", "IP", "ADDRESS", "HANDLE", "SECRET"):
        assert redactions[pii_type] >= 1, pii_type  # type: ignore[index]
    assert report["train_examples"] + report["validation_examples"] == report["kept"]  # type: ignore[operator]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["files"]["train.jsonl"]["examples"] == report["train_examples"]
    verify_against_manifest(tmp_path / "train.jsonl")
    train_lines = (tmp_path / "train.jsonl").read_text().splitlines()
    first = json.loads(train_lines[0])
    assert first["messages"][0]["role"] == "system"


def test_manifest_refuses_edited_or_unvouched_files(tmp_path: Path) -> None:
    _prepare_all(tmp_path)
    train = tmp_path / "train.jsonl"
    train.write_text(train.read_text() + '{"messages": [{"role": "user", "content": "raw Priya"}]}\n')
    with pytest.raises(ManifestError, match="changed after"):
        verify_against_manifest(train)
    stray = tmp_path / "other" / "train.jsonl"
    stray.parent.mkdir()
    stray.write_text("{}\n")
    with pytest.raises(ManifestError, match=r"no manifest\.json"):
        verify_against_manifest(stray)


def test_empty_result_is_an_error_and_writes_nothing(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"messages": [{"role": "user", "content": "hello?"}]}\nnot json\n')
    out = tmp_path / "out"
    with pytest.raises(EmptyDatasetError, match="1 no agent reply"):
        prepare(PrepareRequest(inputs=[source], out_dir=out))
    assert not out.exists()
