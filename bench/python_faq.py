"""The python-faq retrieval set: Python's own FAQ and HOWTO pages as a help center, with our questions.

The corpus is not in this repository: it is read at run time from Debian's `python3-doc` package
(`apt-get install python3-doc`; the reStructuredText sources under /usr/share/doc/python3-doc/html/_sources).
Each FAQ question becomes one article (`faq/<page>/<slug of the question>`, its question as the title, its
answer as the text), as a help center files them; each HOWTO page is one longer article (`howto/<page>`)
with its sections as headings. That gives about 180 short question-shaped articles next to 20 long guides:
a different kind of KB from aws-docs-qa's technical manuals and the demo's company policies.

The questions and gold articles (bench/sets/python-faq/queries.jsonl, qrels.tsv) are ours: written the way
someone would ask in a chat, not the FAQ's own headings. A grade of 2 is the article that answers the
question; 1 is one that answers it in part.

    python -m bench.python_faq [--out DIR]   # writes DIR/corpus.jsonl and prints the article count

`available()` says whether the package is installed, so benchmarks and tests can skip cleanly without it.
"""

from __future__ import annotations

import argparse
import json
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path

SOURCES = Path("/usr/share/doc/python3-doc/html/_sources")
SET_DIR = Path(__file__).resolve().parent / "sets" / "python-faq"
QUERIES = SET_DIR / "queries.jsonl"
QRELS = SET_DIR / "qrels.tsv"

# reStructuredText section adornments, outermost first as the FAQ pages use them: the page title is
# over- and underlined with "=", a category underlined with "=", a question with "-".
_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+.])\1{3,}\s*$")
_ROLE = re.compile(r":[\w:+-]+:`([^`<]*?)(?:\s*<[^>]*>)?`")
_LINK = re.compile(r"`([^`<]+?)\s*<[^>]+>`_+")
_DIRECTIVE = re.compile(r"^\s*\.\. (?:[\w-]+::.*|_[^:]+:.*|\|.*|)$")
_OPTION = re.compile(r"^\s+:[\w-]+:.*$")


def available(sources: Path = SOURCES) -> bool:
    return (sources / "faq" / "programming.rst.txt").is_file() and (sources / "howto").is_dir()


def slug(heading: str) -> str:
    """A stable id for a question: lower case ASCII words joined by hyphens (like docutils' anchors)."""
    text = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def _clean(line: str) -> str:
    line = _LINK.sub(r"\1", line)
    line = _ROLE.sub(lambda m: m.group(1).lstrip("~!"), line)
    return line.replace("``", "`")


def _sections(path: Path) -> Iterator[tuple[str, str, list[str]]]:
    """(adornment, heading, body lines) in order; the adornment is its character, prefixed with "over"
    for an over- and underlined title. The first tuple is the text before any heading."""
    lines = path.read_text(encoding="utf-8").splitlines()
    mark, heading, body = "", "", []
    i = 0
    while i < len(lines):
        line = lines[i]
        over = bool(_UNDERLINE.match(line) and i + 2 < len(lines) and _UNDERLINE.match(lines[i + 2])
                    and lines[i + 1].strip())
        under = bool(i + 1 < len(lines) and _UNDERLINE.match(lines[i + 1]) and line.strip()
                     and not line.startswith(" ") and len(lines[i + 1].strip()) >= len(line.strip()) - 2)
        if over or under:
            yield mark, heading, body
            mark = ("over" if over else "") + (lines[i + 2] if over else lines[i + 1]).strip()[0]
            heading, body = _clean((lines[i + 1] if over else line).strip()), []
            i += 3 if over else 2
            continue
        if not _DIRECTIVE.match(line) and not _OPTION.match(line) and not line.startswith(":tocdepth:"):
            body.append(_clean(line))
        i += 1
    yield mark, heading, body


def _text(body: list[str]) -> str:
    return re.sub(r"\n{3,}", "\n\n", "\n".join(body)).strip()


def faq_articles(sources: Path = SOURCES) -> Iterator[dict[str, str]]:
    """One article per question: a heading underlined with "-" (pages and categories use "=")."""
    for path in sorted((sources / "faq").glob("*.rst.txt")):
        page = path.name.removesuffix(".rst.txt")
        if page == "index":
            continue
        question: dict[str, str] | None = None
        seen: set[str] = set()
        for mark, heading, body in _sections(path):
            if mark == "-" or "=" in mark:
                if question is not None:
                    yield question
                question = None
                if mark == "-":
                    # "...in C?" and "...in C++?" slug alike: the later one is numbered
                    key = next(f"{slug(heading)}{n or ''}" for n in range(len(seen) + 1)
                               if f"{slug(heading)}{n or ''}" not in seen)
                    seen.add(key)
                    question = {"_id": f"faq/{page}/{key}", "title": heading, "text": _text(body)}
            elif question is not None and mark:  # a sub-heading inside an answer
                question["text"] += f"\n\n### {heading}\n\n{_text(body)}"
        if question is not None:
            yield question


def howto_articles(sources: Path = SOURCES) -> Iterator[dict[str, str]]:
    """One article per HOWTO page, titled by its first heading, its sections as Markdown headings."""
    for path in sorted((sources / "howto").glob("*.rst.txt")):
        page = path.name.removesuffix(".rst.txt")
        if page == "index":
            continue
        title, marks, parts = "", [], []
        for mark, heading, body in _sections(path):
            if mark and not title:
                title = heading
            elif mark:
                if mark not in marks:
                    marks.append(mark)
                parts.append(f"{'#' * min(marks.index(mark) + 2, 6)} {heading}")
            parts.append(_text(body))
        yield {"_id": f"howto/{page}", "title": title or page, "text": "\n\n".join(p for p in parts if p.strip())}


def articles(sources: Path = SOURCES) -> list[dict[str, str]]:
    return [a for a in (*faq_articles(sources), *howto_articles(sources)) if a["text"]]


def write_corpus(out_dir: Path, sources: Path = SOURCES) -> Path:
    """The corpus as BEIR/kbbot JSON Lines (`_id`, `title`, `text`) in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    corpus = out_dir / "corpus.jsonl"
    with corpus.open("w", encoding="utf-8") as fh:
        for article in articles(sources):
            fh.write(json.dumps(article, ensure_ascii=False) + "\n")
    return corpus


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/python-faq"))
    args = parser.parse_args()
    if not available():
        raise SystemExit(f"{SOURCES} is missing: `apt-get install python3-doc` provides the corpus.")
    path = write_corpus(args.out)
    print(f"{path}: {sum(1 for _ in path.open(encoding='utf-8'))} articles")
