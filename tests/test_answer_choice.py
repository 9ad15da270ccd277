"""Which units an extractive answer quotes: the one holding the question's phrase, never a sentence about
the page itself (real local embedding model, no database)."""

from __future__ import annotations

from retrieval.answer import ExtractiveSynthesizer
from retrieval.answer_units import passage_units
from retrieval.types import SearchHit

QUOTAS = ("| Resource | Default limit |\n|---|---|\n"
          "| Maximum number of glaze buckets a member can reserve for a week, including 2 for large kiln pieces "
          "(anything over 30 cm or 5 kg) | 4 |\n"
          "| Maximum number of pieces in one glaze firing | 40 |\n"
          "| Maximum number of kilns | 3 |\n"
          "| Maximum number of glaze buckets | 12 |\n"
          "| Maximum number of members in a glazing class | 8 |\n")


def _hit(text: str, title: str, heading: str) -> SearchHit:
    return SearchHit(1, 1, "kb", "studio.md", title, None, (heading,), text, 0, len(text), None, 1.0, 0.7)


def test_the_row_holding_the_questions_phrase_answers_alone(embedder) -> None:  # type: ignore[no-untyped-def]
    question = "What is maximum number of glaze buckets in the pottery studio?"
    answer = ExtractiveSynthesizer(embedder).compose(question, [_hit(QUOTAS, "Studio quotas", "Quotas")],
                                                     embedder.embed_query(question))
    # "glaze" and "number" also sit in the firing row, apart: it is a neighbouring fact, not the answer.
    assert answer.text == "Resource: Maximum number of glaze buckets; Default limit: 12. [1]"


def test_a_sentence_about_the_page_itself_never_answers(embedder) -> None:  # type: ignore[no-untyped-def]
    passage = ("This topic describes how the pottery studio secures connections from the kiln controllers to "
               "other locations. Kiln controllers talk to the studio server over TLS 1.2 only.\n")
    about, fact = passage_units(passage)
    assert about.fragment and not fact.fragment
    question = "What protocol do the pottery studio's kiln controllers use to reach other locations?"
    answer = ExtractiveSynthesizer(embedder).compose(question, [_hit(passage, "Kiln network", "Security")],
                                                     embedder.embed_query(question))
    assert answer.text == "Kiln controllers talk to the studio server over TLS 1.2 only. [1]"
