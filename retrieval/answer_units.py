"""The pieces an extractive answer is made of: sentences, list items and table rows of a passage.

A passage is read line by line. Markdown table rows become one unit each, rendered with the header's column
names ("City: Toronto, Canada; Daily rate: CAD 85") so a row reads as a statement on its own; list items are
units grouped in a block (a numbered block is a procedure: its steps are quoted together and in order); a
sentence ending in a colon right before a list is that list's lead-in; other text is split into sentences.
Each unit keeps its exact text in the passage, so a citation quotes what the passage says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

from retrieval.chunking import split_sentences

# "heading": a section's name, only where an answer lists the sections a lead-in announces.
UnitKind = Literal["sentence", "item", "row", "code", "heading"]

_LIST_ITEM = re.compile(r"^(\s*)(?:[-*+]|(\d{1,3})[.)])\s+(.*)$")
_TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_WORD = re.compile(r"\w+")
_MARKUP = re.compile(r"\*\*|__|`")
_CHECKBOX = re.compile(r"^\[[ xX]\]\s+")
# Markdown's backslash escapes ("TLS 1\\.2", "us\\-east\\-1"): the reader sees the character, not the escape.
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|~<>])")
# A unit that is only links or images ("[Model Monitor](#monitor)", "![Overview](x.png)") points elsewhere.
_ONLY_LINKS = re.compile(r"^(?:\s*!?\[[^\]]*\]\([^)]*\)[\s.;,]*)+$")
# The last sentence before a list that announces it ("…reserves the following names.", "…provides six
# built-in algorithms:") is the list's lead-in even without a colon: the list is what it talks about.
_ANNOUNCES = re.compile(r"\b(?:following|these|as follows|include|includes|including)\b|\b(?:two|three|four|five|"
                        r"six|seven|eight|nine|ten|several|many|\d+)\b(?:\s+[\w-]+){0,3}\s+(?:types?|kinds?|"
                        r"ways?|options?|algorithms?|states?|steps?|methods?|modes?|categories|classes)\b",
                        re.IGNORECASE)
# "See the article on X", "For details, read Y", "For information about X, see Y": a pointer elsewhere, not
# an answer;
# "This topic describes how…": what the page is about, said of the page, not an answer.
_POINTER = re.compile(r"^(?:see|read|for (?:more|details))\b|"
                      r"^(?:for (?:additional |further |general )?(?:information|instructions|details|"
                      r"an? (?:example|list|description|overview|tutorial|walkthrough))|to learn (?:more|how|about))"
                      r"\b[^.]{0,200}?\bsee\b|"
                      r"\bsee the [\w\s-]{0,40}\barticle\b|\bsee \*|"
                      r"^this (?:topic|page|section|guide|chapter|document|article|tutorial) (?:describes|explains|"
                      r"shows|covers|discusses|lists|walks)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Unit:
    kind: UnitKind
    quote: str  # exactly as in the passage (what a citation shows)
    rendered: str  # how the answer says it
    position: int  # order inside the passage
    block: int | None = None  # list or table the unit belongs to
    ordered: bool = False  # an item of a numbered list (a step)
    lead_in: bool = False  # a sentence ending in ":" that introduces the next block
    # The passage's last sentence, announcing what follows ("…the following names:"): what it introduces
    # is in the article's next passage (chunking packs paragraphs, so a list can open the next chunk).
    trails: bool = False
    # The bold line right above the paragraph ("**Manual Tracking**" + what it is): the name the answer says
    # with the sentence, as a heading would be. Not part of the unit's text (nor of its embedding).
    label: str | None = None

    @property
    def words(self) -> int:
        return len(_WORD.findall(self.rendered))

    @property
    def fragment(self) -> bool:
        """Heading-like, a dangling colon or a pointer: cannot answer alone (a table row's cells may be short)."""
        if self.kind == "row":
            return False
        return (self.words < 4 or self.rendered.isupper() or (self.quote.rstrip().endswith(":") and not self.lead_in)
                or bool(_POINTER.search(self.rendered)) or bool(_ONLY_LINKS.match(self.quote)))


def passage_units(text: str) -> list[Unit]:
    units: list[Unit] = []
    lines = text.split("\n")
    offsets = [0]
    for line in lines[:-1]:
        offsets.append(offsets[-1] + len(line) + 1)
    block = 0
    i = 0
    paragraph: list[str] = []
    blank_before = False

    def flush_paragraph(before_block: bool, at_end: bool = False) -> None:
        if not paragraph:
            return
        joined = "\n".join(paragraph)
        if before_block and _is_label(joined) and units and _announces(units[-1]) and not units[-1].lead_in:
            # "…reserves the following names:" + "**A**" + the list: the label does not hide the lead-in.
            units[-1] = replace(units[-1], block=block + 1, lead_in=True, trails=False)
        spans = split_sentences(joined)
        for n, (start, end) in enumerate(spans):
            sentence = joined[start:end].strip()
            announces = n == len(spans) - 1 and (sentence.endswith(":") or bool(_ANNOUNCES.search(sentence)))
            is_lead_in = before_block and announces
            units.append(Unit("sentence", sentence, _plain(sentence), len(units),
                              block=block + 1 if is_lead_in else None, lead_in=is_lead_in,
                              trails=at_end and announces))
        paragraph.clear()

    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("#"):  # a heading inside the passage: context, not an answer
            flush_paragraph(before_block=False)
            i += 1
            continue
        if line.lstrip().startswith("```"):
            flush_paragraph(before_block=True)
            block += 1
            i = _code(lines, i, block, units, offsets, text)
            continue
        if line.lstrip().startswith("|"):
            flush_paragraph(before_block=True)
            block += 1
            i = _table(lines, i, block, units)
            continue
        if _LIST_ITEM.match(line):
            flush_paragraph(before_block=True)
            block += 1
            i = _list(lines, i, block, units, offsets, text)
            continue
        if line.strip():
            if blank_before:  # a new paragraph: the previous one introduced no block
                flush_paragraph(before_block=False)
            paragraph.append(line)
            blank_before = False
        else:
            # Kept open across blank lines: "…before you wipe it:" + blank line + a list is a lead-in.
            blank_before = bool(paragraph)
        i += 1
    flush_paragraph(before_block=False, at_end=True)
    return _labelled(_definitions(units, block))


_LABEL = re.compile(r"^\*\*([^*\n]{2,60}?):?\*\*:?$")
# Admonitions and lists of links: bold lines that name no paragraph.
_NOT_A_NAME = re.compile(r"^(?:note|important|tip|warning|caution|topics|example|examples)\b", re.IGNORECASE)


def _labelled(units: list[Unit]) -> list[Unit]:
    """A paragraph's first sentence under a bold line of its own names that line as its label."""
    out = list(units)
    for i, unit in enumerate(out[:-1]):
        name = _LABEL.match(unit.quote.strip())
        after = out[i + 1]
        if (name and unit.kind == after.kind == "sentence" and after.position == unit.position + 1
                and not _NOT_A_NAME.match(name.group(1))):
            out[i + 1] = replace(after, label=_plain(name.group(1)))
    return out


# At most this many statements after a colon are what it introduces ("…one of the following states:" +
# one paragraph per state).
MAX_DEFINITIONS = 6


def _definitions(units: list[Unit], last_block: int) -> list[Unit]:
    """A sentence ending in a colon followed by plain statements introduces them: they are its block, as
    a list's items are (a Markdown definition list is a term and its description per paragraph)."""
    out = list(units)
    for i, unit in enumerate(out):
        if unit.kind != "sentence" or unit.lead_in or unit.block is not None or not unit.quote.rstrip().endswith(":"):
            continue
        members = []
        for follower in out[i + 1:i + 1 + MAX_DEFINITIONS]:
            if follower.kind != "sentence" or follower.block is not None or follower.quote.rstrip().endswith(":"):
                break
            members.append(follower.position)
        if not members:
            continue
        last_block += 1
        out[i] = replace(unit, block=last_block, lead_in=True, trails=False)
        for position in members:
            out[position] = replace(out[position], block=last_block)
    return out


def _announces(unit: Unit) -> bool:
    return unit.kind == "sentence" and (unit.quote.rstrip().endswith(":") or bool(_ANNOUNCES.search(unit.quote)))


def _is_label(text: str) -> bool:
    """A short line that only names what follows ("Topics", "**A**")."""
    return "\n" not in text.strip() and len(_WORD.findall(text)) <= 2 and not text.rstrip().endswith((".", ":"))


def _code(lines: list[str], i: int, block: int, units: list[Unit], offsets: list[int], text: str) -> int:
    """A fenced code block, one unit from fence to fence (a passage may end inside it)."""
    start = offsets[i] + len(lines[i]) - len(lines[i].lstrip())
    end = i + 1
    while end < len(lines) and not lines[end].lstrip().startswith("```"):
        end += 1
    last = min(end, len(lines) - 1)
    quote = text[start:offsets[last] + len(lines[last])].strip()
    body = "\n".join(lines[i + 1:end]).strip()
    units.append(Unit("code", quote, " ".join(body.split()), len(units), block=block))
    return end + 1


def _table(lines: list[str], i: int, block: int, units: list[Unit]) -> int:
    rows = []
    while i < len(lines) and lines[i].lstrip().startswith("|"):
        rows.append(lines[i].strip())
        i += 1
    header: list[str] = []
    if len(rows) >= 2 and _TABLE_SEPARATOR.match(rows[1]):
        header = _cells(rows[0])
        rows = rows[2:]
    for row in rows:
        if _TABLE_SEPARATOR.match(row):
            continue
        cells = _cells(row)
        if not any(cells):
            continue
        if header and len(header) == len(cells):
            parts = [f"{h}: {c}" if h else c for h, c in zip(header, cells, strict=True) if c]
        else:
            parts = [c for c in cells if c]
        units.append(Unit("row", row, _plain("; ".join(parts)), len(units), block=block))
    return i


def _list(lines: list[str], i: int, block: int, units: list[Unit], offsets: list[int], text: str) -> int:
    first = _LIST_ITEM.match(lines[i])
    assert first is not None
    indent = len(first.group(1))
    ordered = first.group(2) is not None
    span: list[int] = []  # [start of the item's text, end of its last line]

    def flush() -> None:
        if span:
            quote = text[span[0]:span[1]].strip()
            units.append(Unit("item", quote, _plain(_CHECKBOX.sub("", quote)), len(units), block=block,
                              ordered=ordered))
            span.clear()

    while i < len(lines):
        line = lines[i]
        match = _LIST_ITEM.match(line)
        if match and len(match.group(1)) <= indent:
            flush()
            span[:] = [offsets[i] + match.start(3), offsets[i] + len(line)]
        elif span and line.strip() and (line.startswith((" ", "\t")) or match):
            span[1] = offsets[i] + len(line)  # a continuation or a nested item: part of this one
        else:
            break
        i += 1
    flush()
    return i


def _cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def _plain(text: str) -> str:
    return " ".join(_MARKUP.sub("", unescape(text)).split())


def unescape(text: str) -> str:
    """The text without Markdown's backslash escapes (the passage's emphasis and code marks stay)."""
    return _ESCAPE.sub(r"\1", text)
