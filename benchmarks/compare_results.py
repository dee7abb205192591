"""Whether two runs of the study wrote the same results: every netCDF file variable by variable,
bit for bit (NaN equal to NaN; wall times left out), every Markdown file byte for byte.

    python benchmarks/compare_results.py RUN_A/results RUN_B/results
    python benchmarks/compare_results.py RUN_A/results RUN_B/results --rtol 1e-8 --atol 1e-12

Speed changes that claim "the same bits" are checked so (benchmarks/README.md, *The default
study end to end*). Changes that claim outputs equal to round-off take ``--rtol`` and
``--atol``: a floating variable that differs then passes where its largest difference is at most
``atol`` plus ``rtol`` times its largest magnitude (NaN where the other run has NaN; ``atol``
for quantities that are themselves round-off, such as a polished gradient norm); integer,
boolean and text variables, and the Markdown files, must still be the same. Exits 1 where a
file differs or is missing from the second run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import xarray as xr

from basins.io import differing_variables


def relative_differences(first: Path, second: Path, names: list[str], atol: float = 0.0) -> dict[str, float]:
    """Per variable of ``names``, its largest difference between two files, less ``atol``, over
    its largest magnitude (inf where they differ in shape, kind or NaN pattern, or a
    non-floating value differs); both files opened once."""
    with xr.open_dataset(first, engine="netcdf4") as a, xr.open_dataset(second, engine="netcdf4") as b:
        return {name: _relative_difference(a.variables.get(name), b.variables.get(name), atol) for name in names}


def _relative_difference(a, b, atol: float) -> float:
    if a is None or b is None:
        return np.inf
    x, y = a.values, b.values
    if x.shape != y.shape or x.dtype.kind != "f" or y.dtype.kind != "f" or not np.array_equal(np.isnan(x), np.isnan(y)):
        return np.inf
    finite = np.isfinite(x) & np.isfinite(y)
    if not np.array_equal(x[~finite], y[~finite], equal_nan=True):
        return np.inf
    if not finite.any():
        return 0.0
    scale = max(np.abs(x[finite]).max(), np.abs(y[finite]).max())
    excess = max(0.0, float(np.abs(x[finite] - y[finite]).max()) - atol)
    return excess / scale if excess > 0 else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("first", type=Path, help="one run's results/ folder")
    parser.add_argument("second", type=Path, help="the other run's results/ folder")
    parser.add_argument("--rtol", type=float, default=None,
                        help="floating variables may differ by this fraction of their largest magnitude")
    parser.add_argument("--atol", type=float, default=0.0, help="... and by this much besides (with --rtol)")
    args = parser.parse_args()
    files = sorted(path for path in args.first.rglob("*")
                   if path.suffix in (".nc", ".md") and "checkpoints" not in path.parts)
    different = within = 0
    largest = 0.0
    for path in files:
        other = args.second / path.relative_to(args.first)
        if not other.exists():
            print(f"missing from the second run: {path.relative_to(args.first)}")
        elif path.suffix == ".md":
            if path.read_bytes() == other.read_bytes():
                continue
            print(f"differs: {path.relative_to(args.first)}")
        elif names := differing_variables(path, other):
            if args.rtol is not None:
                sizes = relative_differences(path, other, names, args.atol)
                if max(sizes.values()) <= args.rtol:
                    within += 1
                    largest = max(largest, *sizes.values())
                    continue
                names = [f"{name} {size:.1e}" for name, size in sorted(sizes.items(), key=lambda item: -item[1])]
            print(f"differs: {path.relative_to(args.first)} ({', '.join(names[:8])})")
        else:
            continue
        different += 1
    same = len(files) - different - within
    print(f"{same} of {len(files)} files the same"
          + (f", {within} within rtol {args.rtol:g} (largest relative difference {largest:.1e})" if args.rtol else ""))
    return 1 if different else 0


if __name__ == "__main__":
    sys.exit(main())
