"""What a lead-in introduces comes with it: a list after a label line, definitions after a colon, and the
list that opens the article's next passage, read from a real PostgreSQL for the same readers only."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text

from retrieval.access import ReaderScope
from retrieval.answer import AnswerPipeline, AskContext
from retrieval.answer_units import passage_units
from retrieval.db import Database
from retrieval.extractive import ExtractiveSynthesizer
from retrieval.neighbours import PassageReader
from retrieval.search import Searcher
from retrieval.sources import FilesystemSource
from retrieval.sync import Indexer
from retrieval.types import SearchHit
from tests.conftest import fresh_database_url

GLAZES = ["Celadon green", "Tenmoku brown", "Shino white", "Ash grey", "Copper red", "Cobalt blue"]
# A paragraph long enough that the chunker closes the passage after it: the glaze list opens the next one.
STUDIO = (
    "# Glazing at the pottery studio\n\n"
    "## Studio glazes\n\n"
    + " ".join(f"Members glaze their pieces on the second floor, where bench {n} has its own sink and its own "
               "drying rack, and the kiln schedule is posted by the door every Monday morning." for n in range(1, 3))
    + " The studio keeps six house glazes for members to use:\n\n"
    + "\n".join(f"- {g}, mixed fresh every week and kept in the labelled buckets by the sinks." for g in GLAZES)
    + "\n"
)


def test_a_label_line_between_a_lead_in_and_its_list_does_not_hide_it() -> None:
    units = passage_units("The studio reserves the following bench names. You can't use these names for a "
                          "private bench.\n\n**A**\n- `ALDER`\n- `ASH`\n")
    lead_in = next(u for u in units if u.lead_in)
    assert lead_in.quote.startswith("You can't use these names")
    assert [u.rendered for u in units if u.block == lead_in.block and not u.lead_in] == ["ALDER", "ASH"]


def test_statements_after_a_colon_are_what_it_introduces() -> None:
    units = passage_units("A kiln can be in one of the following states:\n\n`loading`  \nPieces are being "
                          "placed.\n\n`firing`  \nThe kiln is hot.\n\nAfter a firing the kiln cools overnight "
                          "before anyone opens it:")
    lead_in, loading, firing, last = units
    assert lead_in.lead_in and not lead_in.fragment
    assert loading.block == firing.block == lead_in.block
    assert last.trails and last.fragment  # ends the passage with a colon: what it introduces is elsewhere


@pytest.fixture(scope="module")
def studio_db(pg_server, embedder, tmp_path_factory) -> Iterator[Database]:  # type: ignore[no-untyped-def]
    kb = tmp_path_factory.mktemp("studio")
    (kb / "glazing.md").write_text(STUDIO, encoding="utf-8")
    url, _ = fresh_database_url(pg_server)
    db = Database.from_url(url.render_as_string(hide_password=False), migrate=False)
    Indexer(db, embedder, chunk_max_tokens=120).sync([FilesystemSource("kb", kb)])
    yield db
    db.close()


def _lead_in_passage(db: Database, embedder) -> tuple[Searcher, list]:  # type: ignore[no-untyped-def, type-arg]
    searcher = Searcher(db, embedder)
    hits = searcher.search("Which house glazes does the studio keep?", k=8).hits
    lead_in = [h for h in hits if h.text.rstrip().endswith("to use:")]
    assert lead_in and all("Celadon" not in h.text for h in lead_in), "the list must open the next passage"
    return searcher, lead_in


def test_a_lead_in_ending_its_passage_brings_the_list_from_the_next_one(studio_db, embedder) -> None:  # type: ignore[no-untyped-def]
    searcher, lead_in = _lead_in_passage(studio_db, embedder)
    question = "Which house glazes does the studio keep?"
    synthesizer = ExtractiveSynthesizer(embedder)
    reader = PassageReader(studio_db)
    for scope in (None, ReaderScope.member([], "a member")):
        answer = synthesizer.compose(question, lead_in, searcher.embedder.embed_query(question),
                                     following=lambda hit, scope=scope: reader.following(hit, scope))
        assert answer.text.index("six house glazes") < answer.text.index(GLAZES[0])
        assert all(g in answer.text for g in GLAZES), answer.text
        assert [c.number for c in answer.citations] == [1, 2]  # both passages quoted, both cited
        assert {c.hit.external_id for c in answer.citations} == {"glazing.md"}
        assert all(q in c.hit.text for c in answer.citations for q in c.quote.split(" … "))
    # Through the pipeline: its reader reads the next passage under the asker's audience.
    pipeline = AnswerPipeline(searcher, synthesizer, passage_reader=reader)
    answer = pipeline.answer(question, AskContext(audience=ReaderScope.member([], "a member")))
    assert answer.outcome == "answered" and all(g in answer.text for g in GLAZES), answer.text


def test_a_next_passage_the_reader_may_not_see_is_never_quoted(studio_db, embedder) -> None:  # type: ignore[no-untyped-def]
    searcher, lead_in = _lead_in_passage(studio_db, embedder)
    with studio_db.engine.begin() as conn:  # as if the list were restricted to a group the reader is not in
        conn.execute(text("UPDATE chunks SET audience = '{S0POTTERS}' WHERE text LIKE '%Celadon%'"))
    try:
        reader = PassageReader(studio_db)
        member = ReaderScope.member([], "a member")
        assert reader.following(lead_in[0], member).passage is None
        assert reader.following(lead_in[0], ReaderScope.member(["S0POTTERS"], "a potter")).passage is not None
        question = "Which house glazes does the studio keep?"
        answer = ExtractiveSynthesizer(embedder).compose(
            question, lead_in, searcher.embedder.embed_query(question),
            following=lambda hit: reader.following(hit, member))
        assert not any(g in answer.text for g in GLAZES)
        assert not answer.text.replace(" [1]", "").rstrip().endswith(":")  # the bare lead-in is no answer
    finally:
        with studio_db.engine.begin() as conn:
            conn.execute(text("UPDATE chunks SET audience = '{everyone}' WHERE text LIKE '%Celadon%'"))


def test_a_command_comes_with_the_sentence_that_introduces_it(embedder) -> None:  # type: ignore[no-untyped-def]
    passage = ("Kiln logs are kept on the studio server.\n\nUse the following command to copy every kiln log to "
               "your laptop.\n\n```\n$ rsync -a studio:/kiln/logs ./kiln-logs\n```\n")
    lead_in, command = passage_units(passage)[1:]
    assert command.kind == "code" and command.block == lead_in.block and lead_in.lead_in
    hit = SearchHit(1, 1, "kb", "kiln.md", "Kiln logs", None, ("Copying logs",), passage, 0, len(passage), None,
                    1.0, 0.7)
    question = "How do I copy the kiln logs to my laptop?"
    answer = ExtractiveSynthesizer(embedder).compose(question, [hit], embedder.embed_query(question))
    assert "Use the following command" in answer.text
    assert "```\n$ rsync -a studio:/kiln/logs ./kiln-logs\n```\n[1]" in answer.text  # the fence stays closed


def test_a_list_item_is_quoted_with_its_lead_in(embedder) -> None:  # type: ignore[no-untyped-def]
    passage = ("The small kiln is kept for test tiles. The following are some limitations of the small kiln:\n"
               "- Doesn't fire above 1,200 degrees.\n- Doesn't hold pieces taller than 30 cm.\n"
               "- Needs a booking two days ahead.\n")
    hit = SearchHit(1, 1, "kb", "kiln.md", "Kilns", None, ("Small kiln",), passage, 0, len(passage), None, 1.0, 0.7)
    question = "Can the small kiln fire above 1,200 degrees?"
    answer = ExtractiveSynthesizer(embedder).compose(question, [hit], embedder.embed_query(question))
    lead_in = "The following are some limitations of the small kiln:"
    assert lead_in in answer.text and answer.text.index(lead_in) < answer.text.index("above 1,200 degrees")


KILNS = ("# Kilns\n\n## Studio kilns\n\nMembers can fire their pieces in three kinds of kilns.\n\n"
         + "".join(f"### {name}\n\nThe {name} kiln fires {use}, and members book it a week ahead on the board "
                   "by the door.\n\n" for name, use in (("Raku", "raku pieces outdoors"),
                                                      ("Gas", "stoneware to cone 10"),
                                                      ("Electric", "bisque and test tiles")))
         + "## Booking\n\nBook any kiln on the board.\n")


def test_a_lead_in_announcing_the_sections_below_it_names_them(pg_server, embedder, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "kilns.md").write_text(KILNS, encoding="utf-8")
    url, _ = fresh_database_url(pg_server)
    db = Database.from_url(url.render_as_string(hide_password=False), migrate=False)
    try:
        Indexer(db, embedder, chunk_max_tokens=120).sync([FilesystemSource("kb", tmp_path / "kb")])
        searcher = Searcher(db, embedder)
        question = "Which kilns does the studio run?"
        lead_in = [h for h in searcher.search(question, k=8).hits if h.heading_path == ("Studio kilns",)]
        reader = PassageReader(db)
        member = ReaderScope.member([], "a member")
        assert reader.following(lead_in[0], member).subsections == ("Raku", "Gas", "Electric")  # not "Booking"
        answer = ExtractiveSynthesizer(embedder).compose(
            question, lead_in, embedder.embed_query(question), following=lambda hit: reader.following(hit, member))
        assert "three kinds of kilns" in answer.text and "- Raku\n- Gas\n- Electric [1]" in answer.text, answer.text
        # The citation quotes the passage's own words; the section names are the article's structure.
        assert answer.citations[0].quote == "Members can fire their pieces in three kinds of kilns."
        with db.engine.begin() as conn:  # the sections below, restricted to a group the reader is not in
            conn.execute(text("UPDATE chunks SET audience = '{S0POTTERS}' WHERE heading_path[2] IS NOT NULL"))
        assert reader.following(lead_in[0], member).subsections == ()
        assert reader.following(lead_in[0], None).subsections == ("Raku", "Gas", "Electric")  # the operator
    finally:
        db.close()
