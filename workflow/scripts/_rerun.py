"""Shared by the entries that rerun an experiment's dynamics from points they choose."""

import logging

import numpy as np
import xarray as xr
from _entry import compute_options

from basins.data import train_test_arrays
from basins.io import read_dataset
from basins.labels import STATUS_VALUES
from basins.landscapes.architecture import Architecture
from basins.minima import assign_to_catalog, matching_options
from basins.rays import probe_rays, ray_radii
from basins.training import train_ensemble

log = logging.getLogger("basins.rerun")


class CatalogRerun:
    """The experiment's dynamics, data and minima catalogue, as the probing stages need them.

    Endpoints of re-runs are assigned by the catalogue's identity rule: against every
    catalogued member's endpoint (the training shards), not only the minima's representatives.
    """

    def __init__(self, snakemake):
        params = snakemake.params
        self.compute = compute_options(snakemake)
        self.seed = int(snakemake.wildcards.seed)
        self.minima = read_dataset(snakemake.input.minima)
        dataset = read_dataset(snakemake.input.dataset)
        self.data = train_test_arrays(dataset)
        self.data_seed = int(dataset.attrs["seed"])  # the draw of the training set
        self.arch = Architecture.from_json(self.minima.attrs["architecture"])
        self.matching, self.probes = matching_options(params.minima, self.data[0])
        self.train_options = dict(seed=self.seed, **self.compute, **params.training)
        self.budget_factors = list(params.budget_factors)
        shards = xr.concat([read_dataset(path) for path in snakemake.input.shards], dim="member").sortby("member")
        self.member = shards["member"].values
        self.initial_theta = shards["initial_theta"].values
        self.catalog_theta = shards["final_theta"].values
        self.catalog_loss = shards["loss"].values
        self.catalog_labels = self.minima["minimum_of_member"].sel(member=shards["member"]).values

    def run(self, starts, **overrides):
        """Final parameters, losses and statuses; runs that spend their budget are continued
        to larger ones (``budget_factors``) before they are left undecided. ``overrides``
        replace options of the experiment's training (a tighter ``grad_tol``)."""
        return self.run_counting_kicks(starts, **overrides)[:3]

    def run_counting_kicks(self, starts, **overrides):
        """:meth:`run`'s results and each run's kicks off a saddle (where a run stopped at a
        saddle, the kick's side, not the landscape alone, chose the minimum it went on to)."""
        result = train_ensemble(
            self.arch, *self.data, starts, np.arange(len(starts)), budget_factors=self.budget_factors,
            final_errors=False, **{**self.train_options, **overrides},
        )
        final_theta, loss, status = (result[name].values for name in ("final_theta", "loss", "status"))
        counts = dict(zip(("converged", "budget", "diverged", "saddle"), np.bincount(status, minlength=len(STATUS_VALUES))))
        log.info("%d starts: %s", len(starts), counts)
        kicks = result["n_escapes"].values if "n_escapes" in result else np.zeros(len(starts), dtype=np.int64)
        return final_theta, loss, status, kicks

    def assign(self, final_theta, loss):
        """Catalogue label of each endpoint by the identity rule (-1: not catalogued)."""
        return assign_to_catalog(
            final_theta, loss, self.catalog_theta, self.catalog_loss, self.arch, self.probes,
            catalog_labels=self.catalog_labels, **self.matching,
        )


def probe_configured_rays(centres, outcomes, rays, *, seed, minimum_ids, shell):
    """:func:`basins.rays.probe_rays` as a config's ``rays`` section sets it (:func:`basins.rays.ray_radii`;
    with ``radii_in_shells`` its radii are multiples of ``shell``, the initialization shell's distance)."""
    in_shells = rays["radii_in_shells"]
    if in_shells and not np.isfinite(shell) and len(centres):
        raise ValueError("rays.radii_in_shells: minima to probe but no shell distance (no member assigned)")
    # With no member assigned nothing is probed and the grid is never run: its radii stay bare numbers.
    unit = shell if in_shells and np.isfinite(shell) else 1.0
    result = probe_rays(
        centres,
        outcomes,
        radii=ray_radii(rays["smallest_radius"], rays["largest_radius"], rays["n_radii"],
                        farthest=rays.get("farthest_radius"), n_far_radii=rays["n_far_radii"], unit=unit),
        n_directions=rays["n_directions"],
        n_bisection=rays["n_bisection"],
        seed=seed,
        minimum_ids=minimum_ids,
    )
    result.attrs["radii_in_shells"] = int(in_shells)
    result.attrs["shell_distance"] = shell
    return result
