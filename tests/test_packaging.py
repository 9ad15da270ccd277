"""How the project installs (pyproject.toml), built by the real setuptools backend into a temporary copy."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("bot", "retrieval", "finetune", "migrations")

_BUILD = """
import json, sys, warnings
from setuptools import build_meta
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    wheel = build_meta.build_editable(sys.argv[1])
print(json.dumps({"wheel": wheel, "warnings": [f"{w.category.__name__}: {w.message}" for w in caught]}))
"""


def test_the_editable_install_is_a_plain_path_entry_without_a_notice(tmp_path: Path) -> None:
    """`make setup` runs `pip install -e .`: no setuptools notice to puzzle a newcomer, and the installed
    .pth puts this checkout on sys.path."""
    import json

    project = tmp_path / "kbbot"
    project.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).exists():
            shutil.copy(REPO / name, project / name)
    for package in PACKAGES:
        shutil.copytree(REPO / package, project / package, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run([sys.executable, "-c", _BUILD, str(tmp_path / "out")], cwd=project,
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    report = json.loads(built.stdout.strip().splitlines()[-1])
    assert not [w for w in report["warnings"] if "Editable installation" in w], report["warnings"]
    with zipfile.ZipFile(tmp_path / "out" / report["wheel"]) as wheel:
        pth = [n for n in wheel.namelist() if n.endswith(".pth")]
        assert pth == ["__editable__.kbbot-0.1.0.pth"], wheel.namelist()
        assert wheel.read(pth[0]).decode().strip() == str(project.resolve())
