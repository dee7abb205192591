from _entry import start

from basins.io import add_provenance, read_dataset, write_dataset
from basins.summary import summarize_study

log = start(snakemake)
summary = summarize_study(
    list(snakemake.params.labels),
    [read_dataset(path) for path in snakemake.input.basins],
    [read_dataset(path) for path in snakemake.input.tentacles],
    [read_dataset(path) for path in snakemake.input.flatness],
    match_factor=snakemake.params.match_factor,
)
summary = add_provenance(
    summary,
    title="summary of the study",
    stage="summarize_study",
    stage_config={"experiments": list(snakemake.params.labels), "match_factor": snakemake.params.match_factor},
    inputs=(*snakemake.input.basins, *snakemake.input.tentacles, *snakemake.input.flatness),
)
write_dataset(summary, snakemake.output.netcdf)
by_experiment = [name for name, variable in summary.data_vars.items() if variable.dims == ("experiment",)]
summary[by_experiment].to_dataframe().to_csv(snakemake.output.csv, float_format="%.6g")
matched = [name for name, variable in summary.data_vars.items() if variable.dims == ("statistic",)]
summary[matched].to_dataframe().to_csv(snakemake.output.matched, float_format="%.6g")
log.info("wrote %s, %s and %s", snakemake.output.netcdf, snakemake.output.csv, snakemake.output.matched)
