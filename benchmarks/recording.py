"""How every benchmark records its table: this machine, then one row per measurement (JSON)."""

from __future__ import annotations

import json
import platform
from pathlib import Path


def write_table(path: str | Path, rows: list[dict], machine: dict) -> None:
    """Write ``rows`` to ``path`` under a ``machine`` block that starts with this host's
    platform and processor, followed by what the benchmark adds (threads, device, settings)."""
    block = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(), **machine}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": block, "rows": rows}, indent=1) + "\n")
    print(f"wrote {path}")
