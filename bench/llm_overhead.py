"""Issue 4 benchmark: what kbbot's LLM path costs around the model call, and the answer latency breakdown.

    nice -n 10 .venv/bin/python -m bench.llm_overhead [--rounds 3] [--json-out FILE]

Without OPENAI_API_KEY/OPENAI_BASE_URL in the environment, the model is the local fake OpenAI server
(tests/fakes/openai_api.py, zero delay, real HTTP + SSE, word-by-word streaming) and the demo KB is
indexed into a scratch database of the benchmarks' embedded PostgreSQL. Measured per question, interleaved:

- bare:   the openai SDK streaming the same prompt from the same server, consuming every chunk
          (the cost of the model call itself, here nearly all HTTP/SSE/SDK work);
- kbbot:  `LLMSynthesizer.stream` on the same passages: prompt building with token counting, routing
          (one registry read), streaming through the citation filter, citations with quotes.
- overhead = kbbot - bare (target < 50 ms), and its parts timed offline.
- the pipeline's breakdown: retrieve (question embedding + SQL), first token, total.

With OPENAI_API_KEY/OPENAI_BASE_URL set, the same breakdown runs against that endpoint on aws-docs-qa
questions when the aws index exists (bench/ingest_aws.py), else on the demo questions.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from bench.common import bench_server, machine, scratch_database, summarize_ms  # noqa: E402

AWS = REPO.parent / "shared" / "data" / "aws-docs-qa"
BENCH_DIR = Path(os.environ.get("KBBOT_BENCH_DIR", Path.home() / ".cache" / "kbbot-bench"))
_PASSAGE = re.compile(r'<passage number="(\d+)"[^\n]*>\n(.*?)\n</passage>', re.DOTALL)


def realistic_answer(messages: list[dict], model: str) -> str:
    """About 90 words citing three passages, like a short support answer."""
    passages = _PASSAGE.findall(messages[-1]["content"])
    sentences = []
    for number, text in passages[:3]:
        words = text.split()[:30]
        sentences.append(" ".join(words).rstrip(".,;:") + f" [{number}].")
    return " ".join(sentences)


def ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000


def questions(path: Path, limit: int) -> list[str]:
    return [json.loads(line)["text"] for line in path.open(encoding="utf-8")][:limit]


def overhead(services, questions_: list[str], rounds: int) -> dict:  # type: ignore[no-untyped-def]
    """kbbot's synthesizer vs the bare SDK call on the same prompt, same server, interleaved."""
    from retrieval.answer import AskContext
    from retrieval.llm.grounding import StreamGrounder, build_citations
    from retrieval.routing import RouteRequest

    synth = services.synthesizer()
    client = services.chat_client.client
    model = services.settings.llm.llm_model
    searcher = services.searcher()
    prepared = []
    for q in questions_:
        result = searcher.search(q, k=services.settings.search.top_k)
        prepared.append((q, result.hits, result.query_vector, synth.prompts.build(q, result.hits)))
    bare, kbbot, prompt_ms, route_ms, ground_ms, chunks = [], [], [], [], [], []
    for round_ in range(rounds + 1):  # round 0 warms connections, caches and the tokenizer
        for q, hits, qvec, prompt in prepared:
            started = time.perf_counter()
            stream = client.chat.completions.create(model=model, messages=prompt.messages, stream=True,
                                                    max_tokens=700)
            deltas = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
            t_bare = ms(started)
            started = time.perf_counter()
            events = list(synth.stream(q, hits, context=AskContext(), question_vector=qvec))
            t_kbbot = ms(started)
            assert events[-1].model == model and events[-1].citations, events[-1]
            # The parts, offline: prompt, route, grounding + citations over the same deltas.
            started = time.perf_counter()
            built = synth.prompts.build(q, hits)
            t_prompt = ms(started)
            started = time.perf_counter()
            synth.router.route(RouteRequest())
            t_route = ms(started)
            started = time.perf_counter()
            grounder = StreamGrounder(len(built.passages))
            for delta in deltas:
                grounder.feed(delta)
            _, grounded = grounder.finish()
            build_citations(grounded, built.passages)
            t_ground = ms(started)
            if round_:
                bare.append(t_bare)
                kbbot.append(t_kbbot)
                prompt_ms.append(t_prompt)
                route_ms.append(t_route)
                ground_ms.append(t_ground)
                chunks.append(len(deltas))
    diffs = [k - b for k, b in zip(kbbot, bare, strict=True)]
    return {
        "samples": len(bare), "stream_chunks_p50": statistics.median(chunks),
        "bare_sdk_stream_ms": summarize_ms(bare), "kbbot_synthesizer_ms": summarize_ms(kbbot),
        "overhead_ms": summarize_ms(diffs),
        "ratio_kbbot_to_bare_p50": round(statistics.median(kbbot) / statistics.median(bare), 2),
        "parts_ms": {"prompt_build": summarize_ms(prompt_ms), "route_registry_read": summarize_ms(route_ms),
                     "grounding_and_citations": summarize_ms(ground_ms)},
    }


def extractive_side_by_side(services, questions_: list[str]) -> dict:  # type: ignore[no-untyped-def]
    """The offline alternative on the same passages (it embeds the passages' sentences)."""
    from retrieval.extractive import ExtractiveSynthesizer

    extractive = ExtractiveSynthesizer(services.embedder)
    searcher = services.searcher()
    times = []
    for round_ in range(2):
        for q in questions_:
            result = searcher.search(q, k=services.settings.search.top_k)
            started = time.perf_counter()
            extractive.compose(q, result.hits, result.query_vector)
            if round_:
                times.append(ms(started))
    return {"extractive_compose_ms": summarize_ms(times)}


def breakdown(services, questions_: list[str]) -> dict:  # type: ignore[no-untyped-def]
    """The whole pipeline per question: retrieve, first token, total (as the asker waits)."""
    from retrieval.types import Answer

    retrieve, first, after_retrieval, total, outcomes = [], [], [], [], {}
    pipeline = services.pipeline
    for q in questions_:
        started = time.perf_counter()
        first_token = None
        final = None
        for event in pipeline.stream(q):
            if isinstance(event, Answer):
                final = event
            elif first_token is None:
                first_token = ms(started)
        assert final is not None
        key = f"{final.outcome} by {final.model}"  # a fallback must not pass for the endpoint's latency
        outcomes[key] = outcomes.get(key, 0) + 1
        retrieved = final.timings_ms.get("embed_question", 0) + final.timings_ms.get("retrieve", 0)
        retrieve.append(retrieved)
        total.append(ms(started))
        if first_token is not None:
            first.append(first_token)
            after_retrieval.append(first_token - retrieved)
    return {"questions": len(questions_), "outcomes": outcomes, "retrieve_ms": summarize_ms(retrieve),
            "first_token_ms": summarize_ms(first) if first else None,
            "first_token_after_retrieval_ms": summarize_ms(after_retrieval) if first else None,
            "total_ms": summarize_ms(total)}


def with_fake(args: argparse.Namespace) -> dict:
    from bot.services import Services
    from retrieval.db import Database
    from retrieval.settings import load_settings
    from retrieval.sources.filesystem import FilesystemSource
    from tests.fakes.openai_api import FakeOpenAI

    qs = questions(REPO / "demo_eval" / "queries.jsonl", args.questions)
    with scratch_database(bench_server(), "llmbench") as url, FakeOpenAI() as fake:
        fake.chat_responder = realistic_answer
        db = Database.from_url(url.render_as_string(hide_password=False), migrate=True)
        settings = load_settings(_env_file=None, database_url=url.render_as_string(hide_password=False),
                                 openai_api_key="bench", openai_base_url=fake.url + "/v1")
        services = Services(settings, database=db)
        services.indexer().sync([FilesystemSource("demo", REPO / "demo_kb")])
        report = {"endpoint": "fake (local, zero delay)", "overhead": overhead(services, qs, args.rounds)}
        report["extractive"] = extractive_side_by_side(services, qs)
        breakdown(services, qs[:5])  # warm the pipeline
        report["pipeline"] = breakdown(services, qs)
        services.close()
    return report


def with_real_endpoint(args: argparse.Namespace) -> dict:
    from bot.services import Services
    from retrieval.settings import load_settings

    if (BENCH_DIR / "aws").exists() and (AWS / "queries.jsonl").exists():
        settings = load_settings(data_dir=BENCH_DIR / "aws")
        qs, corpus = questions(AWS / "queries.jsonl", args.questions), "aws-docs-qa"
    else:
        settings = load_settings()
        qs, corpus = questions(REPO / "demo_eval" / "queries.jsonl", args.questions), "demo (KBBOT_DATA_DIR)"
    services = Services(settings)
    report = {"endpoint": services.chat_client.endpoint, "model": settings.llm.llm_model, "corpus": corpus,
              "pipeline": breakdown(services, qs)}
    services.close()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--questions", type=int, default=40)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    real = bool(os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL"))
    report = {"machine": machine(), **(with_real_endpoint(args) if real else with_fake(args)),
              "load_average_1m_at_end": round(os.getloadavg()[0], 2)}
    print(json.dumps(report, indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
