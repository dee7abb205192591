from _entry import start

from basins.io import add_provenance, read_dataset, write_dataset
from basins.ring_calibration import calibration_markdown, ring_calibration

log = start(snakemake)
calibration = ring_calibration(
    list(snakemake.params.labels),
    [read_dataset(path) for path in snakemake.input.basins],
    [read_dataset(path) for path in snakemake.input.tentacles],
    list(snakemake.params.basin_size_labels),
    [read_dataset(path) for path in snakemake.input.basin_sizes],
)
calibration = add_provenance(
    calibration,
    title="calibration on Kuramoto rings",
    stage="summarize_rings",
    stage_config={"rings": list(snakemake.params.labels)},
    inputs=(*snakemake.input.basins, *snakemake.input.tentacles, *snakemake.input.basin_sizes),
)
write_dataset(calibration, snakemake.output.netcdf)
with open(snakemake.output.markdown, "w") as table:
    table.write(calibration_markdown(calibration))
log.info("wrote %s and %s", snakemake.output.netcdf, snakemake.output.markdown)
