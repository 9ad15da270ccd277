"""The default synthesizer: the passages' own words that answer the question, each with its [n] marker.

It picks the units of the retrieved passages (retrieval/answer_units.py) best supported by the question
(retrieval/support.py: sentence embeddings plus the question's words), keeps a procedure, a table row or a
list with what introduces it, and cites the passage each came from. It needs no LLM and cannot invent
anything; the pipeline (retrieval/answer.py) decides beforehand whether the passages are good enough.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from retrieval.answer import AskContext, FollowingReader
from retrieval.answer_units import Unit, passage_units, unescape
from retrieval.embeddings import Embedder
from retrieval.neighbours import Following
from retrieval.support import ScoredUnit, Support, is_procedure_question, score_support
from retrieval.terms import stems
from retrieval.types import Answer, Citation, SearchHit

# How far below the best unit a procedure may be and still anchor the answer to a "how do I" question:
# further when it sits in the best unit's own article (the article holds the steps the asker wants; the
# best unit there is often context such as "when you need it" that merely shares the question's words).
PROCEDURE_SLACK = 0.12
PROCEDURE_SLACK_SAME_ARTICLE = 0.3
# Another article's sentence joins the answer only when it is nearly as well supported as the best and
# holds at least this share of the anchor's question words (weighted): a second article is cited when its
# unit names what was asked as fully as the answer does, not for a nearby topic (2 of 11 such citations
# on aws-docs-qa were from a gold article at 0.5).
OTHER_ARTICLE_MARGIN = 0.03
OTHER_ARTICLE_OVERLAP = 1.0
# A unit of another passage joins only when it holds at least this share of the anchor's question words
# (weighted): "how many days can I carry over" is not also answered with how many days you get.
OTHER_PASSAGE_OVERLAP = 0.5
# Added to the support's own weight of the question's words (retrieval/support.py) when choosing units.
ANSWER_OVERLAP_WEIGHT = 0.1
# What the question asks for, read from its words, added to the units of that shape when choosing them: a
# yes/no question ("Can I…?", "Does…?") to a unit that asserts or denies something ("You can…", "…is not
# supported", "only…"), a question about a value ("maximum", "how many", "default") to a unit stating one (a
# digit), beyond the support's own small bonus. Neither moved which answers hold the gold on aws-docs-qa or
# the demo, but both keep a second, vaguer unit out: citation precision 0.702 -> 0.728 on aws (BENCHMARKS.md,
# Session 9: answers).
YES_NO_WEIGHT = 0.1
VALUE_WEIGHT = 0.15
_YES_NO = re.compile(r"^\s*(?:can|could|does|do|is|are|will|should)\s+(?:i|we|you)?\b", re.IGNORECASE)
_ASSERTS = re.compile(r"\b(?:can(?:not|'t)?|supports?|supported|isn't|doesn't|don't|not|only|must|allows?)\b",
                      re.IGNORECASE)
_ASKS_VALUE = re.compile(r"\b(?:maximum|minimum|max|min|default|limits?|quotas?|how (?:much|many|long|big|often)|"
                         r"size|number of|rates?|costs?|price|fees?|deadline)\b", re.IGNORECASE)
_DIGIT = re.compile(r"\d")
# Added per share of the question's word pairs (adjacent content words, weighted by rarity) that a unit
# holds as adjacent words too: "maximum number of datasets" is the row "Maximum number of datasets", not
# the row "Maximum number of forecasts … large datasets" holding the same words apart.
PHRASE_WEIGHT = 0.15


class ExtractiveSynthesizer:
    """The passages' own words that answer the question, each piece followed by its [n] marker.

    The best-supported unit (retrieval/support.py) anchors the answer: a step of a procedure brings the
    whole procedure, in order, with its lead-in; a table row is quoted with its column names; a list item
    or a command comes with the sentence that introduces it; a lead-in brings what it introduces (its
    list, table, code or definitions; when it ends its passage, the list that opens the next passage or
    the names of the sections right below, read through `following` for the same readers). Up to
    `max_pieces - 1` further units are added only when they are nearly as well supported (`margin`),
    above `min_unit_similarity`, and, from another passage, share enough of what the question asks: a
    short answer beats one padded with neighbouring facts. Only passages the answer quotes are cited.
    """

    name = "extractive"

    def __init__(self, embedder: Embedder, *, max_pieces: int = 3, passages: int = 8,
                 min_unit_similarity: float = 0.35, margin: float = 0.1, max_steps: int = 10,
                 yes_no_weight: float = YES_NO_WEIGHT, value_weight: float = VALUE_WEIGHT,
                 rescore: Callable[[str, Support], Support] | None = None) -> None:
        self.embedder = embedder
        self.yes_no_weight, self.value_weight = yes_no_weight, value_weight
        self.rescore = rescore  # a further unit scorer to measure (bench/unit_scorer.py)
        self.max_pieces = max_pieces
        self.passages = passages
        self.min_unit_similarity = min_unit_similarity
        self.margin = margin
        self.max_steps = max_steps

    def stream(self, question: str, passages: Sequence[SearchHit], *, context: AskContext,
               question_vector: np.ndarray | None) -> Iterator[str | Answer]:
        answer = self.compose(question, passages, question_vector, context.support,
                              following=context.following)
        yield answer.text
        yield answer

    def compose(self, question: str, passages: Sequence[SearchHit], question_vector: np.ndarray | None,
                support: Support | None = None, *, following: FollowingReader | None = None) -> Answer:
        passages = list(passages[: self.passages])
        if support is None:
            qvec = question_vector if question_vector is not None else self.embedder.embed_query(question)
            support = score_support(question, qvec, passages, self.embedder)
        support = self.answer_scores(question, support.within(passages))
        procedure = is_procedure_question(question)
        support, continued = self._continue_trailing(support, passages, following)
        anchor = support.best
        if anchor is None or anchor.similarity < self.min_unit_similarity:
            return Answer(question, "", [], "abstained", self.name, nearest=list(passages))
        best_score = anchor.score
        if procedure:
            # "How do I…" wants the steps: a procedure nearly as well supported as the best unit wins.
            def slack(u: ScoredUnit) -> float:
                same = u.hit.article_id == anchor.hit.article_id
                return PROCEDURE_SLACK_SAME_ARTICLE if same else PROCEDURE_SLACK

            steps = [u for u in support.units if u.unit.ordered and u.similarity >= self.min_unit_similarity
                     and u.score >= anchor.score - slack(u)]
            anchor = max(steps, key=lambda u: u.score, default=anchor)
            if anchor.unit.ordered:
                # One instruction better supported than every step of the procedure answers instead: "how
                # do I get a card" is "Request a card in Ledgerly…", not the lost-card steps next to it.
                single = [u for u in support.units if u.unit.block is None and not u.unit.fragment
                          and u.similarity >= self.min_unit_similarity and u.score > anchor.score
                          and _says_what_to_do([u])]
                anchor = max(single, key=lambda u: u.score, default=anchor)
        # Heading-like fragments and pointers never answer; a lead-in ending in ":" brings its list.
        bar = max(self.min_unit_similarity, best_score - self.margin)
        pieces = [self._expand(anchor, support.units, continued)]
        taken = {id(u) for u in pieces[0]}
        for candidate in sorted(support.units, key=lambda u: -u.score):
            if len(pieces) >= self.max_pieces or candidate.score < bar:
                break
            if id(candidate) in taken or candidate.unit.fragment or candidate.similarity < self.min_unit_similarity:
                continue
            if candidate.unit.ordered and candidate.unit.block != anchor.unit.block:
                continue  # one step of another procedure means nothing alone
            if candidate.hit.article_id != anchor.hit.article_id and (
                    candidate.score < best_score - OTHER_ARTICLE_MARGIN
                    or candidate.overlap < OTHER_ARTICLE_OVERLAP * anchor.overlap):
                continue  # another article is cited only when it is about as relevant and as specific
            if any(_near_duplicate(candidate.unit.rendered, u.unit.rendered) for p in pieces for u in p):
                continue
            if (candidate.hit.chunk_id != anchor.hit.chunk_id
                    and candidate.overlap < OTHER_PASSAGE_OVERLAP * anchor.overlap):
                continue  # another passage's unit that shares little of what the question asks is padding
            piece = self._expand(candidate, support.units, continued)
            shared = [u for u in piece if id(u) in taken]
            if shared and all(u.unit.lead_in for u in shared):
                # Another item of a list already quoted with its lead-in: it joins that list.
                host = next(p for p in pieces if any(u is shared[0] for u in p))
                host.extend(u for u in piece if id(u) not in taken)
                host.sort(key=lambda u: (u.rank, u.unit.position))
                taken.update(id(u) for u in piece)
                continue
            if shared:
                continue
            if anchor.unit.ordered and any(u.unit.ordered for u in piece):
                continue  # steps answer with one procedure: "how to enrol" is not also "if you lose it"
            if (procedure and anchor.unit.ordered and candidate.hit.heading_path != anchor.hit.heading_path
                    and not _says_what_to_do(piece)):
                # The steps answer "how do I"; another section may add something to do (a command, another
                # way), not context that shares the question's words: "Working from home, a café…" from
                # "When you need the VPN", "Your laptop is missing an OS update" from a troubleshooting entry.
                continue
            pieces.append(piece)
            taken.update(id(u) for u in piece)
        # The anchor first (the answer), then the rest in reading order.
        pieces[1:] = sorted(pieces[1:], key=lambda p: (p[0].rank, p[0].unit.position))
        numbers: dict[int, int] = {}
        quotes: dict[int, list[str]] = {}
        by_rank: dict[int, SearchHit] = {}
        parts: list[str] = []
        for piece in pieces:
            for u in piece:
                by_rank[u.rank] = u.hit
                numbers.setdefault(u.rank, len(numbers) + 1)
                if u.unit.kind != "heading":  # a section's name is not text of the passage
                    quotes.setdefault(u.rank, []).append(u.unit.quote)
            parts.append(_render(piece, list(dict.fromkeys(numbers[u.rank] for u in piece))))
        citations = [
            Citation(number, by_rank[rank], " … ".join(quotes.get(rank, [])))
            for rank, number in sorted(numbers.items(), key=lambda item: item[1])
        ]
        text = ""
        for part in parts:
            text += part if not text else ("\n" if "\n" in part or "\n" in text[-200:] else " ") + part
        return Answer(question, text, citations, "answered", self.name)

    def answer_scores(self, question: str, support: Support) -> Support:
        """The support's unit scores as the answer weighs them (the gate reads the support's own)."""
        if not is_procedure_question(question):
            # A factual answer weighs the question's own words more than the gate does: of two sentences on
            # the topic, the one naming what was asked ("internetwork", "dataset groups") is the answer. Not
            # for "how do I": steps rarely repeat the question's words, their heading ("Enrolling") does.
            support = Support([dataclasses.replace(u, score=u.score + ANSWER_OVERLAP_WEIGHT * u.overlap)
                               for u in support.units], support.coverage)
        support = _with_answer_type(question, _with_phrases(question, support), self.yes_no_weight, self.value_weight)
        return self.rescore(question, support) if self.rescore else support

    def _continue_trailing(self, support: Support, passages: Sequence[SearchHit],
                           following: FollowingReader | None) -> tuple[Support, dict[int, list[ScoredUnit]]]:
        """Lead-ins that end their passage, joined to what they announce: the start of the next passage, or
        the sections right below theirs ("six built-in algorithms" and a section per algorithm).

        Only the few that could answer (near the best unit's score) are looked up: a next passage already
        among the candidates is used as it is, anything else is read through `following` (None: nothing)."""
        trailing = [u for u in support.units if u.unit.trails and u.similarity >= self.min_unit_similarity]
        if not trailing:
            return support, {}
        best = max(u.score for u in support.units)
        bar = best - self.margin

        def reach(u: ScoredUnit) -> float:
            """Its own score, or that of the sentence it goes on from ("…six algorithms. These range…")."""
            before = {v.unit.position: v for v in support.units if v.rank == u.rank}
            score, at = u.score, u
            while _CONTINUES.match(at.unit.rendered) and (prev := before.get(at.unit.position - 1)) is not None:
                score, at = max(score, prev.score), prev
            return score

        resolved: dict[int, ScoredUnit] = {}
        continued: dict[int, list[ScoredUnit]] = {}
        extra = len(passages)
        reachable = [(reach(u), u) for u in trailing]
        for _, u in sorted((r for r in reachable if r[0] >= bar), key=lambda r: -r[0])[:MAX_CONTINUATIONS]:
            candidate = _next_among(u.hit, passages)
            if candidate is not None:
                rank = passages.index(candidate)
                units = [v for v in support.units if v.rank == rank]
                opening = _opening(u.unit, sorted(units, key=lambda v: v.unit.position), self.max_steps)
            else:
                after = following(u.hit) if following is not None else Following()
                if after.passage is not None:
                    rank, extra = extra, extra + 1
                    opening = _opening(u.unit, [ScoredUnit(after.passage, rank, unit, 0.0, 0.0, 0.0)
                                                for unit in passage_units(after.passage.text)], self.max_steps)
                else:  # the sections it announces: named as a list, cited with the lead-in's passage
                    opening = [ScoredUnit(u.hit, u.rank, Unit("heading", heading, _heading_text(heading),
                                                              u.unit.position + n + 1), 0.0, 0.0, 0.0)
                               for n, heading in enumerate(after.subsections[: self.max_steps])]
            if opening:
                lead_in = dataclasses.replace(u, unit=dataclasses.replace(u.unit, lead_in=True))
                resolved[id(u)] = lead_in
                continued[id(lead_in)] = opening
        if not resolved:
            return support, {}
        return Support([resolved.get(id(u), u) for u in support.units], support.coverage), continued

    def _expand(self, unit: ScoredUnit, units: Sequence[ScoredUnit],
                continued: dict[int, list[ScoredUnit]] | None = None) -> list[ScoredUnit]:
        """What a unit brings along: its procedure and lead-in, or the list its lead-in introduces."""
        if continued and id(unit) in continued:
            return [unit, *continued[id(unit)]]
        same_passage = [u for u in units if u.rank == unit.rank]
        block = unit.unit.block
        if block is None:
            following = _continuation(unit, same_passage)
            if following and following[-1].unit.lead_in:  # "…the following names. You can't use these:"
                return [unit, *self._expand(following[-1], units, continued)]
            return [unit, *following]
        members = [u for u in same_passage if u.unit.block == block and not u.unit.lead_in]
        lead_in = [u for u in same_passage if u.unit.block == block and u.unit.lead_in]
        if unit.unit.kind == "code" or (unit.unit.kind == "item" and not unit.unit.ordered):
            # A command or a list item comes with the sentence that says what it is ("The following are
            # some limitations for magnetic storage:" + "Doesn't support elastic volumes").
            return [*lead_in, unit]
        if unit.unit.lead_in or (unit.unit.ordered and members):
            if len(members) > self.max_steps:  # a long list: the items around the anchor or the asked one
                named = max(members, key=lambda u: u.overlap)
                at = members.index(unit) if unit in members else members.index(named) if named.overlap else 0
                start = max(0, min(at - self.max_steps // 2, len(members) - self.max_steps))
                members = members[start:start + self.max_steps]
            return lead_in + members
        return [unit]


def _with_phrases(question: str, support: Support) -> Support:
    """The support with PHRASE_WEIGHT x the weighted share of the question's word pairs each unit holds."""
    wanted = _pairs(stems(question))
    if not wanted or not PHRASE_WEIGHT:
        return support
    held = [_pairs(stems(u.unit.rendered)) & wanted for u in support.units]
    n = len(held)
    weights = {pair: math.log((n + 1) / (sum(pair in h for h in held) + 0.5)) for pair in wanted}
    total = sum(weights.values()) or 1.0
    return Support([dataclasses.replace(u, score=u.score + PHRASE_WEIGHT * sum(weights[p] for p in h) / total)
                    if h else u for u, h in zip(support.units, held, strict=True)], support.coverage)


def _with_answer_type(question: str, support: Support, yes_no_weight: float, value_weight: float) -> Support:
    """The support plus the bonus of the units shaped as the question's answer (YES_NO_WEIGHT, VALUE_WEIGHT)."""
    yes_no = bool(yes_no_weight and _YES_NO.match(question))
    value = bool(value_weight and _ASKS_VALUE.search(question))
    if not yes_no and not value:
        return support

    def bonus(u: ScoredUnit) -> float:
        return ((yes_no_weight if yes_no and _ASSERTS.search(u.unit.rendered) else 0.0)
                + (value_weight if value and _DIGIT.search(u.unit.rendered) else 0.0))

    return Support([dataclasses.replace(u, score=u.score + b) if (b := bonus(u)) else u for u in support.units],
                   support.coverage)


def _pairs(words: Sequence[str]) -> set[tuple[str, str]]:
    return set(itertools.pairwise(words))


_WORDS = re.compile(r"\w+")
# A sentence opening with one of these goes on with the one before it ("…provides six built-in
# algorithms. These range from ARIMA to CNN-QR and DeepAR+."): quoting the first alone drops the answer.
_CONTINUES = re.compile(r"^(?:these|this|they|those|it|its|such|that|you can't use these)\b", re.IGNORECASE)


def _continuation(unit: ScoredUnit, same_passage: Sequence[ScoredUnit]) -> list[ScoredUnit]:
    """The sentences right after `unit` that go on with it (at most two)."""
    following = sorted((u for u in same_passage if u.unit.position > unit.unit.position),
                       key=lambda u: u.unit.position)
    out: list[ScoredUnit] = []
    for u in following[:2]:
        if u.unit.kind != "sentence" or u.unit.position != unit.unit.position + len(out) + 1:
            break
        if not _CONTINUES.match(u.unit.rendered):
            break
        out.append(u)
    return out


# At most this many passages are read to finish a lead-in (each is one indexed lookup).
MAX_CONTINUATIONS = 2


def _next_among(hit: SearchHit, passages: Sequence[SearchHit]) -> SearchHit | None:
    """The candidate that directly follows `hit` in its article and section, if it was retrieved too."""
    after = [p for p in passages if p.article_id == hit.article_id and p.heading_path == hit.heading_path
             and p.char_start >= hit.char_end]
    return min(after, key=lambda p: p.char_start, default=None)


def _opening(lead_in: Unit, units: Sequence[ScoredUnit], max_steps: int) -> list[ScoredUnit]:
    """What a trailing lead-in announces at the start of the next passage: the list or table it opens
    with; after a colon, else its first sentence when that goes on with the lead-in ("These are…")."""
    if not units:
        return []
    first = units[0]
    if first.unit.block is not None and not first.unit.lead_in:
        block = [u for u in units if u.unit.block == first.unit.block]
        return block[:max_steps]
    if first.unit.kind == "sentence" and not first.unit.fragment and (
            lead_in.quote.rstrip().endswith(":") or _CONTINUES.match(first.unit.rendered)):
        return [first]
    return []


def _heading_text(heading: str) -> str:
    """A section heading as a list item reads it: its link text kept as a link, escapes dropped."""
    return " ".join(unescape(heading).split())


# Words that open a statement, not an instruction ("Your laptop is…", "If a site…", "Others can…").
_STATEMENT_OPENER_LIST = """
a an the this that these those your our my their its his her it you we they i
he she there here if when whenever while because as after before once since unless until although though for in
on at by with without from of into onto during within and or but so nor each every all some any no not most
many much more few other others another one both either neither is are was were be been being can could should
would will may might must shall does did has have had what which who whom whose how why where only also even
just please
"""
_STATEMENT_OPENERS = frozenset(_STATEMENT_OPENER_LIST.split())
# After the first word, these say it was a subject ("Setup is…", "Northwind will…"), not a verb.
_VERBS_AFTER_A_SUBJECT = frozenset(("is", "are", "was", "were", "be", "can", "could", "should", "would", "will", "may",
                                    "might", "must", "shall", "does", "did", "has", "have", "had"))
_ACTION_OPENERS = frozenset(("do", "don", "never", "always"))


def _says_what_to_do(piece: Sequence[ScoredUnit]) -> bool:
    """A command, or a sentence or item in the imperative ("Request a card in Ledgerly…", "Don't…"): a
    crude test of the first words, enough to tell an instruction from a condition or an explanation."""
    for u in piece:
        if u.unit.kind == "code":
            return True
        if u.unit.kind not in ("sentence", "item") or u.unit.lead_in:
            continue
        words = [w.lower() for w in _WORDS.findall(unescape(u.unit.rendered).replace("**", ""))]
        if not words or not u.unit.rendered.lstrip("*_`")[:1].isupper():
            continue
        first = words[0]
        if first in _ACTION_OPENERS:
            return True
        inflected = first.endswith(("ing", "ed")) or (first.endswith("s") and not first.endswith("ss"))
        if (first not in _STATEMENT_OPENERS and not inflected
                and (len(words) < 2 or words[1] not in _VERBS_AFTER_A_SUBJECT)):
            return True
    return False


def _near_duplicate(a: str, b: str) -> bool:
    wa, wb = set(_WORDS.findall(a.lower())), set(_WORDS.findall(b.lower()))
    return bool(wa and wb) and len(wa & wb) / min(len(wa), len(wb)) > 0.8


def _render(piece: Sequence[ScoredUnit], numbers: Sequence[int]) -> str:
    """A piece as the answer says it: a list as a Markdown list (numbered when it was), else statements;
    then the markers of the passages it quotes (two when a lead-in's list opens the next passage)."""
    marker = " " + "".join(f"[{n}]" for n in numbers)
    items = [u for u in piece if u.unit.kind in ("item", "heading")]
    if len(items) < 2 and all(u.unit.kind == "sentence" for u in piece[1:]):  # a sentence and its continuation
        label = f"**{piece[0].unit.label}**: " if piece[0].unit.label else ""  # "**Manual Tracking**: …"
        return label + " ".join(_as_statement(_statement_text(u)) for u in piece) + marker
    lines = [_statement_text(u) for u in piece if u.unit.kind not in ("item", "heading")]
    for n, u in enumerate(items, 1):
        lines.append(f"{n}. {_statement_text(u)}" if u.unit.ordered else f"- {_statement_text(u)}")
    if piece[-1].unit.kind == "code":  # after a closing fence the marker needs a line of its own
        return "\n".join(lines) + "\n" + marker.strip()
    return "\n".join(lines) + marker


def _statement_text(unit: ScoredUnit) -> str:
    """Rows read with their column names; sentences and items keep the passage's Markdown."""
    if unit.unit.kind in ("row", "heading"):
        return unit.unit.rendered
    if unit.unit.kind == "code":
        return unit.unit.quote if unit.unit.quote.rstrip().endswith("```") else unit.unit.quote + "\n```"
    lines = [" ".join(line.split()) for line in unescape(unit.unit.quote).split("\n") if line.strip()]
    return "\n   ".join(lines)  # a nested list stays a list, indented under its step


def _as_statement(sentence: str) -> str:
    sentence = sentence.rstrip()
    return sentence if sentence.endswith((".", "!", "?", ":", "`", ")")) else sentence + "."
