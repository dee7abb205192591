import xarray as xr
from _entry import start

from basins.basin_geometry import analyze_basins
from basins.io import add_provenance, read_dataset, write_dataset
from basins.oscillators import (
    DISTANCE_CONVENTION,
    KuramotoRing,
    attractor_distance,
    distance_to_twisted_state,
    fit_winding_distribution,
    winding_number,
)

log = start(snakemake)
minima = read_dataset(snakemake.input.minima)
relaxation = xr.concat([read_dataset(path) for path in snakemake.input.shards], dim="member")
ring = KuramotoRing.from_json(minima.attrs["ring"])
final = relaxation["final_theta"].values
basins = analyze_basins(
    minima["minimum_of_member"].values,
    relaxation["initial_theta"].values,
    relaxation["final_theta"].values,
    n_minima=minima.sizes["minimum"],
    distance=attractor_distance,
    # start distances are to the exact twisted state, travel distances to where the run stopped
    end_offset=distance_to_twisted_state(final, winding_number(final)),
    **snakemake.params.basins,
).assign_coords(member=relaxation["member"])
fit = fit_winding_distribution(
    minima["winding_number"].values, minima["n_members"].values, ring.stable_winding_numbers()
)
basins = xr.merge([basins.assign(winding_number=minima["winding_number"]), fit], combine_attrs="no_conflicts")
basins = add_provenance(
    basins.assign_attrs(ring=minima.attrs["ring"], distance_convention=DISTANCE_CONVENTION),
    title=f"basins of ring {snakemake.wildcards.ring}, seed {snakemake.wildcards.seed}",
    stage="analyze_ring_basins",
    stage_config=snakemake.params.basins,
    seed=int(snakemake.wildcards.seed),
    inputs=(snakemake.input.minima, *snakemake.input.shards),
)
write_dataset(basins, snakemake.output[0])
log.info(
    "p(q): %s; fitted rates (gaussian, exponential) %s, chi-square p-values %s",
    dict(zip(basins["winding_number"].values.tolist(), basins["basin_fraction"].values.round(4).tolist())),
    fit["rate"].values, fit["p_value"].values,
)
