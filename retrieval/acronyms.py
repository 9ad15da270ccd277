"""The knowledge base's own acronyms, so a question that uses one is embedded with what it stands for.

A small sentence embedder knows little about a company's or a product's abbreviations: "How do I enroll in
MFA?" sits at 0.50 from the demo KB's MFA article, "How do I enroll in multi-factor authentication?" at 0.62
(and the passage holding the enrolment steps rises further). The articles say what their acronyms mean, the
way writers introduce them: "Multi-factor authentication (MFA)", "Amazon Machine Images (AMI)". This module
reads those definitions from the indexed articles every member may read (a restricted article's wording
never shapes anyone's search) and, before a question is embedded, adds the long form after an acronym the
question uses and does not spell out: "How do I enroll in MFA (multi-factor authentication)?". Only the
dense branch sees it; the lexical branch keeps the question as asked, and the answer quotes the passages.

A definition counts only when the words before the parenthesis spell the acronym by their initials (small
words such as "and" or "of" may be skipped, a hyphenated word may give one letter per part): "Employee
assistance programme (EAP)" does, "see the portal (PDF)" does not. An acronym defined differently in
several places takes its most frequent long form. Two cases are left as asked: an acronym that is part
of a name ("SQL Server", "AWS Lambda"), and one used in most articles (the KB's own name: "AWS" in the AWS
docs), which tells no passage from another.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from sqlalchemy import text

from retrieval.db import Database, translate_errors
from retrieval.terms import STOPWORDS

log = logging.getLogger(__name__)

READABLE = ["public", "everyone"]  # audience tokens every member holds (retrieval/neighbour_density.py)
# "(MFA)", and Markdown-escaped "\(IAM\)" as the AWS docs write it: 2-8 letters, at least two capitals.
_DEFINED = re.compile(r"\\?\(([A-Z][A-Za-z]{1,7})\\?\)")
_WORD = re.compile(r"[^\W\d_][\w'-]*")
# An acronym followed by a capitalised word is part of a name ("SQL Server", "AWS Lambda"): spelling it
# out there would break the name the passages use ("SQL (structured query language) Server").
_NAME_GOES_ON = re.compile(r"[ \t]+[A-Z]")
# An acronym in more than this share of the articles is the KB's own name ("AWS" in the AWS docs): it tells
# no passage from another, so spelling it out only dilutes the question.
MAX_ARTICLE_SHARE = 0.5
_CAPITALISED = re.compile(r"\b[A-Z][A-Za-z]{1,7}\b")
_SKIPPABLE = frozenset({"a", "an", "and", "for", "in", "of", "on", "or", "the", "to", "with"})
_MAX_WORDS = 8  # words before the parenthesis a long form may span
_BEFORE = 120  # characters before the parenthesis read for its long form, on the same line only
_SQL = text("SELECT body FROM articles WHERE audience && CAST(:readable AS text[])")
# What a sync changes among those articles (an upsert sets indexed_at, a removal lowers the count): the
# bodies are read again only when it moved, not every REFRESH_S on an index nobody synced.
_CHANGED_SQL = text("SELECT count(*), max(indexed_at) FROM articles WHERE audience && CAST(:readable AS text[])")
REFRESH_S = 3600.0  # a sync may add definitions: look again at most this often (in the background)


def long_form(before: str, acronym: str) -> str | None:
    """The words at the end of `before` that spell `acronym` by their initials, or None."""
    words = _WORD.findall(before)[-_MAX_WORDS:]
    letters = acronym.lower()
    if sum(c.isupper() for c in acronym) < 2:
        return None
    for start in range(len(words) - 1, -1, -1):
        if words[start].lower() in _SKIPPABLE:
            continue
        if _spells(words[start:], letters):
            return " ".join(words[start:]).lower()
    return None


def _spells(words: list[str], letters: str) -> bool:
    """Whether the words' initials give exactly `letters` (small words optional, hyphen parts allowed)."""
    if not words:
        return not letters
    word, rest = words[0], words[1:]
    if word.lower() in _SKIPPABLE and _spells(rest, letters):
        return True
    if not letters:
        return False
    parts = [p for p in word.split("-") if p]
    if len(parts) > 1:
        initials = "".join(p[0].lower() for p in parts)
        if letters.startswith(initials) and _spells(rest, letters[len(initials):]):
            return True
    return word[0].lower() == letters[0] and _spells(rest, letters[1:])


def definitions(bodies: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(the words before it on its line, acronym) for each parenthesised acronym of the articles."""
    for body in bodies:
        for match in _DEFINED.finditer(body):
            before = body[max(0, match.start() - _BEFORE):match.start()].rsplit("\n", 1)[-1]
            yield before, match.group(1)


def _in_most_articles(bodies: Sequence[str], acronyms: set[str]) -> set[str]:
    """The acronyms used in more than MAX_ARTICLE_SHARE of the articles."""
    counts: Counter[str] = Counter()
    for body in bodies:
        counts.update(acronyms.intersection(_CAPITALISED.findall(body)))
    return {a for a, n in counts.items() if n > MAX_ARTICLE_SHARE * len(bodies)}


def glossary(definitions: Iterable[tuple[str, str]]) -> dict[str, str]:
    """acronym -> long form, from (words before the parenthesis, acronym) pairs."""
    seen: dict[str, Counter[str]] = defaultdict(Counter)
    for before, acronym in definitions:
        if (long := long_form(before, acronym)) is not None:
            seen[acronym][long] += 1
    return {acronym: forms.most_common(1)[0][0] for acronym, forms in seen.items()}


def expand(question: str, terms: Mapping[str, str]) -> str:
    """The question with each known acronym followed by its long form, unless the question spells it out.

    An acronym matches as written ("MFA") or, from three letters, in lower case ("mfa", as people type in
    Slack) when that is not an ordinary word."""
    if not terms:
        return question
    asked = question.lower()
    out, last = [], 0
    for match in _WORD.finditer(question):
        token = match.group()
        acronym = token if token in terms else token.upper() if _lower_acronym(token, terms) else None
        if acronym is None or terms[acronym] in asked or _NAME_GOES_ON.match(question, match.end()):
            continue
        out += [question[last:match.end()], f" ({terms[acronym]})"]
        last = match.end()
    return "".join(out) + question[last:] if out else question


def _lower_acronym(token: str, terms: Mapping[str, str]) -> bool:
    return len(token) >= 3 and token.islower() and token not in STOPWORDS and token.upper() in terms


class AcronymReader:
    """`expand(question)`: the question with the index's acronyms spelled out; the glossary is read from
    the database on first use, then again in the background every REFRESH_S (a sync may add articles)."""

    def __init__(self, db: Database, *, refresh_s: float = REFRESH_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.refresh_s = refresh_s
        self.clock = clock
        self._terms: dict[str, str] | None = None
        self._read_at = 0.0
        self._lock = threading.Lock()
        self._refreshing = False
        self._read_version: tuple[object, ...] | None = None

    def read(self) -> dict[str, str]:
        started = time.perf_counter()
        with translate_errors("Reading the knowledge base's acronyms"), self.db.engine.connect() as conn:
            self._read_version = self._version(conn)
            bodies = conn.execute(_SQL, {"readable": READABLE}).scalars().all()
        terms = glossary(definitions(bodies))
        frequent = _in_most_articles(bodies, set(terms))
        terms = {acronym: long for acronym, long in terms.items() if acronym not in frequent}
        log.debug("%d acronyms defined in the index, read in %.0f ms", len(terms),
                  (time.perf_counter() - started) * 1000)
        return terms

    def terms(self) -> dict[str, str]:
        if self._terms is None:
            with self._lock:
                if self._terms is None:
                    self._terms, self._read_at = self.read(), self.clock()
        elif self.clock() - self._read_at > self.refresh_s and not self._refreshing:
            self._refreshing = True
            threading.Thread(target=self._refresh, name="acronyms", daemon=True).start()
        return self._terms

    @staticmethod
    def _version(conn) -> tuple[object, ...]:  # type: ignore[no-untyped-def]
        return tuple(conn.execute(_CHANGED_SQL, {"readable": READABLE}).one())

    def _refresh(self) -> None:
        try:
            with translate_errors("Reading the knowledge base's acronyms"), self.db.engine.connect() as conn:
                unchanged = self._version(conn) == self._read_version
            if not unchanged:
                self._terms = self.read()
        except Exception as exc:  # keep the glossary it has: a question must not fail on this
            log.warning("the knowledge base's acronyms could not be read again: %s", exc)
        finally:
            self._read_at, self._refreshing = self.clock(), False

    def expand(self, question: str) -> str:
        return expand(question, self.terms())
