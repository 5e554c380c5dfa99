"""Arrays derived once from a library's model, kept on disk for every later process.

Each task process of the DAG (and each CLI worker) would otherwise pay seconds to load
py3langid's model and convert its tables, and to import datasketch for 128 numbers.
The arrays are saved as `.npy` files under `NEWS_CACHE_DIR` (default
`$XDG_CACHE_HOME/news-pipeline`, i.e. `~/.cache/news-pipeline`) and opened memory-mapped,
so the processes of one machine share their pages. The key names what the arrays were
derived from (library version, model file size and time); a missing, partial or
unreadable cache is rebuilt, never an error.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    configured = os.environ.get("NEWS_CACHE_DIR")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "news-pipeline"


def arrays(key: str, build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The arrays saved under `key`, memory-mapped; built (and saved) when absent."""
    import numpy as np

    folder = cache_dir() / key
    try:
        names = (folder / "NAMES").read_text().split()
        return {name: np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False) for name in names}
    except (OSError, ValueError):
        pass
    built = {name: np.asarray(value) for name, value in build().items()}
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=folder.parent))
        for name, value in built.items():
            np.save(staging / f"{name}.npy", value, allow_pickle=False)
        (staging / "NAMES").write_text("\n".join(built))
        try:
            staging.rename(folder)  # atomic: a reader sees the whole cache or none
        except OSError:  # another process saved it first
            shutil.rmtree(staging, ignore_errors=True)
    except OSError as exc:  # a read-only home: the arrays still serve this process
        log.warning("model cache %s not saved: %s", folder, exc)
    return built
