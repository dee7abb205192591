"""tools/quote_answer.py: the README's quote of a run's answer is copied, never typed."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

_SPEC = importlib.util.spec_from_file_location("quote_answer", Path(__file__).parents[1] / "tools" / "quote_answer.py")
quote_answer = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(quote_answer)

ANSWER = """# The study's answer

How every column is computed.

| family | experiment | N | statistic |
|---|---|---|---|
| digits | d | 41 | basin_fraction_vs_test_error |
| digits | d | 41 | good_minus_bad_reach |

Size corrections:

Replicates left out:

- d, seed 2: 0 fitting minima
"""


BEGIN, END = quote_answer.markers()


def _readme(quoted: str) -> str:
    return f"# Project\n\nBefore.\n\n{BEGIN}\n{quoted}\n{END}\n\nAfter.\n"


def test_the_quote_runs_from_the_main_table_to_the_end_and_names_the_commit():
    quote = quote_answer.answer_quote(ANSWER, "abc123")
    assert "How every column is computed" not in quote
    assert quote.splitlines()[2].startswith(quote_answer.TABLE_START)
    assert quote.endswith("- d, seed 2: 0 fitting minima") and "`abc123`" in quote.splitlines()[0]
    with pytest.raises(ValueError, match="no table"):
        quote_answer.answer_quote("# no table here\n", "abc123")


def test_rows_quote_the_tables_rows_of_one_kind_and_nothing_after_it():
    quote = quote_answer.answer_quote(ANSWER, "abc123", rows="good_minus_bad").splitlines()
    assert quote[2].startswith(quote_answer.TABLE_START) and quote[3].startswith("|---")
    assert quote[4:] == ["| digits | d | 41 | good_minus_bad_reach |"]
    with pytest.raises(ValueError, match="no row"):
        quote_answer.answer_quote(ANSWER, "abc123", rows="digits")  # a family, not a statistic


def test_only_the_text_between_the_markers_is_replaced_and_twice_is_once():
    readme = _readme("an old quote, typed by hand")
    quote = quote_answer.answer_quote(ANSWER, "abc123")
    once = quote_answer.requoted(readme, quote)
    assert "typed by hand" not in once and quote in once
    assert once.startswith("# Project\n\nBefore.\n\n") and once.endswith(f"{END}\n\nAfter.\n")
    assert quote_answer.requoted(once, quote) == once
    for broken in (readme.replace(END, ""), readme + BEGIN, f"{END}\n{BEGIN}\n"):
        with pytest.raises(ValueError, match="one line"):
            quote_answer.requoted(broken, quote)
    other = "\n".join(quote_answer.markers("another run's answer"))
    both = quote_answer.requoted(once + other, "its quote", "another run's answer")
    assert both.startswith(once) and both.endswith("its quote\n<!-- END another run's answer -->")


def test_check_fails_on_a_stale_quote_and_passes_once_it_is_rewritten(tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    (results / "answer.md").write_text(ANSWER)
    xr.Dataset(attrs={"git_commit": "def456"}).to_netcdf(results / "answer.nc")
    readme = tmp_path / "README.md"
    readme.write_text(_readme("stale"))
    arguments = ["--results", str(results), "--readme", str(readme)]
    assert quote_answer.main(arguments + ["--check"]) == 1
    assert "stale" in readme.read_text()  # --check changes nothing
    assert quote_answer.main(arguments) == 0
    assert "`def456`" in readme.read_text() and "stale" not in readme.read_text()
    assert quote_answer.main(arguments + ["--check"]) == 0
    with pytest.raises(SystemExit):
        quote_answer.main(["--results", str(tmp_path / "missing"), "--readme", str(readme)])
    assert "run the study first" in capsys.readouterr().err


def test_the_stages_own_answer_is_quoted_whole_from_its_table_on():
    """The tool reads the page the answer stage writes (basins.answer.answer_markdown), not a
    copy of its format: a change to the table's header would fail here."""
    from test_answer import N_TEST, _replicate

    from basins.answer import Replicate, answer_hypothesis, answer_markdown

    rng = np.random.default_rng(3)
    replicates = {"planted": [Replicate(seed, *_replicate(rng, 12, 1.0), N_TEST) for seed in range(1, 4)]}
    page = answer_markdown(answer_hypothesis({"family": ["planted"]}, replicates, {"planted": 41}))
    quote = quote_answer.answer_quote(page, "abc123")
    table = page[page.index(quote_answer.TABLE_START):].rstrip()
    assert quote.endswith(table) and "basin_fraction_vs_test_error" in table
    assert "| planted |" in quote_answer.answer_quote(page, "abc123", rows="hessian_trace")
