"""PII scrubbing recall, precision and kept text: kbbot's sanitizer next to Microsoft Presidio.

    nice python -m bench.pii_eval [--per-locale 40] [--spacy-model PATH] [--out bench/results/pii_eval.json]

Two labelled sets:
- synthetic conversations from bench/pii_synthetic.py, in the tuning locales and, reported apart, in
  held-out locales the detectors were never tuned on and whose names are not in the gazetteer;
- hand-labelled turns of the real support threads in ../shared/data/support-threads. The labels
  (bench/pii_labels/support_threads.json) hold only thread ids, turn indexes, character offsets and types:
  the text is read from ../shared at run time, and that part is skipped when the file is absent.

Measures, per type and per locale:
- removed: share of labelled values whose letters and digits are >= 90% covered by redactions of any
  type (what leaves the company is what counts, not the label's name);
- precision: share of redactions that overlap a labelled value;
- kept: share of the whitespace tokens outside labelled values that no redaction touches.

Detectors: ``kbbot`` (finetune.pii.sanitizer, the product), ``presidio`` (presidio-analyzer's predefined
pattern recognizers with its no-op NLP engine: nothing is downloaded) and, with --spacy-model, ``presidio+ner``
(the same plus spaCy NER for PERSON and LOCATION from a model folder you pass; none is bundled, see
BENCHMARKS.md for why). Timing alternates the detectors round by round on the same conversations.
"""

from __future__ import annotations

import importlib.util
import json
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import click

REPO = Path(__file__).resolve().parents[1]

from bench.pii_synthetic import HELDOUT_LOCALES, TUNING_LOCALES, generate  # noqa: E402
from finetune.pii.sanitizer import Sanitizer  # noqa: E402
from finetune.readers.twitter_threads import read_twitter_threads  # noqa: E402

THREADS = REPO.parent / "shared" / "data" / "support-threads" / "twitter-support-dev.json"
LABELS = REPO / "bench" / "pii_labels" / "support_threads.json"
TYPES = ("NAME", "EMAIL", "PHONE", "CARD", "IBAN", "SSN", "IP", "ADDRESS", "HANDLE", "URL")

# Presidio's entity names in kbbot's types. DATE_TIME, NRP, URL and the like are not asked for: a
# support transcript keeps its dates, and the look-alikes would make Presidio look worse than it is.
PRESIDIO_TYPES = {
    "PERSON": "NAME",
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CARD",
    "IBAN_CODE": "IBAN",
    "US_SSN": "SSN",
    "IP_ADDRESS": "IP",
    "LOCATION": "ADDRESS",
}


@dataclass
class LabelledText:
    text: str
    gold: list[tuple[int, int, str]]
    group: str  # locale, or "real"


@dataclass
class LabelledConversation:
    turns: list[LabelledText]


# A detector maps the turns of one conversation to (start, end, type) per turn.
Detector = Callable[[Sequence[str]], list[list[tuple[int, int, str]]]]


def kbbot_detector() -> Detector:
    sanitizer = Sanitizer()

    def detect(texts: Sequence[str]) -> list[list[tuple[int, int, str]]]:
        return [[(s.start, s.end, s.pii_type) for s in spans] for spans in sanitizer.detect_conversation(texts)]

    return detect


def presidio_detector(spacy_model: Path | None = None) -> Detector:
    import tldextract
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NoOpNlpEngine, SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers.generic import email_recognizer

    # Presidio's e-mail check asks tldextract, which fetches the public-suffix list unless told not to.
    offline = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)  # the bundled snapshot only
    email_recognizer.tldextract = SimpleNamespace(extract=offline)  # type: ignore[attr-defined]
    if spacy_model is None:
        nlp_engine = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}])
    else:
        nlp_engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": str(spacy_model)}])
    nlp_engine.load()
    registry = RecognizerRegistry()
    registry.load_predefined_recognizers(nlp_engine=nlp_engine, languages=["en"])
    engine = AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=["en"])
    entities = [e for e in PRESIDIO_TYPES if spacy_model is not None or e not in ("PERSON", "LOCATION")]

    def detect(texts: Sequence[str]) -> list[list[tuple[int, int, str]]]:
        return [
            [
                (r.start, r.end, PRESIDIO_TYPES[r.entity_type])
                for r in engine.analyze(text=text, language="en", entities=entities)
            ]
            for text in texts
        ]

    return detect


def synthetic_set(per_locale: int) -> dict[str, list[LabelledConversation]]:
    sets: dict[str, list[LabelledConversation]] = {"tuning": [], "heldout": []}
    for name, locales in (("tuning", TUNING_LOCALES), ("heldout", HELDOUT_LOCALES)):
        for locale in locales:
            for conversation in generate(locale, per_locale):
                sets[name].append(
                    LabelledConversation([LabelledText(t.text, t.spans, locale) for t in conversation.turns])
                )
    return sets


def real_set(path: Path = THREADS) -> list[LabelledConversation] | None:
    """The hand-labelled real turns, grouped by thread; None when ../shared is not there."""
    if not path.exists() or not LABELS.exists():
        return None
    labels = json.loads(LABELS.read_text(encoding="utf-8"))
    threads = {c.conversation_id: c for c in read_twitter_threads(path).conversations}
    out = []
    for entry in labels["threads"]:
        conversation = threads[entry["thread"]]
        labelled = {turn["turn"]: turn["spans"] for turn in entry["turns"]}
        # Every turn is detected (names propagate across turns) but only the labelled ones are scored.
        out.append(
            LabelledConversation(
                [
                    LabelledText(t.text, [tuple(s) for s in labelled[i]], "real" if i in labelled else "")
                    for i, t in enumerate(conversation.turns)
                ]
            )
        )
    return out


@dataclass
class Tally:
    gold: Counter[str] = field(default_factory=Counter)
    removed: Counter[str] = field(default_factory=Counter)
    redactions: int = 0
    correct_redactions: int = 0
    redactions_by_type: Counter[str] = field(default_factory=Counter)
    correct_by_type: Counter[str] = field(default_factory=Counter)
    tokens: int = 0
    tokens_kept: int = 0
    misses: list[str] = field(default_factory=list)
    false_positives: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        def ratio(a: int, b: int) -> float | None:
            return round(a / b, 4) if b else None

        return {
            "removed": {t: ratio(self.removed[t], self.gold[t]) for t in TYPES if self.gold[t]},
            "gold": {t: self.gold[t] for t in TYPES if self.gold[t]},
            "removed_all": ratio(sum(self.removed.values()), sum(self.gold.values())),
            "precision": ratio(self.correct_redactions, self.redactions),
            "precision_by_type": {
                t: ratio(self.correct_by_type[t], n) for t, n in sorted(self.redactions_by_type.items())
            },
            "redactions": self.redactions,
            "non_pii_tokens_kept": ratio(self.tokens_kept, self.tokens),
        }


def _covered(start: int, end: int, text: str, found: list[tuple[int, int, str]]) -> bool:
    wanted = [i for i in range(start, end) if text[i].isalnum()]
    if not wanted:
        return True
    hit = sum(1 for i in wanted if any(s <= i < e for s, e, _ in found))
    return hit / len(wanted) >= 0.9


def score(conversations: Sequence[LabelledConversation], detect: Detector, tallies: dict[str, Tally]) -> None:
    """Add one detector's results on these conversations to ``tallies`` (by group and "all")."""
    for conversation in conversations:
        found_per_turn = detect([t.text for t in conversation.turns])
        for turn, found in zip(conversation.turns, found_per_turn, strict=True):
            if not turn.group:
                continue
            for tally in (tallies[turn.group], tallies["all"]):
                for start, end, pii_type in turn.gold:
                    tally.gold[pii_type] += 1
                    if _covered(start, end, turn.text, found):
                        tally.removed[pii_type] += 1
                    elif tally is tallies["all"] and len(tally.misses) < 400:
                        tally.misses.append(f"{pii_type}: {turn.text[start:end]!r}")
                for start, end, pii_type in found:
                    tally.redactions += 1
                    tally.redactions_by_type[pii_type] += 1
                    if any(s < end and start < e for s, e, _ in turn.gold):
                        tally.correct_redactions += 1
                        tally.correct_by_type[pii_type] += 1
                    elif tally is tallies["all"] and len(tally.false_positives) < 400:
                        tally.false_positives.append(f"{pii_type}: {turn.text[start:end]!r}")
                for word in _tokens_outside(turn):
                    tally.tokens += 1
                    if not any(s < word[1] and word[0] < e for s, e, _ in found):
                        tally.tokens_kept += 1


def _tokens_outside(turn: LabelledText) -> list[tuple[int, int]]:
    out, start = [], None
    for index, char in enumerate(turn.text + " "):
        if char.isspace():
            if start is not None and not any(s < index and start < e for s, e, _ in turn.gold):
                out.append((start, index))
            start = None
        elif start is None:
            start = index
    return out


def timed_rounds(
    detectors: dict[str, Detector], conversations: Sequence[LabelledConversation], rounds: int
) -> dict[str, float]:
    """Conversations per CPU second per detector: medians of rounds that alternate the detectors on the
    same input. CPU time, not wall time: the two cores are shared with other work."""
    seconds: dict[str, list[float]] = defaultdict(list)
    texts = [[t.text for t in c.turns] for c in conversations]
    for _ in range(rounds):
        for name, detect in detectors.items():
            started = time.process_time()
            for turns in texts:
                detect(turns)
            seconds[name].append(time.process_time() - started)
    return {name: round(len(texts) / statistics.median(s), 1) for name, s in seconds.items()}


def _fmt(value: object) -> str:
    return "-" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)


@click.command()
@click.option("--per-locale", default=40, show_default=True, type=click.IntRange(1))
@click.option("--rounds", default=3, show_default=True, type=click.IntRange(1))
@click.option("--threads", "threads_path", type=click.Path(path_type=Path), default=THREADS, show_default=True)
@click.option("--spacy-model", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--no-presidio", is_flag=True, help="Score kbbot only (quicker while tuning).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--show-misses", default=0, show_default=True, help="Print this many misses and false positives.")
def main(
    per_locale: int,
    rounds: int,
    threads_path: Path,
    spacy_model: Path | None,
    no_presidio: bool,
    out: Path | None,
    show_misses: int,
) -> None:
    detectors: dict[str, Detector] = {"kbbot": kbbot_detector()}
    if not no_presidio and importlib.util.find_spec("presidio_analyzer") is None:
        raise click.ClickException(
            "presidio-analyzer is not installed: pip install -e '.[bench]', or pass --no-presidio."
        )
    if not no_presidio:
        detectors["presidio"] = presidio_detector()
        if spacy_model is not None:
            detectors["presidio+ner"] = presidio_detector(spacy_model)
    sets: dict[str, list[LabelledConversation]] = synthetic_set(per_locale)
    real = real_set(threads_path)
    if real is None:
        click.echo(f"{threads_path} is absent: the real-thread part is skipped.")
    else:
        sets["real"] = real
    results: dict[str, object] = {"per_locale": per_locale, "sets": {}}
    for set_name, conversations in sets.items():
        click.echo(f"\n## {set_name}: {len(conversations)} conversations")
        by_detector = {}
        for name, detect in detectors.items():
            tallies: dict[str, Tally] = defaultdict(Tally)
            score(conversations, detect, tallies)
            overall = tallies["all"].as_dict()
            by_detector[name] = {
                "all": overall,
                "by_group": {g: t.as_dict() for g, t in sorted(tallies.items()) if g != "all"},
            }
            removed = " ".join(f"{t} {_fmt(v)}" for t, v in overall["removed"].items())  # type: ignore[union-attr]
            click.echo(
                f"{name:<13} removed: {removed} | precision {_fmt(overall['precision'])} "
                f"| non-PII tokens kept {_fmt(overall['non_pii_tokens_kept'])}"
            )
            for line in tallies["all"].misses[:show_misses]:
                click.echo(f"    miss {line}")
            for line in tallies["all"].false_positives[:show_misses]:
                click.echo(f"    false {line}")
        results["sets"][set_name] = by_detector  # type: ignore[index]
    throughput: dict[str, dict[str, float]] = {}
    for set_name in ("tuning", "real"):
        if set_name in sets:
            timing_set = sets[set_name][:150]  # spaCy NER is slow: a fixed slice keeps the run short
            throughput[set_name] = timed_rounds(detectors, timing_set, rounds)
            click.echo(
                f"\nconversations per CPU second on {len(timing_set)} {set_name} conversations "
                f"(median of {rounds} alternating rounds):"
            )
            for name, value in throughput[set_name].items():
                click.echo(f"  {name:<13} {value}")
    results["conversations_per_second"] = throughput
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        click.echo(f"wrote {out}")


if __name__ == "__main__":
    main()
