from _entry import start

from basins.data import prepare_dataset
from basins.io import add_provenance, write_dataset

log = start(snakemake)
dataset = prepare_dataset(**snakemake.params.dataset)
dataset = add_provenance(
    dataset,
    title=f"data set of {' '.join(f'{name} {value}' for name, value in snakemake.wildcards.items())}",
    stage="prepare_dataset",
    stage_config=snakemake.params.dataset,
    seed=snakemake.params.dataset["seed"],
)
write_dataset(dataset, snakemake.output[0])
log.info("wrote %s: %s", snakemake.output[0], dict(dataset.sizes))
