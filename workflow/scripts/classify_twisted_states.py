import xarray as xr
from _entry import start

from basins.io import add_provenance, read_dataset, write_dataset
from basins.oscillators import KuramotoRing, classify_twisted_states

log = start(snakemake)
relaxation = xr.concat([read_dataset(path) for path in snakemake.input.shards], dim="member")
ring = KuramotoRing.from_json(relaxation.attrs["ring"])
minima = classify_twisted_states(
    relaxation["final_theta"].values, relaxation["status"].values, ring, **snakemake.params.twisted_states
).assign_coords(member=relaxation["member"])
minima = add_provenance(
    minima,
    title=f"twisted states of ring {snakemake.wildcards.ring}, seed {snakemake.wildcards.seed}",
    stage="classify_twisted_states",
    stage_config=snakemake.params.twisted_states,
    seed=int(snakemake.wildcards.seed),
    inputs=tuple(snakemake.input.shards),
)
write_dataset(minima, snakemake.output[0])
log.info("winding numbers by basin size: %s", minima["winding_number"].values.tolist())
