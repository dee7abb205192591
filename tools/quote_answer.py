"""Quote a run's answer in the README: its tables and lists, copied from ``results/answer.md``
between the README's two markers, never typed by hand.

    python tools/quote_answer.py                     # after a fresh run: rewrite the quote
    python tools/quote_answer.py --check             # exit 1 where the README's quote is not the run's
    python tools/quote_answer.py --results RUN/results --readme README.md

The quote runs from the answer's main table to its end (the prose before the table, which says
how every column is computed, is the same in every run and stays in ``results/answer.md``); its
first line names the commit the answer stage ran at (``answer.nc``'s ``git_commit``), so the
README says which code wrote what it quotes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

BEGIN = "<!-- BEGIN results/answer.md: written by tools/quote_answer.py from a fresh run; do not edit -->"
END = "<!-- END results/answer.md -->"
#: The first line of the quoted part: the header of the answer's main table.
TABLE_START = "| family | experiment |"


def answer_quote(answer: str, commit: str) -> str:
    """The part of an answer (``results/answer.md``'s text) the README quotes, with a first line
    naming the ``commit`` its answer stage ran at."""
    lines = answer.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(TABLE_START)]
    if not starts:
        raise ValueError(f"no table starting {TABLE_START!r} in the answer: is it a results/answer.md?")
    quoted = "\n".join(lines[starts[0]:]).rstrip()
    return f"*The run's `results/answer.md` from its main table on (answer stage at commit `{commit}`):*\n\n{quoted}"


def requoted(readme: str, quote: str) -> str:
    """``readme`` with the text between its :data:`BEGIN` and :data:`END` markers replaced by
    ``quote``."""
    if readme.count(BEGIN) != 1 or readme.count(END) != 1 or readme.index(BEGIN) > readme.index(END):
        raise ValueError(f"the README needs one line {BEGIN!r} and, after it, one line {END!r} around the quote")
    head, rest = readme.split(BEGIN)
    _, tail = rest.split(END)
    return f"{head}{BEGIN}\n{quote}\n{END}{tail}"


def run_commit(answer_nc: Path) -> str:
    """The commit the answer stage ran at, from its netCDF file's provenance."""
    import xarray as xr

    with xr.open_dataset(answer_nc) as answer:
        return str(answer.attrs.get("git_commit", "unknown"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=Path("results"), help="the run's results folder")
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 where the quote is stale")
    args = parser.parse_args(argv)
    for path in (args.results / "answer.md", args.results / "answer.nc", args.readme):
        if not path.is_file():
            parser.error(f"{path} not found: run the study first (snakemake --cores all), or pass --results/--readme")
    quote = answer_quote((args.results / "answer.md").read_text(), run_commit(args.results / "answer.nc"))
    readme = args.readme.read_text()
    updated = requoted(readme, quote)
    if args.check:
        if updated != readme:
            print(f"{args.readme}: its quote is not {args.results / 'answer.md'}; rerun without --check", file=sys.stderr)
            return 1
        print(f"{args.readme}: quotes {args.results / 'answer.md'} as it is")
        return 0
    args.readme.write_text(updated)
    print(f"{args.readme}: quote rewritten from {args.results / 'answer.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
