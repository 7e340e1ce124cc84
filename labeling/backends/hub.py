"""Finding a transformers checkpoint on this machine: a folder, or a hub id already fetched.

Nothing here downloads. A hub id resolves, in order, to the folder `python -m
labeling.weights` saves it to (``<weights dir>/hf/<org>--<name>``), then to the Hugging Face
cache (``local_files_only=True``). When neither has it, the error names the command that
fetches it and where it will go.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labeling.weights import download_hint, entry_for_source, hf_local_dir

log = logging.getLogger(__name__)


def resolve_source(checkpoint: str | Path) -> str:
    """A local folder for `checkpoint` if there is one, else the hub id itself (cache only)."""
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        return str(path)
    if str(checkpoint).startswith((".", "/", "~")):
        raise FileNotFoundError(f"checkpoint folder not found: {path}")
    local = hf_local_dir(str(checkpoint))
    if local.is_dir():
        return str(local)
    return str(checkpoint)


def load_pretrained(loader: Callable[..., Any], checkpoint: str | Path, what: str,
                    **kwargs: Any) -> Any:
    """`loader.from_pretrained(resolved, local_files_only=True)`, with a clear error when absent."""
    source = resolve_source(checkpoint)
    try:
        return loader.from_pretrained(source, local_files_only=True, **kwargs)
    except OSError as err:
        entry = entry_for_source(str(checkpoint))
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise FileNotFoundError(
            f"{what} checkpoint {str(checkpoint)!r} is not on this machine ({first}); "
            + download_hint(entry)) from None
