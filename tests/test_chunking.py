"""Chunking: bounds, heading paths, exact offsets, sentence splitting, code fences."""

from __future__ import annotations

import itertools
import json
import logging
import random
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from retrieval.chunking import TINY_CHUNK_RATIO, approx_tokens, chunk_article, split_sentences
from retrieval.types import ChunkDraft

AWS_DOCS = Path(__file__).resolve().parents[2] / "shared/data/aws-docs-qa"
log = logging.getLogger(__name__)

VPN = """# Connecting to the VPN

Use NorthGate to reach internal systems.

## Troubleshooting

Most problems go away after a restart.

### Error 809

The network blocks UDP. Turn on the TCP fallback.

### Error 812

Your account is not in the VPN group.

## Getting help

Post in #it-help.
"""


def words(text: str) -> int:
    return len(text.split())


def assert_well_formed(text: str, chunks: list[ChunkDraft], max_tokens: int,
                       count: Callable[[str], int] = approx_tokens) -> None:
    previous_end = 0
    for ordinal, chunk in enumerate(chunks):
        assert chunk.ordinal == ordinal
        assert text[chunk.char_start:chunk.char_end] == chunk.text
        assert chunk.text and chunk.text == chunk.text.strip()
        assert chunk.char_start >= previous_end, "chunks overlap or go backwards"
        assert count(chunk.text) <= max_tokens
        assert chunk.token_count == count(chunk.text)
        previous_end = chunk.char_end


def paths(chunks: list[ChunkDraft]) -> list[tuple[str, ...]]:
    return [c.heading_path for c in chunks]


# --- headings --------------------------------------------------------------------------------------
def test_heading_paths_nest_and_leave_out_the_title() -> None:
    chunks = chunk_article(VPN, max_tokens=200)
    assert_well_formed(VPN, chunks, 200)
    assert [(c.heading_path, c.text) for c in chunks] == [
        ((), "Use NorthGate to reach internal systems."),
        (("Troubleshooting",), "Most problems go away after a restart."),
        (("Troubleshooting", "Error 809"), "The network blocks UDP. Turn on the TCP fallback."),
        (("Troubleshooting", "Error 812"), "Your account is not in the VPN group."),
        (("Getting help",), "Post in #it-help."),
    ]


def test_several_top_level_headings_are_sections_not_a_title() -> None:
    text = "# Install\n\nRun the installer.\n\n# Uninstall\n\nDrag it to the bin.\n"
    assert paths(chunk_article(text, max_tokens=100)) == [("Install",), ("Uninstall",)]


def test_heading_text_is_cleaned_of_anchors_escapes_and_closing_hashes() -> None:
    text = "# Title\n\n## Version 10\\.6<a name=\"v106\"></a>\n\nNotes.\n\n### Limits ###\n\nFew.\n"
    assert paths(chunk_article(text, max_tokens=100)) == [("Version 10.6",), ("Version 10.6", "Limits")]


def test_title_after_a_breadcrumb_is_still_the_title() -> None:
    text = "Security » Policies\n\n# Data classification\n\nFour levels.\n\n## Public\n\nAnyone.\n"
    chunks = chunk_article(text, max_tokens=100)
    assert [(c.heading_path, c.text) for c in chunks] == [
        ((), "Security » Policies"), ((), "Four levels."), (("Public",), "Anyone."),
    ]


def test_setext_headings_are_recognised() -> None:
    text = "Overview\n========\n\nIntro.\n\nDetails\n-------\n\nMore.\n"
    chunks = chunk_article(text, max_tokens=100)
    assert [(c.heading_path, c.text) for c in chunks] == [((), "Intro."), (("Details",), "More.")]


def test_chunks_never_span_two_sections() -> None:
    body = " ".join(f"Sentence number {i} is here." for i in range(30))
    text = f"## One\n\n{body}\n\n## Two\n\n{body}\n\n## Three\n\nShort.\n"
    chunks = chunk_article(text, max_tokens=60)
    assert_well_formed(text, chunks, 60)
    for chunk in chunks:
        assert "##" not in chunk.text
    assert {c.heading_path for c in chunks} == {("One",), ("Two",), ("Three",)}
    assert chunks[-1].text == "Short."  # a short whole section is kept, not merged away


def test_article_without_headings() -> None:
    text = "First paragraph.\n\nSecond paragraph."
    chunks = chunk_article(text, max_tokens=100)
    assert [(c.heading_path, c.text) for c in chunks] == [((), text)]


def test_article_made_only_of_headings_gives_the_heading_text() -> None:
    text = "# Holidays\n\n## Lisbon\n\n## Toronto\n"
    chunks = chunk_article(text, max_tokens=100)
    assert_well_formed(text, chunks, 100)
    assert [(c.heading_path, c.text) for c in chunks] == [
        ((), "Holidays"), ((), "Lisbon"), ((), "Toronto"),
    ]


def test_empty_text_gives_no_chunks() -> None:
    assert chunk_article("", max_tokens=100) == []
    assert chunk_article(" \n\n\t", max_tokens=100) == []


def test_max_tokens_must_be_positive() -> None:
    with pytest.raises(ValueError):
        chunk_article("text", max_tokens=0)


# --- code fences -----------------------------------------------------------------------------------
def test_hash_lines_inside_code_fences_are_not_headings() -> None:
    text = ("## Setup\n\nRun this:\n\n```bash\n# install the client\nbrew install northgate\n\n"
            "# start it\nnorthgate up\n```\n\n~~~\n## also not a heading\n~~~\n\nDone.\n")
    chunks = chunk_article(text, max_tokens=200)
    assert_well_formed(text, chunks, 200)
    assert paths(chunks) == [("Setup",)]
    assert "# start it" in chunks[0].text and "## also not a heading" in chunks[0].text


def test_indented_fence_in_a_list_item_protects_its_content() -> None:
    text = "1. Create the file:\n\n    ```\n    # comment\n\n    x = 1\n    ```\n\n## Next\n\nMore.\n"
    chunks = chunk_article(text, max_tokens=200)
    assert paths(chunks) == [(), ("Next",)]
    assert "# comment" in chunks[0].text and "x = 1" in chunks[0].text


def test_long_code_block_is_split_at_line_boundaries() -> None:
    lines = [f"echo step-{i}" for i in range(60)]
    text = "## Script\n\n```\n" + "\n".join(lines) + "\n```\n"
    chunks = chunk_article(text, max_tokens=40)
    assert_well_formed(text, chunks, 40)
    assert len(chunks) > 1
    for chunk in chunks:
        for line in chunk.text.split("\n"):
            assert line in lines or line == "```", f"split inside a line: {line!r}"


def test_short_lead_in_stays_with_the_block_it_introduces() -> None:
    filler = " ".join(f"Filler sentence {i} here." for i in range(12))
    code = "\n".join(f"aws s3 cp file-{i} s3://bucket/" for i in range(12))
    text = f"## Copy\n\n{filler}\n\nRun the following command:\n\n```\n{code}\n```\n"
    max_tokens = approx_tokens(code) + 10
    chunks = chunk_article(text, max_tokens=max_tokens)
    assert_well_formed(text, chunks, max_tokens)
    lead_in = next(c for c in chunks if "Run the following command:" in c.text)
    assert "aws s3 cp file-0" in lead_in.text


# --- packing and bounds ----------------------------------------------------------------------------
def test_long_list_is_split_between_items_not_inside_them() -> None:
    items = [f"- Row {i}: the first part. The second part of row {i}." for i in range(12)]
    text = "## Rows\n\n" + "\n".join(items) + "\n"
    chunks = chunk_article(text, max_tokens=30, count_tokens=words)
    assert_well_formed(text, chunks, 30, words)
    assert len(chunks) > 1
    for chunk in chunks:
        assert all(line in items for line in chunk.text.split("\n"))


def test_label_line_goes_with_the_paragraph_it_names() -> None:
    filler = " ".join(["word"] * 25)
    following = " ".join(["printer"] * 20)
    text = f"{filler}\n\nWHERE THE PRINTERS ARE\n\n{following}\n"
    chunks = chunk_article(text, max_tokens=40, count_tokens=words)
    assert [c.text for c in chunks] == [filler, f"WHERE THE PRINTERS ARE\n\n{following}"]


def test_paragraphs_are_packed_whole() -> None:
    paragraphs = [f"Paragraph {i} has a few words in it." for i in range(10)]
    text = "\n\n".join(paragraphs)
    chunks = chunk_article(text, max_tokens=40, count_tokens=words)
    assert_well_formed(text, chunks, 40, words)
    assert len(chunks) > 1
    for chunk in chunks:
        assert all(part in paragraphs for part in chunk.text.split("\n\n"))


def test_long_paragraph_is_split_at_sentences() -> None:
    sentences = [f"This is sentence {i}, e.g. about version v1.{i} in the U.S. office." for i in range(20)]
    text = " ".join(sentences)
    chunks = chunk_article(text, max_tokens=50, count_tokens=words)
    assert_well_formed(text, chunks, 50, words)
    joined = {s for c in chunks for s in sentences if s in c.text}
    assert joined == set(sentences), "a sentence was cut in the middle"


def test_sentence_longer_than_the_limit_is_split_at_words() -> None:
    text = " ".join(f"word{i}" for i in range(100))
    chunks = chunk_article(text, max_tokens=15, count_tokens=words)
    assert_well_formed(text, chunks, 15, words)
    assert all(re.fullmatch(r"word\d+( word\d+)*", c.text) for c in chunks)


def test_word_longer_than_the_limit_is_cut_as_a_last_resort() -> None:
    blob = "QUJD" * 200
    text = f"The key is {blob} and nothing else."
    chunks = chunk_article(text, max_tokens=30)
    assert_well_formed(text, chunks, 30)
    assert "".join(c.text for c in chunks if "QUJD" in c.text).count("QUJD") >= 199


def test_tiny_tail_borrows_from_the_previous_chunk_of_its_section() -> None:
    paragraphs = [" ".join(["word"] * 9)] * 5 + ["tail"]  # 5 x 9 words, then 1 word
    text = "## Section\n\n" + "\n\n".join(paragraphs) + "\n\n## Next\n\nSeparate."
    chunks = chunk_article(text, max_tokens=20, count_tokens=words)
    assert_well_formed(text, chunks, 20, words)
    same_section = [c for c in chunks if c.heading_path == ("Section",)]
    assert words(same_section[-1].text) >= 20 * TINY_CHUNK_RATIO
    assert chunks[-1].text == "Separate."  # never merged across the heading


def test_bound_holds_for_a_tokenizer_that_is_not_additive() -> None:
    # Counts joined text higher than its parts: the packer's sum is then an underestimate.
    def chars(text: str) -> int:
        return len(text) // 4 + 1

    text = "\n\n".join(f"Paragraph {i}. " + "More text here. " * (i % 7) for i in range(40))
    chunks = chunk_article(text, max_tokens=30, count_tokens=chars)
    assert_well_formed(text, chunks, 30, chars)


def random_markdown(rng: random.Random) -> str:
    vocabulary = ["VPN", "e.g.", "i.e.", "v1.2.3", "https://x.example/a.b?c=d", "3.14", "U.S.", "it",
                  "the", "password", "reset", "Dr.", "café", "東京", "AmazonSecurityTokenService", "—"]
    parts: list[str] = []
    for _ in range(rng.randint(0, 25)):
        kind = rng.random()
        if kind < 0.2:
            parts.append("#" * rng.randint(1, 6) + " " + rng.choice(vocabulary).capitalize())
        elif kind < 0.3:
            code = "\n".join("# " + rng.choice(vocabulary) for _ in range(rng.randint(0, 12)))
            parts.append(f"```\n{code}\n```")
        elif kind < 0.45:
            parts.append("\n".join(f"- {rng.choice(vocabulary)} item" for _ in range(rng.randint(1, 15))))
        else:
            sentences = []
            for _ in range(rng.randint(1, 12)):
                length = rng.choice([1, 3, 8, 20, 90])
                sentence = " ".join(rng.choice(vocabulary) for _ in range(length))
                sentences.append(sentence.capitalize() + rng.choice([".", "!", "?", ""]))
            parts.append(" ".join(sentences))
    separators = ["\n\n", "\n\n\n", "\n", "\n \n\t"]
    return rng.choice(["", "  \n"]) + "".join(p + rng.choice(separators) for p in parts)


@pytest.mark.parametrize("max_tokens", [12, 40, 200])
def test_property_offsets_bounds_and_coverage_on_generated_articles(max_tokens: int) -> None:
    rng = random.Random(max_tokens)
    for _ in range(80):
        text = random_markdown(rng)
        chunks = chunk_article(text, max_tokens=max_tokens)
        assert_well_formed(text, chunks, max_tokens)
        assert_covers_all_but_headings(text, chunks)


def assert_covers_all_but_headings(text: str, chunks: list[ChunkDraft]) -> None:
    """Every visible character is in some chunk, except on heading lines (they live in heading_path)."""
    covered = bytearray(len(text))
    for chunk in chunks:
        covered[chunk.char_start:chunk.char_end] = b"\x01" * (chunk.char_end - chunk.char_start)
    position = 0
    for line in text.split("\n"):
        if not re.match(r" {0,3}#{1,6}( |$)", line):
            for offset, char in enumerate(line):
                assert char.isspace() or covered[position + offset], f"lost {line!r}"
        position += len(line) + 1


# --- sentences -------------------------------------------------------------------------------------
def sentences(text: str) -> list[str]:
    return [text[start:end] for start, end in split_sentences(text)]


@pytest.mark.parametrize(("text", "expected"), [
    ("Restart the client. Then sign in again.", ["Restart the client.", "Then sign in again."]),
    ("Use a manager, e.g. NorthPass, for that. Done.", ["Use a manager, e.g. NorthPass, for that.", "Done."]),
    ("Pick one, i.e. Lisbon. Then go.", ["Pick one, i.e. Lisbon.", "Then go."]),
    ("Staff in the U.S. Army office apply. Others wait.",
     ["Staff in the U.S. Army office apply.", "Others wait."]),
    ("It costs 3.50 EUR. It is cheap.", ["It costs 3.50 EUR.", "It is cheap."]),
    ("Install v1.2.3 first. Then v2.0.", ["Install v1.2.3 first.", "Then v2.0."]),
    ("See https://wiki.example/a.b?x=1. Then log in.", ["See https://wiki.example/a.b?x=1.", "Then log in."]),
    ("Is it on? Yes! Good.", ["Is it on?", "Yes!", "Good."]),
    ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
    ("Call Dr. Smith today. Or not.", ["Call Dr. Smith today.", "Or not."]),
    ("Wait for approx. five minutes. Then retry.", ["Wait for approx. five minutes.", "Then retry."]),
    ("The end of line. the next word is lowercase.", ["The end of line. the next word is lowercase."]),
    ("Steps:\n1. Open it\n2. Close it", ["Steps:", "1. Open it", "2. Close it"]),
    ("First paragraph without stop\n\nSecond one", ["First paragraph without stop", "Second one"]),
    ("A line that wraps\nin the middle. Next.", ["A line that wraps\nin the middle.", "Next."]),
    ("  Padded.  ", ["Padded."]),
    # The word before a full stop is looked for in a short window: a longer word is no abbreviation,
    # and one that the window cuts in the middle is still not read as one ("...x" + "e.g").
    ("Set " + "x" * 80 + "e.g. Then go.", ["Set " + "x" * 80 + "e.g.", "Then go."]),
    ("a b. " * 40 + "See e.g. Lisbon. Done.", ["a b. " * 39 + "a b. See e.g. Lisbon.", "Done."]),
    ("", []),
])
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert sentences(text) == expected


def test_split_sentences_covers_every_character_but_whitespace() -> None:
    rng = random.Random(7)
    for _ in range(200):
        text = random_markdown(rng)
        spans = split_sentences(text)
        rebuilt = "".join(text[s:e] for s, e in spans)
        assert re.sub(r"\s", "", rebuilt) == re.sub(r"\s", "", text)
        assert all(text[s:e] == text[s:e].strip() and s < e for s, e in spans)
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))


# --- token estimate --------------------------------------------------------------------------------
def test_approx_tokens_errs_high_and_adds_up() -> None:
    prose = "Connect to the VPN before you open the finance reporting server, then sign in."
    assert approx_tokens(prose) >= len(prose.split()) + 2  # at least one token per word and punctuation
    assert approx_tokens("") == 0
    assert approx_tokens("東京の会社") >= 5  # about one token per CJK character
    parts = ["First paragraph.", "Second, longer paragraph with v1.2.3 in it."]
    assert approx_tokens("\n\n".join(parts)) <= sum(approx_tokens(p) for p in parts)


# --- real data -------------------------------------------------------------------------------------
@pytest.mark.shared_data
def test_aws_docs_corpus_chunks_quickly_within_bounds() -> None:
    corpus = AWS_DOCS / "corpus.jsonl"
    if not corpus.is_file():
        pytest.skip(f"{corpus} is not available on this machine")
    with corpus.open(encoding="utf-8") as lines:
        texts = [json.loads(line)["text"] for line in lines]
    started = time.perf_counter()
    per_article = [chunk_article(text, max_tokens=200) for text in texts]
    elapsed = time.perf_counter() - started
    total = sum(len(chunks) for chunks in per_article)
    log.info("chunked %d articles into %d chunks in %.2f s", len(texts), total, elapsed)
    for text, chunks in zip(texts, per_article, strict=True):
        assert chunks
        for chunk in chunks:
            assert chunk.token_count <= 200
            assert text[chunk.char_start:chunk.char_end] == chunk.text
    assert elapsed < 60, "chunking the AWS corpus should take seconds"  # generous: the CI box is shared
