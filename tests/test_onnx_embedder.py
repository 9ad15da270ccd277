"""The ONNX Runtime backend against the torch path on the same official weights, and its thread sizing."""

from __future__ import annotations

import importlib.util
import threading

import numpy as np
import pytest

from retrieval.embedding_cache import CachedEmbedder
from retrieval.embeddings import create_embedder
from retrieval.evaluation import evaluate, load_labelled_queries
from retrieval.onnx_embedder import MIN_LENGTH_SHARE, OnnxEmbedder, _batches, model_file
from retrieval.search import Searcher
from retrieval.settings import load_settings
from retrieval.threads import PassageGate, embedding_threads, passage_gate
from tests.conftest import REPO

pytestmark = pytest.mark.slow
needs_torch = pytest.mark.skipif(importlib.util.find_spec("sentence_transformers") is None,
                                 reason="the torch backend (kbbot[torch]) is not installed")

TEXTS = [
    "How do I connect to the VPN from home?",
    "hi",
    "Amazon S3 buckets can be encrypted with SSE-KMS; the key policy must allow kms:GenerateDataKey.",
    "Ünïcödé, emoji 🚀 and a URL https://example.com/a?b=c#d — all in one line.",
    # Longer than the model's 256 tokens: both backends must truncate at the same place.
    " ".join(f"Paragraph {i} explains IAM roles, trust policies and temporary credentials." for i in range(60)),
    "",
]


@pytest.fixture(scope="session")
def onnx_settings():  # type: ignore[no-untyped-def]
    return load_settings(_env_file=None).embeddings  # the default model cache: built once per machine


@pytest.fixture(scope="session")
def onnx_int8(onnx_settings) -> OnnxEmbedder:  # type: ignore[no-untyped-def]
    return OnnxEmbedder(onnx_settings.model_cache_dir, quantized=True)


@pytest.fixture(scope="session")
def onnx_fp32(onnx_settings) -> OnnxEmbedder:  # type: ignore[no-untyped-def]
    return OnnxEmbedder(onnx_settings.model_cache_dir, quantized=False)


@pytest.fixture(scope="session")
def torch_embedder():  # type: ignore[no-untyped-def]
    if importlib.util.find_spec("sentence_transformers") is None:
        pytest.skip("the torch backend (kbbot[torch]) is not installed")
    from retrieval.embeddings import LocalEmbedder

    return LocalEmbedder()


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1)


@needs_torch
def test_fp32_graph_reproduces_sentence_transformers(onnx_fp32: OnnxEmbedder, torch_embedder) -> None:  # type: ignore[no-untyped-def]
    cosines = _cosines(onnx_fp32.embed_documents(TEXTS), torch_embedder.embed_documents(TEXTS))
    assert cosines.min() >= 0.99999, cosines


@needs_torch
def test_int8_stays_close_to_the_torch_vectors(onnx_int8: OnnxEmbedder, torch_embedder) -> None:  # type: ignore[no-untyped-def]
    cosines = _cosines(onnx_int8.embed_documents(TEXTS), torch_embedder.embed_documents(TEXTS))
    assert cosines.mean() >= 0.985 and cosines.min() >= 0.97, cosines


@needs_torch
def test_token_counts_match_the_torch_tokenizer(onnx_fp32: OnnxEmbedder, torch_embedder) -> None:  # type: ignore[no-untyped-def]
    counts = [onnx_fp32.count_tokens(t) for t in TEXTS]
    assert counts == [torch_embedder.count_tokens(t) for t in TEXTS]
    assert counts[4] > onnx_fp32.max_tokens  # counting never truncates: chunking needs the real length


def test_vectors_do_not_depend_on_batching_or_order(onnx_fp32: OnnxEmbedder) -> None:
    together = onnx_fp32.embed_documents(TEXTS)
    alone = np.stack([onnx_fp32.embed_query(t) for t in TEXTS])
    reversed_order = onnx_fp32.embed_documents(TEXTS[::-1])[::-1]
    assert together.shape == (len(TEXTS), 384) and together.dtype == np.float32
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    # Padding is masked: a text embeds the same alone as next to a 256-token one.
    assert _cosines(together, alone).min() >= 0.99999
    assert np.allclose(together, reversed_order, atol=1e-6)
    assert onnx_fp32.embed_documents([]).shape == (0, 384)


def test_batches_keep_padding_small_and_calls_within_their_caps() -> None:
    lengths = [120, 110, 100, 90, 60, 58, 40, 39, 38, 12, 10]
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches = list(_batches(order, lengths, max_rows=3, max_tokens=400))
    assert [i for b in batches for i in b] == order  # every text once, longest first
    for batch in batches:
        longest = lengths[batch[0]]
        assert len(batch) <= 3 and len(batch) * longest <= 400
        assert all(lengths[i] >= MIN_LENGTH_SHARE * longest for i in batch)  # at most 20% padding per row
    assert [[lengths[i] for i in b] for b in batches] == [[120, 110, 100], [90], [60, 58], [40, 39, 38],
                                                          [12, 10]]


def test_model_file_is_built_once_and_reused(onnx_int8: OnnxEmbedder, onnx_settings) -> None:  # type: ignore[no-untyped-def]
    onnx_int8.embed_query("load")
    path = model_file(onnx_settings.model_cache_dir, quantized=True)
    built_at = path.stat().st_mtime_ns
    assert model_file(onnx_settings.model_cache_dir, quantized=True) == path
    assert path.stat().st_mtime_ns == built_at
    assert "int8" in path.name and path.stat().st_size < 40_000_000  # quantized: about a quarter of fp32


def test_an_index_from_one_backend_is_searched_as_well_from_another(demo_database, embedder, onnx_int8) -> None:  # type: ignore[no-untyped-def]
    """The demo index was embedded by the default backend (ONNX fp32); questions embedded by another one
    (torch when installed, else int8) find the same articles: one space, no re-embed on a switch."""
    other = onnx_int8
    if importlib.util.find_spec("sentence_transformers") is not None:
        from retrieval.embeddings import LocalEmbedder

        other = LocalEmbedder()
    assert (other.provider, other.model) == (embedder.provider, embedder.model)  # what the space records
    queries = load_labelled_queries(REPO / "demo_eval" / "queries.jsonl", REPO / "demo_eval" / "qrels.tsv")
    same = evaluate(Searcher(demo_database, embedder), queries, k=10, mode="dense")
    switched = evaluate(Searcher(demo_database, other), queries, k=10, mode="dense")
    assert abs(same.ndcg_at_10 - switched.ndcg_at_10) <= 0.02
    assert abs(same.recall_at_k - switched.recall_at_k) <= 0.03


def test_threads_are_shared_among_concurrent_calls() -> None:
    assert embedding_threads(1, cores=2) == 2
    assert embedding_threads(4, cores=2) == 1
    assert embedding_threads(2, cores=8) == 4
    assert embedding_threads(4, cores=2, configured=3) == 3


def test_threads_follow_the_calls_that_run_at_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings(_env_file=None, data_dir=tmp_path, embedding_backend="onnx")
    cores = embedding_threads(1)
    assert create_embedder(settings.embeddings, settings.openai).threads == cores  # the CLI: one at a time
    assert create_embedder(settings.embeddings, settings.openai, concurrent_calls=64).threads == 1
    fixed = load_settings(_env_file=None, data_dir=tmp_path, embedding_threads=3)
    assert create_embedder(fixed.embeddings, fixed.openai, concurrent_calls=4).threads == 3


def test_passage_batches_are_held_to_the_cores_when_calls_outnumber_them(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert passage_gate(1, 2, cores=2) is None  # the CLI: one call at a time
    assert passage_gate(4, 2, cores=8) is None  # 4 calls of 2 threads fit on 8 cores
    gate = passage_gate(4, 1, cores=2)
    assert gate is not None and gate.slots == 2  # `kbbot serve` with 4 workers on 2 cores
    assert passage_gate(3, 3, cores=2).slots == 1  # type: ignore[union-attr]
    settings = load_settings(_env_file=None, data_dir=tmp_path, embedding_backend="onnx")
    assert create_embedder(settings.embeddings, settings.openai).gate is None
    assert create_embedder(settings.embeddings, settings.openai, concurrent_calls=64).gate is not None


def test_questions_do_not_wait_for_the_passage_gate(onnx_settings) -> None:  # type: ignore[no-untyped-def]
    gate = PassageGate(1)
    gated = OnnxEmbedder(onnx_settings.model_cache_dir, gate=gate)
    finished = threading.Event()
    passages = threading.Thread(target=lambda: (gated.embed_documents(["a passage"]), finished.set()))
    with gate.passages():  # another passage batch holds the only slot
        passages.start()
        question = gated.embed_query("a question")  # runs at once
        assert not finished.wait(0.5)  # the passage batch waits for the slot
    assert finished.wait(60)
    passages.join()
    assert np.allclose(question, gated.embed_documents(["a question"])[0], atol=1e-6)


def test_sentence_cache_embeds_repeated_texts_once(onnx_fp32: OnnxEmbedder) -> None:
    cached = CachedEmbedder(onnx_fp32, max_entries=3)
    first = cached.embed_documents(["alpha", "beta", "alpha"])
    assert (cached.hits, cached.misses) == (1, 2)  # the duplicate inside one call is embedded once
    again = cached.embed_documents(["beta", "alpha"])
    assert (cached.hits, cached.misses) == (3, 2)
    assert np.array_equal(again, first[[1, 0]])
    cached.embed_documents(["gamma", "delta"])  # evicts the least recently used ("beta")
    cached.embed_documents(["beta"])
    assert cached.misses == 5
    assert np.allclose(cached.embed_documents(["alpha"])[0], onnx_fp32.embed_documents(["alpha", "beta"])[0], atol=1e-6)
    assert cached.embed_documents([]).shape == (0, 384)
