"""Errors of the fine-tuning pipeline, all ``FinetuneError`` so the CLI shows them as they are.

KbbotError (retrieval.errors)
└── FinetuneError
    ├── InputError        an input cannot be read at all (missing, unknown format, nothing usable)
    ├── EmptyDatasetError every conversation was dropped: nothing to train on
    ├── ManifestError     a file was not produced by `prepare` (hash mismatch, no manifest)
    ├── JobError          the fine-tuning API refused or failed a call (wraps openai errors)
    └── RegistryError     the tone-model registry cannot do what was asked (unknown model, job not done)
"""

from __future__ import annotations

from retrieval.errors import KbbotError


class FinetuneError(KbbotError):
    """Data preparation or a fine-tuning job failed; the message says what to do."""


class InputError(FinetuneError):
    pass


class EmptyDatasetError(FinetuneError):
    pass


class ManifestError(FinetuneError):
    pass


class JobError(FinetuneError):
    pass


class RegistryError(FinetuneError):
    pass
