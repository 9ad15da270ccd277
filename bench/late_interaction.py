"""Late interaction (MaxSim) between the question and a few candidate units, from MiniLM's token vectors.

A unit's sentence embedding averages its tokens, so a row naming "forecasts … large datasets" and one naming
"datasets" come out alike for "maximum number of datasets". Here each of the question's content tokens finds
its best match among the unit's tokens (cosine of the contextual vectors before mean pooling), and the
matches are averaged with the question words' rarity among the candidate units as weights.

A measurement for bench/unit_scorer.py (it lost on both sets, BENCHMARKS.md Session 9), not part of the
answer path: it opens its own ONNX Runtime session of the embedder's cached model with the last layer's
token vectors (`l5/out`, retrieval/onnx_export.py) added as a graph output, so onnx_embedder.py is unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from retrieval.terms import stems

_lock = threading.Lock()
_sessions: dict[str, Any] = {}


def _token_session(embedder: Any) -> Any:
    """An ONNX Runtime session of the embedder's model that also returns its last layer's token vectors."""
    import onnx
    import onnxruntime as ort

    from retrieval.onnx_embedder import model_file

    path = model_file(embedder._cache_dir, quantized=embedder.quantized)
    with _lock:
        if str(path) not in _sessions:
            model = onnx.load(str(path))
            model.graph.output.append(onnx.helper.make_tensor_value_info("l5/out", onnx.TensorProto.FLOAT,
                                                                         ["batch", "seq", 384]))
            options = ort.SessionOptions()
            options.intra_op_num_threads = embedder.threads
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.log_severity_level = 3
            _sessions[str(path)] = ort.InferenceSession(model.SerializeToString(), options,
                                                        providers=["CPUExecutionProvider"])
    return _sessions[str(path)]


def token_vectors(embedder: Any, texts: Sequence[str]) -> list[tuple[Any, np.ndarray]]:
    """Each text's encoding and its tokens' unit vectors (special tokens included), in one model call."""
    if embedder._session is None:
        embedder._load()
    session = _token_session(embedder)
    encodings = embedder._encoder.encode_batch(list(texts))
    width = max(len(e.ids) for e in encodings)
    ids = np.zeros((len(texts), width), dtype=np.int64)
    mask = np.zeros((len(texts), width), dtype=np.int64)
    for row, e in enumerate(encodings):
        ids[row, : len(e.ids)] = e.ids
        mask[row, : len(e.ids)] = 1
    hidden = session.run(["l5/out"], {"input_ids": ids, "attention_mask": mask})[0]
    out = []
    for row, e in enumerate(encodings):
        vectors = hidden[row, : len(e.ids)]
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)
        out.append((e, vectors))
    return out


def question_token_weights(question: str, encoding: Any, word_weights: Mapping[str, float]) -> np.ndarray:
    """Each question token weighs as its word does among the candidates (0: special tokens, stopwords)."""
    weights = np.zeros(len(encoding.ids), dtype=np.float32)
    for t, (start, end) in enumerate(encoding.offsets):
        if end <= start:
            continue  # [CLS], [SEP]
        word = encoding.word_ids[t]
        span = [i for i, w in enumerate(encoding.word_ids) if w == word]
        text = question[encoding.offsets[span[0]][0]: encoding.offsets[span[-1]][1]]
        stemmed = stems(text)
        weights[t] = max((word_weights.get(s, 0.0) for s in stemmed), default=0.0)
    return weights


def maxsim(question_vectors: np.ndarray, weights: np.ndarray, unit_vectors: np.ndarray) -> float:
    if not weights.sum():
        return 0.0
    best = (question_vectors @ unit_vectors[1:-1].T).max(axis=1) if len(unit_vectors) > 2 else np.zeros(len(weights))
    return float((best * weights).sum() / weights.sum())
