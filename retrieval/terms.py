"""Words as answers and questions are compared: lower-cased, Markdown emphasis and [n] markers removed,
a plural `s` dropped, identifiers (c5d.12xlarge, print@northwind.example) kept whole, stopwords aside."""

from __future__ import annotations

import re
from functools import lru_cache

import snowballstemmer

_MARKUP = re.compile(r"[*_`]|\[\d+\]")
_TOKEN = re.compile(r"[\w.+@%]*\w|\w")
_STOPWORD_LIST = """
a an the and or of to in on at for by with from as is are was were be been being it its this that these
those you your yours we our i me my he she they them their his her do does did can could should would
will shall may might must not no yes if then than so such into onto about over under up down out off
what which who whom whose when where why how there here all any each some more most other only own same
too very just also following
"""
STOPWORDS = frozenset(_STOPWORD_LIST.split())


def tokens(text: str) -> list[str]:
    """Lower-cased words with Markdown emphasis and [n] markers removed; a plural `s` is dropped so
    "AMIs" matches "AMI". Identifiers (c5d.12xlarge, print@northwind.example) stay one token."""
    return [_singular(w) for w in _words(text)]


def content_tokens(text: str) -> list[str]:
    # The stopword test reads the word as written: "does" and "this" must not become "doe" and "thi".
    return [t for w in _words(text) if w not in STOPWORDS and (t := _singular(w)) not in STOPWORDS
            and (len(t) > 1 or t.isdigit())]


def _words(text: str) -> list[str]:
    return _TOKEN.findall(_MARKUP.sub(" ", text).casefold().replace("\u2019", "'"))


def _singular(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


_STEMMER = snowballstemmer.stemmer("english")


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    return str(_STEMMER.stemWord(word))


def stems(text: str) -> list[str]:
    """Content words reduced to their English stems ("enroll", "enrolling", "enrollment" -> "enrol")."""
    return [_stem(t) for t in content_tokens(text)]
