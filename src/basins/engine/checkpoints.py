"""Checkpoints of the training engine: what a run is, and saving and loading its progress.

A checkpoint is resumed only by the run that wrote it. A run is named by four parts, stored
separately so that a discarded checkpoint can say why:

- ``run``: the landscape's name (``run_id``), the starting points, member ids and the dynamics
  settings (:func:`basins.engine.descent.descend` lists them);
- ``data``: a content hash of the arrays the objective reads (:func:`fingerprint_arrays`);
- ``code``: a hash of the package's source, every ``src/basins/**/*.py`` and ``*.c`` file
  (:func:`source_fingerprint`). Any edit to the package, even a comment, discards every
  checkpoint: a resumed run never mixes results of two versions of the code;
- ``torch``: torch's version.

An unreadable checkpoint (a truncated or corrupt file) is renamed aside and the run starts
over; checkpoints are written to a temporary file unique to the writing process, then renamed,
so two processes never write into one temporary file and a reader sees whole files only.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from basins.io import file_mode

log = logging.getLogger(__name__)

#: What each part of a run's fingerprint covers, for the log line of a discarded checkpoint.
PARTS = {
    "run": "run settings (landscape, starting points or dynamics)",
    "data": "training data",
    "code": "package source code (src/basins/**/*.py, *.c)",
    "torch": "torch version",
}


def fingerprint_arrays(*arrays) -> str:
    """A content hash of ``arrays``: dtype, shape and values."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


@functools.cache
def source_fingerprint(package: Path = Path(__file__).parents[1]) -> str:
    """A hash of every ``.py`` and ``.c`` file of the package, subpackages included (paths and
    bytes), computed once per process."""
    digest = hashlib.sha256()
    for path in sorted([*package.rglob("*.py"), *package.rglob("*.c")]):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def run_fingerprint(*run_parts, data: str = "") -> dict[str, str]:
    """The fingerprint of a run (see the module docstring): ``run_parts`` are its settings and
    starting points, ``data`` the hash of its data (:func:`fingerprint_arrays`)."""
    digest = hashlib.sha256()
    for part in run_parts:
        digest.update(part.tobytes() if isinstance(part, np.ndarray) else repr(part).encode())
    return {"run": digest.hexdigest(), "data": data, "code": source_fingerprint(), "torch": torch.__version__}


def save_checkpoint(path, fingerprint: dict, payload: dict) -> None:
    """Write ``payload`` with ``fingerprint`` to ``path`` atomically (a temporary file unique to
    this process in the same directory, then a rename), with the mode the umask gives."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    os.close(handle)
    try:
        torch.save({**payload, "fingerprint": fingerprint}, tmp)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path, fingerprint: dict) -> dict | None:
    """The payload saved at ``path`` by the run with this ``fingerprint``, else ``None``.

    A checkpoint of another run is left in place (the next save replaces it) and the log says
    which parts of the fingerprint differ; an unreadable one is renamed to
    ``<name>.corrupt-<timestamp>``.
    """
    if path is None or not Path(path).exists():
        return None
    path = Path(path)
    try:
        payload = torch.load(path, weights_only=False)
        if not isinstance(payload, dict) or "out" not in payload:
            raise ValueError("not a checkpoint of the training engine")
    except Exception as error:  # noqa: BLE001 (torch.load raises many kinds on a damaged file)
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
        os.replace(path, aside)
        log.warning("checkpoint %s is unreadable (%s: %s); moved to %s, starting over", path,
                    type(error).__name__, error, aside.name)
        return None
    stored = payload.get("fingerprint")
    if stored != fingerprint:
        log.warning("checkpoint %s discarded, starting over: %s", path, _differences(stored, fingerprint))
        return None
    return payload


def _differences(stored, fingerprint) -> str:
    if not isinstance(stored, dict):
        return "it was written by an older version of the engine"
    parts = []
    for name, meaning in PARTS.items():
        if stored.get(name) != fingerprint[name]:
            detail = f" ({stored.get(name)} -> {fingerprint[name]})" if name == "torch" else ""
            parts.append(f"{meaning}{detail}")
    return "its " + ", ".join(parts) + " differ from this run's"
