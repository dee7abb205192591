import xarray as xr
from _entry import start

from basins.data import train_test_arrays
from basins.io import add_provenance, read_dataset, write_dataset
from basins.landscapes.architecture import Architecture
from basins.minima import deduplicate_minima, probe_inputs_for

log = start(snakemake)
training = xr.concat([read_dataset(path) for path in snakemake.input.shards], dim="member")
arch = Architecture.from_json(training.attrs["architecture"])
options = dict(snakemake.params.minima)
n_probe = options.pop("n_probe")
x_train, _, x_test, y_test = train_test_arrays(read_dataset(snakemake.input.dataset))
minima = deduplicate_minima(training, arch, probe_inputs_for(x_train, n_probe), test_set=(x_test, y_test), **options)
minima = add_provenance(
    minima.assign_attrs(architecture=training.attrs["architecture"]),
    title=f"minima of experiment {snakemake.wildcards.experiment}, seed {snakemake.wildcards.seed}",
    stage="deduplicate_minima",
    stage_config=snakemake.params.minima,
    seed=int(snakemake.wildcards.seed),
    inputs=(snakemake.input.dataset, *snakemake.input.shards),
)
write_dataset(minima, snakemake.output[0])
log.info(
    "%d members -> %d minima (criterion %s); count at tolerance factors %s: %s",
    training.sizes["member"], minima.sizes["minimum"], options["criterion"],
    minima["tolerance"].values, minima["n_minima_at_tolerance"].values,
)
