from _entry import start

from basins.io import add_provenance, write_dataset
from basins.local_entropy import enumerate_local_entropy

log = start(snakemake)
options = dict(snakemake.params.local_entropy)
result = enumerate_local_entropy(**options)
result = add_provenance(
    result,
    title=f"local entropy of binary-perceptron solutions, N = {options['n_weights']}",
    stage="enumerate_local_entropy",
    stage_config=options,
    seed=options["seed"],
)
write_dataset(result, snakemake.output[0])
log.info("solutions per (alpha, sample): %s", result["n_solutions"].values.tolist())
