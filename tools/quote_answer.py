"""Quote a run's answer in the README: its tables and lists, copied from ``results/answer.md``
between the README's two markers, never typed by hand.

    python tools/quote_answer.py                     # after a fresh run: rewrite the quote
    python tools/quote_answer.py --check             # exit 1 where the README's quote is not the run's
    python tools/quote_answer.py --results RUN/results --readme README.md
    python tools/quote_answer.py --results N401/results --label "config/shapes_width40.yaml's results/answer.md" \
        --rows good_minus_bad                        # that run's main table, its shape rows alone

The quote runs from the answer's main table to its end (the prose before the table, which says
how every column is computed, is the same in every run and stays in ``results/answer.md``); its
first line names the commit the answer stage ran at (``answer.nc``'s ``git_commit``), so the
README says which code wrote what it quotes. A README can hold several quotes, each between markers
of its own ``--label`` (default ``results/answer.md``; the README's second is
"config/shapes_width40.yaml's results/answer.md"); ``--rows`` quotes the main table's rows
whose statistic contains a text, and nothing after the table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_LABEL = "results/answer.md"
#: The first line of the quoted part: the header of the answer's main table.
TABLE_START = "| family | experiment |"


def markers(label: str = DEFAULT_LABEL) -> tuple[str, str]:
    """The lines that open and close the README's quote ``label``."""
    return (f"<!-- BEGIN {label}: written by tools/quote_answer.py from a fresh run; do not edit -->",
            f"<!-- END {label} -->")


def answer_quote(answer: str, commit: str, *, rows: str | None = None) -> str:
    """The part of an answer (``results/answer.md``'s text) the README quotes, with a first line
    naming the ``commit`` its answer stage ran at: from the main table to the end, or with
    ``rows`` the table's rows whose statistic contains it."""
    lines = answer.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(TABLE_START)]
    if not starts:
        raise ValueError(f"no table starting {TABLE_START!r} in the answer: is it a results/answer.md?")
    quoted = lines[starts[0]:]
    if rows is not None:
        header = quoted[0].split("|")
        column = [cell.strip() for cell in header].index("statistic")
        table = quoted[:next((i for i, line in enumerate(quoted) if not line.startswith("|")), len(quoted))]
        quoted = table[:2] + [line for line in table[2:] if rows in line.split("|")[column]]
        if len(quoted) == 2:
            raise ValueError(f"no row of the answer's main table has a statistic containing {rows!r}")
    what = "from its main table on" if rows is None else f"its main table's rows of {rows}"
    return f"*The run's `results/answer.md`, {what} (answer stage at commit `{commit}`):*\n\n" + "\n".join(
        quoted).rstrip()


def requoted(readme: str, quote: str, label: str = DEFAULT_LABEL) -> str:
    """``readme`` with the text between its markers of ``label`` replaced by ``quote``."""
    begin, end = markers(label)
    if readme.count(begin) != 1 or readme.count(end) != 1 or readme.index(begin) > readme.index(end):
        raise ValueError(f"the README needs one line {begin!r} and, after it, one line {end!r} around the quote")
    head, rest = readme.split(begin)
    _, tail = rest.split(end)
    return f"{head}{begin}\n{quote}\n{end}{tail}"


def run_commit(answer_nc: Path) -> str:
    """The commit the answer stage ran at, from its netCDF file's provenance."""
    import xarray as xr

    with xr.open_dataset(answer_nc) as answer:
        return str(answer.attrs.get("git_commit", "unknown"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=Path("results"), help="the run's results folder")
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    parser.add_argument("--label", default=DEFAULT_LABEL, help="which quote of the README (its markers' label)")
    parser.add_argument("--rows", help="quote only the main table's rows whose statistic contains this")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 where the quote is stale")
    args = parser.parse_args(argv)
    for path in (args.results / "answer.md", args.results / "answer.nc", args.readme):
        if not path.is_file():
            parser.error(f"{path} not found: run the study first (snakemake --cores all), or pass --results/--readme")
    quote = answer_quote((args.results / "answer.md").read_text(), run_commit(args.results / "answer.nc"),
                         rows=args.rows)
    readme = args.readme.read_text()
    updated = requoted(readme, quote, args.label)
    if args.check:
        if updated != readme:
            print(f"{args.readme}: its quote {args.label!r} is not {args.results / 'answer.md'}'s; rerun without "
                  "--check", file=sys.stderr)
            return 1
        print(f"{args.readme}: its quote {args.label!r} is {args.results / 'answer.md'}'s")
        return 0
    args.readme.write_text(updated)
    print(f"{args.readme}: quote {args.label!r} rewritten from {args.results / 'answer.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
