import xarray as xr
from _entry import compute_options, start

from basins.io import add_provenance, read_dataset, write_dataset
from basins.oscillators import KuramotoRing
from basins.ring_reruns import nearest_twisted_images, ring_outcomes
from basins.tentacles import measure_tentacles

log = start(snakemake)
compute = compute_options(snakemake)
params, seed = snakemake.params, int(snakemake.wildcards.seed)
minima = read_dataset(snakemake.input.minima)
basins = read_dataset(snakemake.input.basins)
rays = read_dataset(snakemake.input.rays)
relaxation = xr.concat([read_dataset(path) for path in snakemake.input.shards], dim="member")
if not (relaxation["member"].values == basins["member"].values).all():
    raise ValueError("the basins file and the relaxation shards list different members: re-make analyze_ring_basins")
ring = KuramotoRing.from_json(minima.attrs["ring"])
winding = minima["winding_number"].values
labels = basins["minimum_of_member"].values
# Segments run from the nearest point of the member's twisted-state circle to its start,
# unwrapped about it (the shortest way on the torus); unassigned rows are not read.
images, starts = nearest_twisted_images(relaxation["initial_theta"].values, winding[labels.clip(0)])
outcomes = ring_outcomes(ring, winding, tolerance=params.twisted_states["tolerance"], relaxation=params.relaxation,
                         budget_factors=params.budget_factors, seed=seed, **compute)
tentacles = measure_tentacles(
    rays,
    basins["basin_fraction"].values,
    basins["start_distance"].values,
    labels,
    starts,
    images,
    outcomes,
    seed=seed,
    **params.tentacles,
)
tentacles = add_provenance(
    tentacles.assign_coords(member=("member", basins["member"].values[tentacles["member"].values],
                                    tentacles["member"].attrs)).assign(
        winding_number=("minimum", winding[tentacles["minimum"].values], minima["winding_number"].attrs)),
    title=f"basin shape of ring {snakemake.wildcards.ring}, seed {seed}",
    stage=snakemake.rule,
    stage_config={"tentacles": dict(params.tentacles), "relaxation": params.relaxation,
                  "twisted_states": params.twisted_states, "budget_factors": list(params.budget_factors)},
    seed=seed,
    device=compute["device"],
    inputs=(snakemake.input.minima, snakemake.input.basins, snakemake.input.rays, *snakemake.input.shards),
)
write_dataset(tentacles, snakemake.output[0])
log.info("q = %s: reach %s, leaving fraction %s, thickness ratio %s, far p %s vs basin fraction %s",
         tentacles["winding_number"].values, tentacles["reach"].values, tentacles["leaving_fraction"].values,
         tentacles["median_thickness_ratio"].values, tentacles["far_return_probability"].values,
         tentacles["basin_fraction"].values)
