"""How high can an extractive answer score on aws-docs-qa at all? No search, no model: for each question, the
best token recall of its gold answer over every unit of its gold articles (as kbbot's answerer splits them),
over 2 and 3 adjacent units, and over the whole article.

    .venv/bin/python -m bench.answer_ceiling        # ~10 s; -> bench/results/answer_ceiling.json

"Contains gold" is scored as bench.answer_quality scores it (token recall >= 0.8 of the gold's content
words). A question no single gold-article unit holds cannot be answered right by any choice of one unit,
however good the scorer; one no article holds cannot be answered right extractively at all.
"""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from retrieval.answer_eval import token_recall  # noqa: E402
from retrieval.answer_units import passage_units  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "aws-docs-qa"
RESULTS = REPO / "bench" / "results" / "answer_ceiling.json"
CONTAINS = 0.8  # bench.answer_quality's "contains gold"
WINDOWS = (1, 2, 3)


def _jsonl(path: Path) -> list[dict]:  # type: ignore[type-arg]
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def best_recalls(gold: str, articles: list[str]) -> dict[str, float]:
    """The best recall of `gold` over windows of adjacent units of each article, and over each article."""
    best = {f"units_{w}": 0.0 for w in WINDOWS} | {"article": 0.0}
    for text in articles:
        best["article"] = max(best["article"], token_recall(gold, text))
        units = [unit.rendered for unit in passage_units(text)]
        for w in WINDOWS:
            for i in range(len(units)):
                best[f"units_{w}"] = max(best[f"units_{w}"], token_recall(gold, " ".join(units[i:i + w])))
    return best


def main() -> None:
    if not DATA.is_dir():
        print(f"skipped: {DATA} is absent (see its SOURCE.md)")
        return
    corpus = {row["_id"]: row["text"] for row in _jsonl(DATA / "corpus.jsonl")}
    gold_articles: dict[str, list[str]] = collections.defaultdict(list)
    with (DATA / "qrels.tsv").open(encoding="utf-8") as f:
        next(f)
        for line in f:
            query_id, corpus_id, _score = line.rstrip("\n").split("\t")
            gold_articles[query_id].append(corpus_id)
    answers = _jsonl(DATA / "answers.jsonl")
    rows = []
    for row in answers:
        texts = [corpus[c] for c in gold_articles[row["_id"]] if c in corpus]
        rows.append({"id": row["_id"]} | best_recalls(row["answer"], texts))
    held = {key: sum(r[key] >= CONTAINS for r in rows) for key in rows[0] if key != "id"}
    report = {"questions": len(rows), "contains_gold_at": CONTAINS, "held_by": held,
              "not_held_by_one_unit": [r["id"] for r in rows if r["units_1"] < CONTAINS]}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    for key, count in held.items():
        print(f"{key:8}  {count:3d} of {len(rows)} hold the gold (recall >= {CONTAINS})")


if __name__ == "__main__":
    main()
