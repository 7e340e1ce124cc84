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
        if Path(source).is_dir():  # a folder that is there but not loadable: say why
            raise FileNotFoundError(f"{what}: cannot load {source}: {err}") from None
        entry = entry_for_source(str(checkpoint))
        local = hf_local_dir(str(checkpoint))
        hint = download_hint(entry) if entry else (
            f"fetch it into {local} (e.g. `hf download {checkpoint} --local-dir {local}`) "
            "or pass a local folder")
        raise FileNotFoundError(
            f"{what} checkpoint {str(checkpoint)!r} is not on this machine (looked in {local} "
            f"and the Hugging Face cache); {hint}") from None
