"""Split an article's Markdown into passages small enough to embed and precise enough to cite.

A chunk never crosses a heading: each one carries the heading path of its section, so a passage like
"Restart the client." is embedded under "VPN > Troubleshooting > Error 809" (the caller adds the
title). Inside a section, whole paragraphs are packed together; a paragraph too long for one chunk is
split at sentence boundaries (code blocks at line boundaries), then at word boundaries, and only then
inside a word. A short lead-in before a long paragraph or code block is kept with its start.

Chunks point back into the article with character offsets: ``text[c.char_start:c.char_end] == c.text``
always holds, so citations can quote and highlight the exact passage. Whitespace is trimmed by moving
the offsets, never by editing the text.

Token counts come from a caller-supplied function (the embedding model's own tokenizer in production).
The packer sums per-piece counts, which is fast but only an estimate for real tokenizers, so every
chunk is re-counted as a whole before it is emitted and re-packed in the rare case it overflows.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
import string
from collections.abc import Callable
from dataclasses import dataclass

from retrieval.types import ChunkDraft

logger = logging.getLogger(__name__)

# Counts a text's tokens in the embedding model's tokenizer (Embedder.count_tokens); not retrieval.tokens,
# which approximates an LLM's tokens.
CountTokens = Callable[[str], int]

# A chunk below this share of max_tokens borrows paragraphs from the chunk before it (same section).
TINY_CHUNK_RATIO = 0.2

# --- token estimate -----------------------------------------------------------------------------------
# A linear model over counts that C code computes in one pass each (bytes.translate), about 6x faster
# than counting regex matches, which matters because every paragraph and chunk is counted. Fitted as a
# 99th-percentile quantile regression against all-MiniLM-L6-v2's WordPiece counts on 20,000 paragraphs
# of the AWS docs corpus: the median estimate is 1.25x the real count, and it is low for about 1% of
# paragraphs (the worst at 0.77x: long camelCase identifiers and base64 blobs). Whitespace counts for
# nothing, so the estimate of two paragraphs together is the sum of their estimates (the packer relies
# on it), and code indentation does not inflate it. Multi-byte characters get an extra weight so that
# CJK text (about one token per character) is not underestimated.
_WHITESPACE = string.whitespace.encode()
_PUNCTUATION = string.punctuation.encode()
_UPPERCASE = string.ascii_uppercase.encode()
_DIGITS = string.digits.encode()


def approx_tokens(text: str) -> int:
    """A fast token estimate that errs on the high side (no tokenizer needed)."""
    data = text.encode("utf-8")
    size = len(data)
    visible = len(data.translate(None, _WHITESPACE))
    punctuation = size - len(data.translate(None, _PUNCTUATION))
    uppercase = size - len(data.translate(None, _UPPERCASE))
    digits = size - len(data.translate(None, _DIGITS))
    extra_bytes = size - len(text)
    estimate = 0.26 * visible + 1.11 * punctuation + 0.26 * uppercase + 0.98 * digits + 0.5 * extra_bytes
    return math.ceil(estimate)


# --- sentences ----------------------------------------------------------------------------------------
# Places where a new sentence starts whatever the punctuation: a blank line, or a new line that opens a
# list item, heading, table row, block quote or code fence.
_HARD_BREAK = re.compile(
    r"\n[ \t]*\n\s*|\n(?=[ \t]*(?:[-*+][ \t]|\d{1,3}[.)][ \t]|#{1,6}[ \t]|\||>|```|~~~))"
)
# Terminal punctuation, any closing quotes/brackets/emphasis after it, then whitespace. Requiring the
# whitespace is what keeps decimals (3.5), versions (v1.2.3), file names and URLs in one piece.
_SENTENCE_END = re.compile(r"[.!?\u2026]+[\"'\u2019\u201d)\]*_`]*(?=\s)")
_LAST_TOKEN = re.compile(r"\S+$")
_VISIBLE = re.compile(r"\S")
_LONGEST_WORD = 64
# Words that end with a period without ending the sentence (compared lowercase, backslashes removed).
_ABBREVIATIONS = frozenset({
    "e.g", "eg", "i.e", "ie", "vs", "cf", "approx", "ca", "mr", "mrs", "ms", "dr", "prof", "sr", "jr",
    "st", "no", "nos", "fig", "figs", "vol", "p", "pp", "ref", "resp",
})
_INITIALISM = re.compile(r"(?:[A-Za-z]\.)+[A-Za-z]")  # U.S, U.K, a.m
_HAS_WORD = re.compile(r"[^\W\d_]")


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Return (start, end) spans of the sentences in `text`, whitespace trimmed, in order.

    Every non-whitespace character belongs to exactly one span. Does not split after common
    abbreviations (e.g., i.e., vs.), initialisms (U.S.), before a lowercase word, inside numbers,
    versions or URLs; does split at blank lines and before list items, headings and table rows.
    """
    spans: list[tuple[int, int]] = []
    start = 0
    for brk in _HARD_BREAK.finditer(text):
        _split_segment(text, start, brk.start(), spans)
        start = brk.end()
    _split_segment(text, start, len(text), spans)
    return spans


def _split_segment(text: str, start: int, end: int, out: list[tuple[int, int]]) -> None:
    sentence_start = start
    for match in _SENTENCE_END.finditer(text, start, end):
        cut = match.end()
        if _is_sentence_end(text, sentence_start, match.start(), cut, end):
            _append_trimmed(text, sentence_start, cut, out)
            sentence_start = cut
    _append_trimmed(text, sentence_start, end, out)


def _is_sentence_end(text: str, sentence_start: int, punct_start: int, cut: int, end: int) -> bool:
    # Searched, not sliced: a slice of the rest of a long paragraph per full stop was quadratic.
    following = _VISIBLE.search(text, cut, end)
    if following is None or following.group().islower():
        return False
    # "1." or "**" alone is a list number or markup, not a sentence.
    if not _HAS_WORD.search(text, sentence_start, cut):
        return False
    if text[punct_start] != ".":
        return True
    # The word before the full stop, looked for in a short window: searching from the sentence's start
    # was quadratic in a long run of lowercase-continued sentences, and no abbreviation is that long.
    window = max(sentence_start, punct_start - _LONGEST_WORD)
    token_match = _LAST_TOKEN.search(text, window, punct_start)
    if token_match is None:
        return True
    if token_match.start() == window > sentence_start and not text[window - 1].isspace():
        return True  # a word longer than the window: no abbreviation or initial
    token = token_match.group().replace("\\", "").lstrip("([\"'*_`")
    if token.lower() in _ABBREVIATIONS:
        return False
    # A single initial ("J. Smith") or an initialism ("U.S. Army").
    return not (len(token) == 1 and token.isalpha()) and not _INITIALISM.fullmatch(token)


def _append_trimmed(text: str, start: int, end: int, out: list[tuple[int, int]]) -> None:
    start, end = _trim(text, start, end)
    if start < end:
        out.append((start, end))


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    segment = text[start:end]
    stripped = segment.lstrip()
    start += len(segment) - len(stripped)
    end -= len(stripped) - len(stripped.rstrip())
    return start, end


# --- Markdown structure -------------------------------------------------------------------------------
_ATX_HEADING = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*?))??(?:[ \t]+#+)?[ \t]*$")
_SETEXT_UNDERLINE = re.compile(r" {0,3}(=+|-{2,})[ \t]*$")
# Any indentation: fences nested in list items are indented four spaces or more.
_FENCE = re.compile(r"[ \t]*(`{3,}|~{3,})")
_NOT_PARAGRAPH_LINE = re.compile(r"[ \t]*(?:[-*+>|]|\d{1,3}[.)]|#|<)")
_STRUCTURE_STARTS = frozenset("#`~=-")  # first characters of fences, ATX headings and setext underlines
_HTML_TAG = re.compile(r"<[^>]*>")
_BACKSLASH_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")


@dataclass(frozen=True)
class _Heading:
    level: int
    title: str
    line_start: int  # where the heading's first line starts (a setext heading has two lines)
    body_start: int  # just after the heading's last line
    title_start: int
    title_end: int


@dataclass(frozen=True)
class _Section:
    heading_path: tuple[str, ...]
    start: int
    end: int


@dataclass(frozen=True)
class _Unit:
    """The smallest piece the packer moves around: a paragraph, sentence, code line or word."""

    start: int
    end: int
    tokens: int
    is_code: bool = False


def _lines(text: str) -> list[tuple[int, str]]:
    lines = []
    pos = 0
    for line in text.split("\n"):
        lines.append((pos, line))
        pos += len(line) + 1
    return lines


def clean_heading(raw: str) -> str:
    """The readable text of a Markdown heading: inline HTML and backslash escapes removed.

    AWS-style headings carry anchors (`Setup<a name="setup"></a>`) and escapes (`Version 10\\.6`).
    """
    title = _BACKSLASH_ESCAPE.sub(r"\1", _HTML_TAG.sub("", raw))
    return " ".join(title.split())


def _find_headings(text: str) -> list[_Heading]:
    """ATX (`## Title`) and single-line setext (`Title` over `===`) headings outside code fences."""
    headings: list[_Heading] = []
    fence: str | None = None
    prev: tuple[int, str] | None = None  # the previous line, if it could be a setext title
    prev_blank = True
    for pos, line in _lines(text):
        if fence is not None:
            if _closes_fence(line, fence):
                fence = None
            prev, prev_blank = None, False
            continue
        # Most lines are plain text; only these first characters can start a fence or a heading.
        if line.lstrip(" ")[:1] in _STRUCTURE_STARTS:
            fence = _opens_fence(line)
            heading = None
            if fence is None:
                heading = _atx_heading(text, pos, line) or _setext_heading(text, prev, pos, line)
            if fence or heading:
                if heading:
                    headings.append(heading)
                prev, prev_blank = None, False
                continue
        blank = not line.strip()
        # Only a one-line paragraph may become a setext title; a lone `---` after a list is a rule.
        single_line = prev_blank and not blank and not _NOT_PARAGRAPH_LINE.match(line)
        prev = (pos, line) if single_line else None
        prev_blank = blank
    return headings


def _opens_fence(line: str) -> str | None:
    match = _FENCE.match(line)
    # A backtick fence's info string may not contain backticks; otherwise it is inline code.
    if match and (match.group(1)[0] == "~" or "`" not in line[match.end():]):
        return match.group(1)
    return None


def _closes_fence(line: str, fence: str) -> bool:
    stripped = line.strip()
    return stripped.startswith(fence) and not stripped.strip(fence[0])


def _atx_heading(text: str, pos: int, line: str) -> _Heading | None:
    match = _ATX_HEADING.match(line)
    if match is None:
        return None
    raw = match.group(2) or ""
    title_start = pos + match.start(2) if match.group(2) is not None else pos + match.end(1)
    return _Heading(len(match.group(1)), clean_heading(raw), pos, _next_line(text, pos, line),
                    title_start, title_start + len(raw))


def _setext_heading(text: str, prev: tuple[int, str] | None, pos: int, line: str) -> _Heading | None:
    match = _SETEXT_UNDERLINE.match(line)
    if match is None or prev is None:
        return None
    prev_pos, prev_line = prev
    title_start, title_end = _trim(text, prev_pos, prev_pos + len(prev_line))
    level = 1 if match.group(1)[0] == "=" else 2
    return _Heading(level, clean_heading(prev_line), prev_pos, _next_line(text, pos, line),
                    title_start, title_end)


def _next_line(text: str, pos: int, line: str) -> int:
    return min(pos + len(line) + 1, len(text))


def _document_title_index(headings: list[_Heading]) -> int | None:
    """The index of the `# Title` that names the whole article, if there is one.

    Articles often repeat their title as a level-1 heading; the caller already prefixes the title, so
    putting it in every heading path would only say it twice. It is the first heading and the only
    level-1 one (a breadcrumb or "Owner:" line may come before it); several level-1 headings are
    sections, not a title.
    """
    if not headings or headings[0].level != 1:
        return None
    if any(h.level == 1 for h in headings[1:]):
        return None
    return 0


def _heading_paths(text: str, headings: list[_Heading]) -> list[tuple[str, ...]]:
    """For each heading, the titles of the headings enclosing it and its own, outermost first."""
    title_index = _document_title_index(headings)
    paths: list[tuple[str, ...]] = []
    stack: list[tuple[int, str]] = []  # (level, title) of the open headings
    for index, heading in enumerate(headings):
        while stack and stack[-1][0] >= heading.level:
            stack.pop()
        # The document title still nests the levels below it, but its name stays out of the path.
        stack.append((heading.level, "" if index == title_index else heading.title))
        paths.append(tuple(title for _, title in stack if title))
    return paths


def _sections(text: str, headings: list[_Heading]) -> list[_Section]:
    sections = [_Section((), 0, headings[0].line_start if headings else len(text))]
    for index, (heading, path) in enumerate(zip(headings, _heading_paths(text, headings), strict=True)):
        end = headings[index + 1].line_start if index + 1 < len(headings) else len(text)
        sections.append(_Section(path, heading.body_start, end))
    return sections


def _blocks(text: str, start: int, end: int) -> list[tuple[int, int, bool]]:
    """Paragraph-like blocks of a section body as (start, end, is_code), trimmed of whitespace.

    Blank lines separate blocks except inside a fenced code block, which is always a block of its own.
    """
    blocks: list[tuple[int, int, bool]] = []
    block_start: int | None = None
    fence: str | None = None
    pos = start
    while pos < end:
        newline = text.find("\n", pos, end)
        line_end = end if newline == -1 else newline
        line = text[pos:line_end]
        if fence is not None:
            if _closes_fence(line, fence):
                _add_block(text, block_start, line_end, True, blocks)
                block_start, fence = None, None
        elif (opened := _opens_fence(line)) is not None:
            _add_block(text, block_start, pos, False, blocks)
            block_start, fence = pos, opened
        elif not line.strip():
            _add_block(text, block_start, pos, False, blocks)
            block_start = None
        elif block_start is None:
            block_start = pos
        pos = line_end + 1
    _add_block(text, block_start, end, fence is not None, blocks)
    return blocks


def _add_block(text: str, start: int | None, end: int, is_code: bool,
               out: list[tuple[int, int, bool]]) -> None:
    if start is None:
        return
    start, end = _trim(text, start, end)
    if start < end:
        out.append((start, end, is_code))


# --- splitting oversized pieces -------------------------------------------------------------------------
_WORD = re.compile(r"\S+")
_LINE = re.compile(r"[^\n]+")


def _more_words_than(text: str, start: int, end: int, limit: int) -> bool:
    """True when the span holds more than `limit` words, so more tokens than that: every tokenizer
    gives a word at least one token. Lets a huge span skip a futile count of its whole text."""
    return next(itertools.islice(_WORD.finditer(text, start, end), limit, None), None) is not None


def _units(text: str, start: int, end: int, is_code: bool, max_tokens: int,
           count: CountTokens) -> list[_Unit]:
    """The span as one unit if it fits, else finer pieces, recursively: list items or table rows (code
    lines), then sentences, then words, then characters."""
    if not _more_words_than(text, start, end, max_tokens):
        tokens = count(text[start:end])
        if tokens <= max_tokens:
            return [_Unit(start, end, tokens, is_code)]
    pieces = _finer_spans(text, start, end, is_code)
    if len(pieces) <= 1:
        return _split_words(text, start, end, max_tokens, count)
    return [unit for s, e in pieces for unit in _units(text, s, e, is_code, max_tokens, count)]


def _finer_spans(text: str, start: int, end: int, is_code: bool) -> list[tuple[int, int]]:
    if is_code:
        spans = [_trim(text, m.start(), m.end()) for m in _LINE.finditer(text, start, end)]
        return [(s, e) for s, e in spans if s < e]
    # A list or table splits between its items first, so a row is not cut at a full stop inside it.
    items = _items(text, start, end)
    if len(items) > 1:
        return items
    return [(start + s, start + e) for s, e in split_sentences(text[start:end])]


def _items(text: str, start: int, end: int) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for brk in _HARD_BREAK.finditer(text, start, end):
        _append_trimmed(text, start, brk.start(), spans)
        start = brk.end()
    _append_trimmed(text, start, end, spans)
    return spans


def _split_words(text: str, start: int, end: int, max_tokens: int, count: CountTokens) -> list[_Unit]:
    if not _more_words_than(text, start, end, max_tokens):
        tokens = count(text[start:end])
        if tokens <= max_tokens:
            return [_Unit(start, end, tokens)]
    units: list[_Unit] = []
    # Words repeat (a 2 MB paragraph holds ~300k words but a few thousand distinct ones), and a
    # tokenizer call per word dominated chunking such a text.
    word_counts: dict[str, int] = {}
    for word in _WORD.finditer(text, start, end):
        word_tokens = word_counts.get(word.group())
        if word_tokens is None:
            word_tokens = word_counts[word.group()] = count(word.group())
        if word_tokens <= max_tokens:
            units.append(_Unit(word.start(), word.end(), word_tokens))
        else:
            units.extend(_split_chars(text, word.start(), word.end(), max_tokens, count))
    return units


def _split_chars(text: str, start: int, end: int, max_tokens: int, count: CountTokens) -> list[_Unit]:
    """Last resort for a 'word' such as a base64 blob: the longest prefixes that fit, by bisection."""
    units: list[_Unit] = []
    while start < end:
        low, high = start + 1, end  # find the largest cut in [low, high] that fits
        if count(text[start:low]) > max_tokens:
            raise ValueError(f"max_tokens={max_tokens} cannot hold even one character ({text[start]!r})")
        while low < high:
            middle = (low + high + 1) // 2
            if count(text[start:middle]) <= max_tokens:
                low = middle
            else:
                high = middle - 1
        units.append(_Unit(start, low, count(text[start:low])))
        start = low
    return units


# --- packing --------------------------------------------------------------------------------------------
def _pack(text: str, units: list[_Unit], max_tokens: int, count: CountTokens) -> list[list[_Unit]]:
    """Greedy packing on summed unit counts (cheap); `_fit` later checks the real count of each group.

    A short lead-in ("Run the following command:") goes with what it introduces: it moves to the next
    chunk rather than closing this one, and when it would sit alone before a unit too big to join, that
    unit is broken into sentences or lines so the lead-in can open the chunk holding its start.
    """
    floor = max_tokens * TINY_CHUNK_RATIO
    groups: list[list[_Unit]] = []
    current: list[_Unit] = []
    current_tokens = 0
    pending = units[::-1]  # a stack, so refined pieces and carried units can be pushed back in order
    while pending:
        unit = pending.pop()
        if current and current_tokens + unit.tokens > max_tokens:
            finer = _finer_units(text, unit, max_tokens, count) if current_tokens < floor else []
            if len(finer) > 1:
                pending.extend(reversed(finer))
                continue
            carried = [current.pop()] if len(current) > 1 and _is_lead_in(text, current[-1], floor) else []
            groups.append(current)
            current, current_tokens = carried, sum(u.tokens for u in carried)
            if carried:
                pending.append(unit)  # try again with the lead-in in front of it
                continue
        current.append(unit)
        current_tokens += unit.tokens
    if current:
        groups.append(current)
    return groups


def _is_lead_in(text: str, unit: _Unit, floor: float) -> bool:
    """A short paragraph that introduces what follows: "To install it:", or a label line like "Steps"."""
    if unit.is_code or unit.tokens >= floor:
        return False
    paragraph = text[unit.start:unit.end].rstrip("*_ ")
    return paragraph.endswith(":") or ("\n" not in paragraph and not paragraph.endswith((".", "!", "?")))


def _finer_units(text: str, unit: _Unit, max_tokens: int, count: CountTokens) -> list[_Unit]:
    pieces = [_Unit(s, e, count(text[s:e]), unit.is_code)
              for s, e in _finer_spans(text, unit.start, unit.end, unit.is_code)]
    # A real tokenizer may count a piece higher than the whole it came from; never risk the bound.
    return pieces if all(p.tokens <= max_tokens for p in pieces) else []


def _rebalance(groups: list[list[_Unit]], max_tokens: int) -> None:
    """Give each tiny chunk whole units from the chunk before it, so it is not a stray fragment.

    Greedy packing leaves a small chunk before a unit too big to join it, and at a section's end.
    Sections are packed separately, so this never moves text across a heading.
    """
    floor = max_tokens * TINY_CHUNK_RATIO
    index = 1
    while index < len(groups):
        previous, current = groups[index - 1], groups[index]
        current_tokens = sum(u.tokens for u in current)
        if current_tokens >= floor:
            index += 1
            continue
        if current_tokens + sum(u.tokens for u in previous) <= max_tokens:
            groups[index - 1: index + 1] = [previous + current]
            continue
        while (current_tokens < floor and len(previous) > 1
               and current_tokens + previous[-1].tokens <= max_tokens):
            moved = previous.pop()
            current.insert(0, moved)
            current_tokens += moved.tokens
        index += 1


def _fit(text: str, group: list[_Unit], max_tokens: int, count: CountTokens) -> list[tuple[int, int, int]]:
    """(start, end, tokens) for a group, re-packed by real counts if the summed estimate was wrong."""
    start, end = group[0].start, group[-1].end
    tokens = count(text[start:end])
    if tokens <= max_tokens:
        return [(start, end, tokens)]
    logger.debug("chunk of %d tokens over the %d limit after packing; re-packing exactly", tokens, max_tokens)
    fitted: list[tuple[int, int, int]] = []
    current_start, current_end, current_tokens = group[0].start, group[0].end, group[0].tokens
    for unit in group[1:]:
        candidate = count(text[current_start:unit.end])
        if candidate <= max_tokens:
            current_end, current_tokens = unit.end, candidate
        else:
            fitted.append((current_start, current_end, current_tokens))
            current_start, current_end, current_tokens = unit.start, unit.end, unit.tokens
    fitted.append((current_start, current_end, current_tokens))
    return fitted


# --- public entry point ------------------------------------------------------------------------------
def chunk_article(
    text: str, *, max_tokens: int, count_tokens: CountTokens = approx_tokens
) -> list[ChunkDraft]:
    """Split Markdown/plain `text` into chunks of at most `max_tokens` (as counted by `count_tokens`).

    Heading paths leave out a leading `# Title` line that names the whole article (the caller adds
    the title). An article made only of headings yields its headings' text rather than nothing.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    headings = _find_headings(text)
    spans: list[tuple[tuple[str, ...], int, int, int]] = []
    for section in _sections(text, headings):
        spans.extend(_chunk_section(text, section, max_tokens, count_tokens))
    if not spans and headings:
        spans = _heading_only_chunks(text, headings, max_tokens, count_tokens)
    return [
        ChunkDraft(ordinal=i, text=text[start:end], heading_path=path, char_start=start, char_end=end,
                   token_count=tokens)
        for i, (path, start, end, tokens) in enumerate(spans)
    ]


def _chunk_section(text: str, section: _Section, max_tokens: int,
                   count: CountTokens) -> list[tuple[tuple[str, ...], int, int, int]]:
    units: list[_Unit] = []
    for start, end, is_code in _blocks(text, section.start, section.end):
        units.extend(_units(text, start, end, is_code, max_tokens, count))
    groups = _pack(text, units, max_tokens, count)
    _rebalance(groups, max_tokens)
    return [(section.heading_path, start, end, tokens)
            for group in groups for start, end, tokens in _fit(text, group, max_tokens, count)]


def _heading_only_chunks(text: str, headings: list[_Heading], max_tokens: int,
                         count: CountTokens) -> list[tuple[tuple[str, ...], int, int, int]]:
    chunks: list[tuple[tuple[str, ...], int, int, int]] = []
    for heading, path in zip(headings, _heading_paths(text, headings), strict=True):
        start, end = _trim(text, heading.title_start, heading.title_end)
        if start == end:
            continue
        # The chunk's text is the heading itself, so its path holds only the headings above it.
        parents = path[:-1] if path and path[-1] == heading.title else path
        words = _split_words(text, start, end, max_tokens, count)
        for unit_group in _pack(text, words, max_tokens, count):
            chunks.extend((parents, s, e, t) for s, e, t in _fit(text, unit_group, max_tokens, count))
    return chunks
