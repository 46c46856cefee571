"""Where pope-env keeps caches (fetched data wheels, converted models, built images' metadata).

``$POPE_ENV_CACHE`` if set, else ``$XDG_CACHE_HOME/pope-env``, else ``~/.cache/pope-env``.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """The cache folder (created), or a subfolder of it."""
    root = os.environ.get("POPE_ENV_CACHE")
    if root:
        base = Path(root)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = Path(xdg) / "pope-env" if xdg else Path.home() / ".cache" / "pope-env"
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
