"""The answer stage on planted replicated landscapes: an effect is found, no effect is not, and
what cannot enter is listed with its reason."""

import numpy as np
import pytest
import xarray as xr
from scipy import stats

from basins.answer import answer_hypothesis, answer_markdown, weighted_spearman_fisher_z
from basins.stats import SUPPORTED, UNDECIDED_VERDICT


def _replicate(rng, n_minima, effect, *, n_members_total=2000, plateau=True, train_error=0.0):
    """Synthetic catalogue and flatness of one replicate: basin fractions from a Dirichlet draw,
    test errors falling with the log basin fraction by ``effect`` (plus noise), Hessian traces
    rising with test error by ``effect``."""
    fraction = rng.dirichlet(np.full(n_minima, 2.0))
    members = np.maximum(10, np.round(fraction * n_members_total)).astype(int)
    log_fraction = np.log(members / members.sum())
    test_error = 0.2 - effect * 0.02 * (log_fraction - log_fraction.mean()) + 0.01 * rng.standard_normal(n_minima)
    trace = np.exp(effect * 10 * (test_error - 0.2) + 0.3 * rng.standard_normal(n_minima))
    minimum = ("minimum", np.arange(n_minima))
    minima = xr.Dataset(
        {
            "n_members": ("minimum", members),
            "train_error": ("minimum", np.full(n_minima, train_error)),
            "test_error": ("minimum", test_error),
            "on_tolerance_plateau": ((), plateau),
        },
        coords={"minimum": minimum},
        attrs={"n_members_total": int(members.sum())},
    )
    return minima, xr.Dataset({"trace": ("minimum", trace)}, coords={"minimum": minimum})


def _family(effect, n_replicates=6, seed=0, **options):
    rng = np.random.default_rng(seed)
    replicates = {"planted": [(s, *_replicate(rng, 12, effect, **options)) for s in range(1, n_replicates + 1)]}
    return answer_hypothesis({"family": ["planted"]}, replicates, {"planted": 41})


def _row(answer, statistic):
    return answer.isel(row=int(np.flatnonzero(answer["statistic"].values == statistic)[0]))


def test_a_planted_effect_is_supported_in_every_statistic():
    answer = _family(effect=1.0)
    for statistic in ("basin_fraction_vs_test_error", "hessian_trace_vs_test_error", "hessian_trace_vs_basin_fraction"):
        row = _row(answer, statistic)
        assert row["verdict"].item() == SUPPORTED, statistic
        assert int(row["n_replicates"]) == 6 and int(row["n_minima"]) == 72
        assert float(row["low"]) <= float(row["estimate"]) <= float(row["high"])
    assert float(_row(answer, "basin_fraction_vs_test_error")["estimate"]) < -0.5


def test_no_effect_is_undecided():
    answer = _family(effect=0.0, seed=1)
    row = _row(answer, "basin_fraction_vs_test_error")
    assert row["verdict"].item() == UNDECIDED_VERDICT
    assert float(row["low"]) < 0 < float(row["high"])


def test_replicates_that_cannot_enter_are_listed_with_their_reason():
    rng = np.random.default_rng(2)
    replicates = {
        "planted": [
            (1, *_replicate(rng, 12, 1.0)),
            (2, *_replicate(rng, 12, 1.0, plateau=False)),
            (3, *_replicate(rng, 12, 1.0, train_error=0.1)),
        ]
    }
    answer = answer_hypothesis({"family": ["planted"]}, replicates, {"planted": 41}, fit_threshold=0.05)
    reasons = dict(zip(answer["excluded_seed"].values.tolist(), answer["excluded_reason"].values.tolist()))
    assert set(reasons) == {2, 3}
    assert "tolerance plateau" in reasons[2] and "0 fitting minima" in reasons[3]
    row = _row(answer, "basin_fraction_vs_test_error")
    assert int(row["n_replicates"]) == 1 and row["verdict"].item() == UNDECIDED_VERDICT
    assert "one replicate" in row["reason"].item()
    page = answer_markdown(answer)
    assert "planted, seed 2: the count of minima is not on a tolerance plateau" in page
    assert "| family | planted | 41 | basin_fraction_vs_test_error | < 0 |" in page


def test_the_member_weighted_correlation_with_equal_weights_is_spearmans():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=30), rng.normal(size=30)
    z, se = weighted_spearman_fisher_z(a, b, np.ones(30))
    assert np.tanh(z) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)
    assert se == pytest.approx(1.03 / np.sqrt(27))
    # Integer weights count a pair that many times: the same as repeating it.
    w = rng.integers(1, 4, size=30)
    z_weighted, se_weighted = weighted_spearman_fisher_z(a, b, w)
    repeated = stats.spearmanr(np.repeat(a, w), np.repeat(b, w)).statistic
    assert np.tanh(z_weighted) == pytest.approx(repeated, abs=1e-12)
    assert se_weighted > 1.03 / np.sqrt(w.sum() - 3)  # the effective size is below the member count
