"""Where the project's shared specifications and captures are: ``shared/`` beside the
repository (as CI lays it out), else the developers' ``/work/shared``."""

from __future__ import annotations

from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
SHARED = next(
    (p for p in (_REPO.parent / "shared", Path("/work/shared")) if p.is_dir()),
    _REPO.parent / "shared",
)
