# ruff: noqa: F811 - `fake_openai` is a fixture imported from tests.fakes and taken by name
"""Answer-level evaluation: the metrics on known texts, and `kbbot eval --answers` end to end (real CLI,
database and model; the LLM answerer against the fake OpenAI endpoint)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import main
from retrieval.answer_eval import GoldAnswer, has_all_key_terms, load_gold_answers, token_recall
from retrieval.errors import SourceError
from tests.fakes.openai_api import FakeOpenAI, fake_openai  # noqa: F401 - fixture
from tests.helpers import write_article


def test_token_recall_ignores_markup_case_and_plurals() -> None:
    gold = "AMIs support tagging on creation"
    assert token_recall(gold, "**AMI** supports *tagging* on creation [1]") == 1.0
    assert token_recall(gold, "AMIs can be copied between regions.") == pytest.approx(1 / 4)
    assert token_recall(gold, "") == 0.0


def test_key_terms_must_appear_as_runs() -> None:
    gold = GoldAnswer("q", "Per diem in Toronto is CAD 85 a day.", ("Toronto", "CAD 85"))
    assert has_all_key_terms(gold, "| Toronto, Canada | CAD 85 | [1]")
    assert not has_all_key_terms(gold, "Toronto: CAD 80, Vancouver: 85 CAD")
    strict = GoldAnswer("q", "2 x 900 GB NVMe SSD")
    assert has_all_key_terms(strict, "c5d.12xlarge has 2 x 900 GB NVMe SSD instance storage")
    assert not has_all_key_terms(strict, "2 x 900 GB")


def test_bad_gold_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "answers.jsonl"
    path.write_text('{"_id": "1", "answer": "yes"}\n{"_id": "2"}\n')
    with pytest.raises(SourceError, match=r"answers.jsonl:2: expected"):
        load_gold_answers(path)


@pytest.fixture
def labelled(tmp_path: Path) -> dict[str, Path]:
    kb = tmp_path / "kb"
    write_article(kb, "hr/parking.md", "Parking", "## Visitors\nVisitors park on level -2 and collect a "
                  "day pass from reception before 10:00.\n")
    write_article(kb, "it/printers.md", "Printers", "## Toner\nSpare toner cartridges are in the cabinet "
                  "next to each printer on floor 3.\n")
    files = {"kb": kb}
    for name, text in {
        "queries.jsonl": '{"_id": "1", "text": "where do visitors park?"}\n'
                         '{"_id": "2", "text": "where is the spare toner?"}\n',
        "qrels.tsv": "query-id\tcorpus-id\tscore\n1\thr/parking.md\t1\n2\tit/printers.md\t1\n",
        "answers.jsonl": '{"_id": "1", "answer": "Visitors park on level -2.", "key_terms": ["level -2"]}\n'
                         '{"_id": "2", "answer": "In the cabinet next to each printer."}\n',
        "unanswerable.jsonl": '{"_id": "u1", "text": "What is the capital of Peru?"}\n',
    }.items():
        files[name] = tmp_path / name
        files[name].write_text(text)
    return files


def _eval(runner: CliRunner, files: dict[str, Path], *extra: str) -> dict:  # type: ignore[type-arg]
    result = runner.invoke(main, ["eval", "--queries", str(files["queries.jsonl"]), "--qrels",
                                  str(files["qrels.tsv"]), "--answers", str(files["answers.jsonl"]),
                                  "--unanswerable", str(files["unanswerable.jsonl"]), *extra, "--json"],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_eval_answers_per_answerer(labelled: dict[str, Path], database_url: str, fake_openai: FakeOpenAI,
                                   monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("KBBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert runner.invoke(main, ["ingest", str(labelled["kb"]), "--json"]).exit_code == 0

    out = _eval(runner, labelled, "--per-query")
    assert out["schema_version"] == 1 and out["retrieval"][0]["recall_at_k"] == 1.0
    [extractive] = out["answers"]
    assert extractive["answerer"] == "extractive"
    assert (extractive["answerable"], extractive["unanswerable"], extractive["with_gold"]) == (2, 1, 2)
    assert extractive["answered_rate"] == 1.0 and extractive["abstained_rate"] == 1.0
    assert extractive["all_key_terms"] == 1.0 and extractive["citation_precision"] == 1.0
    rows = {r["id"]: r for r in extractive["per_question"]}
    assert "level -2" in rows["1"]["answer"] and rows["1"]["cited"] == ["hr/parking.md"]
    assert rows["u1"]["outcome"] == "abstained"
    # Both answers hold their gold and the abstention is no answer: nothing wrong to be unsure about.
    said_unsure = [rows[i]["unsure"] for i in ("1", "2")]
    assert extractive["unsure_rate"] == extractive["unsure_of_right"] == sum(said_unsure) / 2
    assert extractive["unsure_of_wrong"] is None and "unsure" not in rows["u1"]

    result = runner.invoke(main, ["eval", "--queries", str(labelled["queries.jsonl"]), "--qrels",
                                  str(labelled["qrels.tsv"]), "--answers", str(labelled["answers.jsonl"]),
                                  "--answerer", "llm"])
    assert result.exit_code == 1 and "OPENAI_BASE_URL" in result.output

    # The LLM answerer through the real openai client, for plumbing only: the fake cites passage [1].
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.url + "/v1")
    fake_openai.chat_responder = lambda messages, model: "Visitors park on level -2 [1]."
    out = _eval(runner, labelled, "--answerer", "extractive", "--answerer", "llm")
    by_name = {r["answerer"]: r for r in out["answers"]}
    assert set(by_name) == {"extractive", "llm"}
    assert fake_openai.requests_to("POST", "/v1/chat/completions")
    llm = by_name["llm"]
    assert llm["answered_rate"] == 1.0 and llm["abstained_rate"] == 1.0
    # the fake says the same thing to both questions: right for one, wrong for the other
    assert llm["all_key_terms"] == 0.5 and llm["contains_gold"] == 0.5
