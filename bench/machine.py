"""What the figures were measured on (the results are meaningless without it)."""

from __future__ import annotations

import os
import platform
import ssl
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from . import openssl_py, tlslite_ng

ROOT = Path(__file__).resolve().parent.parent


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def _git() -> dict[str, Any]:
    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
        )
        return result.stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {}


def _openssl_cli() -> str:
    try:
        result = subprocess.run(
            ["openssl", "version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return "absent"
    return result.stdout.strip()


def describe() -> dict[str, Any]:
    from cryptography.hazmat.backends.openssl.backend import backend

    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "cryptography": _version("cryptography"),
        "cryptography_openssl": backend.openssl_version_text(),
        "ssl_module_openssl": ssl.OPENSSL_VERSION,
        "pyopenssl": _version("pyOpenSSL"),
        "pyopenssl_openssl": openssl_py.version(),
        "tlslite_ng": tlslite_ng.version(),
        "tlslite_ng_backends": tlslite_ng.backends(),
        "openssl_cli": _openssl_cli(),
        "tls13": _git(),
    }
