"""The codebase's own rules, checked as part of the test suite: the import layers, types, lint."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["protocol", "records", "handshake"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_import_layers() -> None:
    """protocol uses handshake and records; those two never import each other nor protocol."""
    lint_imports = shutil.which("lint-imports")
    assert lint_imports, "import-linter is part of the test extras"
    result = _run(lint_imports, "--config", "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict() -> None:
    extra = [d for d in ("interop", "bench") if (ROOT / d / "__init__.py").exists()]
    result = _run(sys.executable, "-m", "mypy", "--strict", *PACKAGES, *extra)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_lint() -> None:
    result = _run(sys.executable, "-m", "ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    result = _run(sys.executable, "-m", "ruff", "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr
