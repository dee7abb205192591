"""Whether two runs of the study wrote the same results: every netCDF file variable by variable,
bit for bit (NaN equal to NaN; wall times left out), every Markdown file byte for byte.

    python benchmarks/compare_results.py RUN_A/results RUN_B/results

Speed changes that claim "the same bits" are checked so (benchmarks/README.md, *The default
study end to end*). Exits 1 where a file differs or is missing from the second run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from basins.io import differing_variables


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("first", type=Path, help="one run's results/ folder")
    parser.add_argument("second", type=Path, help="the other run's results/ folder")
    args = parser.parse_args()
    files = sorted(path for path in args.first.rglob("*")
                   if path.suffix in (".nc", ".md") and "checkpoints" not in path.parts)
    different = 0
    for path in files:
        other = args.second / path.relative_to(args.first)
        if not other.exists():
            print(f"missing from the second run: {path.relative_to(args.first)}")
        elif path.suffix == ".md":
            if path.read_bytes() == other.read_bytes():
                continue
            print(f"differs: {path.relative_to(args.first)}")
        elif names := differing_variables(path, other):
            print(f"differs: {path.relative_to(args.first)} ({', '.join(names[:8])})")
        else:
            continue
        different += 1
    print(f"{len(files) - different} of {len(files)} files the same")
    return 1 if different else 0


if __name__ == "__main__":
    sys.exit(main())
