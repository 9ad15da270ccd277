"""`kbbot finetune ...` end to end: prepare, validate, submit, status, wait --activate, list, eval."""

# ruff: noqa: F811 - `fake_openai` is a fixture imported from tests.fakes and taken by name
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from bot.cli_finetune import finetune
from finetune import registry
from retrieval.db import Database
from retrieval.settings import Settings, load_settings
from tests.fakes.openai_api import FakeOpenAI, fake_openai  # noqa: F401 - fixture

FIXTURES = Path(__file__).parent / "fixtures" / "finetune"


@dataclass
class _Context:
    """The shape of bot.cli's CliContext that the finetune commands use."""

    settings: Settings
    db: Database | None = None

    def database(self) -> Database:
        assert self.db is not None, "this command should not need the database"
        return self.db


def _openai_settings(fake_openai) -> Settings:  # type: ignore[no-untyped-def]
    return load_settings(_env_file=None, OPENAI_API_KEY="test", OPENAI_BASE_URL=fake_openai.url + "/v1")


def _run(args: list[str], obj: _Context | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(finetune, args, obj=obj or _Context(load_settings(_env_file=None)),
                                catch_exceptions=False)
    return result.exit_code, result.output


def test_prepare_and_validate_need_no_database(tmp_path: Path) -> None:
    code, output = _run(
        [
            "prepare",
            str(FIXTURES / "transcripts.csv"),
            str(FIXTURES / "slack_export"),
            "--agent-group",
            "S0SUPPORT",
            "--out",
            str(tmp_path),
            "--validation-fraction",
            "0.3",
        ]
    )
    assert code == 0, output
    assert "Redacted (placeholders)" in output and "Dropped conversations" in output
    assert "unreadable lines/rows skipped" in output and "transcripts.csv:11: empty body" in output
    code, output = _run(["validate", str(tmp_path / "train.jsonl")])
    assert code == 0 and "estimated cost" in output
    code, output = _run(["prepare", str(FIXTURES / "slack_export"), "--out", str(tmp_path / "x")])
    assert code == 1 and "--agent-ids" in output  # a FinetuneError shown as a message, not a traceback
    code, output = _run(["prepare", str(FIXTURES / "chats.jsonl"), "--out", str(tmp_path / "j"), "--json"])
    assert code == 0 and json.loads(output)["conversations_read"] == 5


def test_validate_fails_on_format_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    code, output = _run(["validate", str(bad)])
    assert code == 1 and "example_missing_assistant_message" in output


def test_submit_wait_activate_list_eval(tmp_path: Path, fake_openai: FakeOpenAI, database: Database) -> None:
    data = tmp_path / "data"
    assert (
        _run(
            [
                "prepare",
                str(FIXTURES / "transcripts.csv"),
                str(FIXTURES / "chats.jsonl"),
                "--out",
                str(data),
                "--validation-fraction",
                "0.3",
            ]
        )[0]
        == 0
    )
    settings = _openai_settings(fake_openai)
    obj = _Context(settings, database)

    code, output = _run(["submit", str(data), "--base-model", "gpt-4o-mini", "--suffix", "tone"], obj)
    assert code == 0, output
    job_id = output.split()[1]
    assert registry.list_jobs(database.engine)[0].job_id == job_id

    code, output = _run(["status", job_id], obj)
    assert code == 0 and "running" in output and "Fine-tuning job started" in output
    code, output = _run(["wait", job_id, "--poll", "0", "--activate"], obj)
    assert code == 0, output
    assert "The job has successfully completed" in output
    tuned = registry.active_tone_model(database.engine)
    assert tuned is not None and tuned.startswith("ft:gpt-4o-mini:kbbot:tone:")

    code, output = _run(["list", "--jobs"], obj)
    assert code == 0 and f"* {tuned}" in output and job_id in output

    fake_openai.chat_responder = lambda messages, model: (
        "Hi [NAME_1], sorry about that! I've fixed it. Let us know how it goes. ^[NAME_2]"
        if model.startswith("ft:")
        else "The issue can be resolved by updating the client software to the latest version."
    )
    code, output = _run(
        ["eval", str(data), "--base", "gpt-4o-mini", "--out", str(tmp_path / "eval.json")], obj
    )
    assert code == 0, output
    report = json.loads((tmp_path / "eval.json").read_text())
    base, tuned_figures = report["models"]["gpt-4o-mini"], report["models"][tuned]
    assert tuned_figures["style_rates"]["greeting"] == 1.0 and base["style_rates"]["greeting"] == 0.0
    assert tuned_figures["style_rates"]["sign_off"] == 1.0
    assert "ROUGE-L vs agent" in output
    sent = [r.json for r in fake_openai.requests_to("POST", "/v1/chat/completions")]
    assert {r["model"] for r in sent} == {"gpt-4o-mini", tuned}
    assert all(r["messages"][0]["role"] == "system" for r in sent)

    code, output = _run(["activate", "--none"], obj)
    assert code == 0 and registry.active_tone_model(database.engine) is None


def test_submit_refuses_unsanitized_files(
    tmp_path: Path, fake_openai: FakeOpenAI, database: Database
) -> None:
    raw = tmp_path / "train.jsonl"
    raw.write_text(
        '{"messages": [{"role": "user", "content": "Priya 4111 1111 1111 1111"}, '
        '{"role": "assistant", "content": "ok"}]}\n'
    )
    obj = _Context(_openai_settings(fake_openai), database)
    code, output = _run(["submit", str(raw)], obj)
    assert code == 1 and "--force" in output
    assert fake_openai.requests == []


def test_eval_with_unknown_tuned_model_says_so(
    tmp_path: Path, fake_openai: FakeOpenAI, database: Database
) -> None:
    data = tmp_path / "data"
    _run(["prepare", str(FIXTURES / "transcripts.csv"), "--out", str(data), "--validation-fraction", "0.5"])
    obj = _Context(_openai_settings(fake_openai), database)
    code, output = _run(["eval", str(data), "--tuned", "ft:nope", "--base", "gpt-4o-mini"], obj)
    assert code == 1 and "does not exist" in output


def test_prepare_reports_what_it_removed_per_type_and_leaves_no_pii(tmp_path: Path) -> None:
    """International PII through `kbbot finetune prepare`: counted per type, gone from every file."""
    pii = {
        "NAME": ["Guðrún Jónsdóttir", "Kovács Péter"],
        "PHONE": ["0177-763170", "+36 47 833-5304 x3886"],
        "ADDRESS": ["Kaiserstrasse 12\n60311 Frankfurt am Main"],
        "IBAN": ["gb13 qkau 7703 7035 9885 10"],
        "CARD": ["676299500444"],
        "EMAIL": ["gudrun.j@example.is"],
    }
    chats = [
        [
            ("user", "Hi, my name is Guðrún Jónsdóttir. Ship it to:\nKaiserstrasse 12\n60311 Frankfurt am Main."),
            ("assistant", "Thanks Guðrún, I have updated the address for order ORD-2024-150078 (version 5.12.3)."),
            ("user", "Great. Call 0177-763170 or mail gudrun.j@example.is. Refund to gb13 qkau 7703 7035 9885 10."),
            ("assistant", "Done, Guðrún: the refund of €1.299,00 is on its way, expect it by 2024-03-15."),
        ],
        [
            ("user", "hello, this is Kovács Péter. I paid with 676299500444, my cell is +36 47 833-5304 x3886"),
            ("assistant", "Thank you, Kovács Péter. I checked the Galaxy S23 Ultra order and it ships on Monday."),
        ],
    ]
    source = tmp_path / "chats.jsonl"
    source.write_text(
        "".join(
            json.dumps({"messages": [{"role": r, "content": c} for r, c in chat]}, ensure_ascii=False) + "\n"
            for chat in chats
        ),
        encoding="utf-8",
    )
    code, output = _run(["prepare", str(source), "--out", str(tmp_path / "out"), "--json"])
    assert code == 0, output
    report = json.loads(output)
    # Mentions: Guðrún three times, Kovács Péter twice; distinct values: one person per conversation.
    assert report["redactions_by_type"] == {
        "NAME": 5, "PHONE": 2, "ADDRESS": 1, "IBAN": 1, "CARD": 1, "EMAIL": 1
    }  # fmt: skip
    assert report["redacted_values_by_type"] == {
        "NAME": 2, "PHONE": 2, "ADDRESS": 1, "IBAN": 1, "CARD": 1, "EMAIL": 1
    }  # fmt: skip
    written = (tmp_path / "out" / "train.jsonl").read_text(encoding="utf-8")
    written += (tmp_path / "out" / "validation.jsonl").read_text(encoding="utf-8")
    for values in pii.values():
        for value in values:
            for part in (p for p in value.split() if len(p) >= 4):  # "12" is also in "5.12.3"
                assert json.dumps(part, ensure_ascii=False).strip('"') not in written, part
    assert "ORD-2024-150078" in written and "5.12.3" in written and "Galaxy S23 Ultra" in written
    assert "[NAME_1]" in written and "€1.299,00" in written
    code, output = _run(["prepare", str(source), "--out", str(tmp_path / "out2")])
    assert "Distinct values removed" in output and "Guðrún" not in output
