"""Which units an extractive answer quotes: the one holding the question's phrase, the one shaped as the
answer (a value, an assertion), never a sentence about the page itself or one that points elsewhere (real
local embedding model, no database)."""

from __future__ import annotations

from retrieval.answer_units import passage_units
from retrieval.extractive import ExtractiveSynthesizer
from retrieval.support import ScoredUnit, Support
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


def test_a_sentence_that_sends_the_reader_elsewhere_never_answers(embedder) -> None:  # type: ignore[no-untyped-def]
    passage = ("For information about kiln firing limits, see [Kiln firing limits](kiln-limits.md). "
               "A single glaze firing in the big kiln holds up to 40 pieces.\n"
               "To learn more about booking the kiln, see the booking page.\n")
    pointer, fact, learn = passage_units(passage)
    assert pointer.fragment and learn.fragment and not fact.fragment
    question = "What are the kiln firing limits for glaze pieces?"
    answer = ExtractiveSynthesizer(embedder).compose(question, [_hit(passage, "Kiln firing", "Limits")],
                                                     embedder.embed_query(question))
    assert answer.text == "A single glaze firing in the big kiln holds up to 40 pieces. [1]"


def test_a_question_about_a_value_is_answered_with_the_unit_stating_one(embedder) -> None:  # type: ignore[no-untyped-def]
    passage = ("The maximum number of kiln bookings depends on your membership tier and the season. "
               "Members can hold up to 4 kiln bookings at a time.\n")
    question = "What is the maximum number of kiln bookings a member can hold?"
    answer = ExtractiveSynthesizer(embedder).compose(question, [_hit(passage, "Kiln bookings", "Limits")],
                                                     embedder.embed_query(question))
    # The first sentence echoes the question ("maximum number of kiln bookings") and states no value.
    assert answer.text == "Members can hold up to 4 kiln bookings at a time. [1]"


def test_a_yes_no_question_is_answered_by_the_unit_that_asserts_alone(embedder) -> None:  # type: ignore[no-untyped-def]
    passage = ("By default, the studio's glaze room runs open sessions for members during opening hours. "
               "You can book it for a private class through the front desk.\n")
    question = "Can I run a private class in the studio's glaze room?"
    answer = ExtractiveSynthesizer(embedder).compose(question, [_hit(passage, "Glaze room", "Bookings")],
                                                     embedder.embed_query(question))
    # The opening hours share the question's words but say neither yes nor no: they no longer pad the answer.
    assert answer.text == "You can book it for a private class through the front desk. [1]"


def _scored(hit: SearchHit, rank: int, text: str, score: float, overlap: float) -> ScoredUnit:
    return ScoredUnit(hit, rank, passage_units(text)[0], similarity=score, overlap=overlap, score=score)


def test_another_article_is_cited_only_when_its_unit_is_as_specific(embedder) -> None:  # type: ignore[no-untyped-def]
    """The support is given (its scores are what retrieval/support.py would compute): the rule under test is
    the answerer's, which quotes a second article's unit only when it holds as much of what was asked."""
    booking = "Book on the board by the door, a week ahead, to use the kiln."
    notes = "Kiln slots go fast in December, so members reserve early for holiday firings."
    first = SearchHit(1, 1, "kb", "bookings.md", "Kiln bookings", None, ("Booking",), booking, 0, len(booking),
                      None, 0.8, 0.7)
    second = SearchHit(2, 2, "kb", "notes.md", "Studio notes", None, ("Notes",), notes, 0, len(notes), None, 0.79, 0.6)
    question = "How far ahead do members book the big kiln?"
    synthesizer = ExtractiveSynthesizer(embedder)
    vector = embedder.embed_query(question)
    nearby = Support([_scored(first, 0, booking, 0.80, 0.6), _scored(second, 1, notes, 0.80, 0.4)], 1.0)
    answer = synthesizer.compose(question, [first, second], vector, nearby)
    assert [c.hit.article_id for c in answer.citations] == [1]
    as_specific = Support([_scored(first, 0, booking, 0.80, 0.6), _scored(second, 1, notes, 0.79, 0.6)], 1.0)
    answer = synthesizer.compose(question, [first, second], vector, as_specific)
    assert [c.hit.article_id for c in answer.citations] == [1, 2]


def test_a_paragraph_under_a_bold_name_is_quoted_with_it(embedder) -> None:  # type: ignore[no-untyped-def]
    passage = ("The studio offers two kinds of firing.\n\n**Bisque firing**\n\nThe first firing hardens raw clay "
               "at 1,000 degrees so it can be glazed.\n\n**Note**\n\nLoad the kiln before 17:00.\n\n"
               "**Glaze firing**\n\nThe second firing melts the glaze at 1,240 degrees.\n")
    units = passage_units(passage)
    assert [u.label for u in units if u.label] == ["Bisque firing", "Glaze firing"]  # "Note" names nothing
    question = "How hot does the kiln get when it melts the glaze?"
    answer = ExtractiveSynthesizer(embedder).compose(question, [_hit(passage, "Firing", "Firing")],
                                                     embedder.embed_query(question))
    assert answer.text.startswith("**Glaze firing**: The second firing melts the glaze at 1,240 degrees.")
    assert all("Glaze firing" not in c.quote for c in answer.citations)  # a citation quotes the passage's text
