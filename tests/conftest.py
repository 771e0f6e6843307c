"""Shared fixtures: throwaway PKIs and an in-memory pump between two connections."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from protocol.pki import PKI, generate_pki


@pytest.fixture(scope="session")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki")
    generate_pki(directory)
    return directory


@pytest.fixture(scope="session")
def pki_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., tuple[PKI, Path]]:
    cache: dict[tuple[str, bool], tuple[PKI, Path]] = {}

    def make(key_type: str = "ecdsa-p256", intermediate: bool = False) -> tuple[PKI, Path]:
        key = (key_type, intermediate)
        if key not in cache:
            directory = tmp_path_factory.mktemp(f"pki-{key_type}")
            cache[key] = (
                generate_pki(directory, key_type=key_type, intermediate=intermediate),
                directory,
            )
        return cache[key]

    return make


NOW = time.time()
