"""Shared by the entries that rerun an experiment's dynamics from points they choose."""

import logging

import numpy as np

from basins.data import train_test_arrays
from basins.io import read_dataset
from basins.minima import probe_inputs_for
from basins.networks import Architecture
from basins.rays import probe_rays
from basins.training import CONVERGED, train_ensemble

log = logging.getLogger("basins.rerun")


def matching_options(minima_options, x_train):
    """The keyword arguments of ``reached_minimum`` / ``assign_to_catalog`` and their probes."""
    matching = dict(minima_options)
    probes = probe_inputs_for(x_train, matching.pop("n_probe"))
    matching.pop("n_neighbors")  # a search setting of deduplication, not part of the criterion
    return matching, probes


class CatalogRerun:
    """The experiment's dynamics, data and minima catalog, as the probing stages need them."""

    def __init__(self, snakemake):
        params = snakemake.params
        self.seed = int(snakemake.wildcards.seed)
        self.minima = read_dataset(snakemake.input.minima)
        self.data = train_test_arrays(read_dataset(snakemake.input.dataset))
        self.arch = Architecture.from_json(self.minima.attrs["architecture"])
        self.matching, self.probes = matching_options(params.minima, self.data[0])
        self.train_options = dict(
            seed=self.seed, device=params.device, memory_budget_mb=params.memory_budget_mb, **params.training
        )

    def run(self, starts):
        """Final parameters, losses and whether each run converged."""
        result = train_ensemble(self.arch, *self.data, starts, np.arange(len(starts)), **self.train_options)
        converged = result["status"].values == CONVERGED
        log.info("%d starts: %d converged", len(starts), int(converged.sum()))
        return result["final_theta"].values, result["loss"].values, converged


def probe_configured_rays(centres, returns, rays, *, seed, minimum_ids):
    """:func:`basins.rays.probe_rays` as a config's ``rays`` section sets it (log-spaced radii)."""
    return probe_rays(
        centres,
        returns,
        radii=np.geomspace(rays["smallest_radius"], rays["largest_radius"], rays["n_radii"]),
        n_directions=rays["n_directions"],
        n_bisection=rays["n_bisection"],
        seed=seed,
        minimum_ids=minimum_ids,
    )
