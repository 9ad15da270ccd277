"""The python-faq retrieval set: our questions and gold articles against the corpus Debian's python3-doc
installs (the test skips without it; the corpus is never copied into the repository)."""

from __future__ import annotations

import json

import pytest

from bench import python_faq
from retrieval.evaluation import load_labelled_queries

pytestmark = pytest.mark.skipif(not python_faq.available(), reason="python3-doc is not installed "
                                "(apt-get install python3-doc)")


def test_every_gold_article_exists_and_questions_are_paraphrased(tmp_path):
    corpus = python_faq.write_corpus(tmp_path)
    articles = [json.loads(line) for line in corpus.open(encoding="utf-8")]
    ids = {a["_id"] for a in articles}
    assert len(ids) == len(articles)  # one id per question, even where two pages ask alike
    assert sum(i.startswith("faq/") for i in ids) > 150 and sum(i.startswith("howto/") for i in ids) > 15
    queries = load_labelled_queries(python_faq.QUERIES, python_faq.QRELS)
    assert len(queries) >= 60
    missing = {doc for q in queries for doc in q.relevant if doc not in ids}
    assert not missing
    titles = {python_faq.slug(a["title"]) for a in articles}
    assert not [q.id for q in queries if python_faq.slug(q.text) in titles]  # asked, not the FAQ's heading
    assert all(2 in q.relevant.values() for q in queries)  # every question has an article that answers it


def test_articles_are_readable_markdown_without_rst_markup(tmp_path):
    by_id = {a["_id"]: a for a in python_faq.articles()}
    answer = by_id["faq/programming/how-do-i-convert-a-string-to-a-number"]
    assert answer["title"] == "How do I convert a string to a number?"
    assert "int(" in answer["text"] and ":func:" not in answer["text"] and ".. " not in answer["text"]
    guide = by_id["howto/sorting"]
    assert guide["title"] == "Sorting HOW TO" and "\n## Key Functions\n" in guide["text"]
