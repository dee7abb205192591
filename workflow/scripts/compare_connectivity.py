from _entry import start

from basins.connectivity_comparison import compare_connectivity
from basins.io import add_provenance, read_dataset, write_dataset

log = start(snakemake)
params = snakemake.params
graphs = {experiment: {} for experiment in params.experiments}
for path in snakemake.input.graphs:
    graph = read_dataset(path)
    graphs[graph.attrs["experiment"]][int(graph.attrs["seed"])] = graph
comparison = compare_connectivity(graphs, alpha=params.alpha)
comparison = add_provenance(
    comparison.assign_attrs(group=snakemake.wildcards.group),
    title=f"disconnectivity graphs of group {snakemake.wildcards.group} compared over seeds",
    stage="compare_connectivity",
    stage_config={"experiments": list(params.experiments), "alpha": params.alpha},
    inputs=list(snakemake.input.graphs),
)
write_dataset(comparison, snakemake.output[0])
for pair in comparison["pair"].values:
    row = comparison.sel(pair=pair, statistic="n_minima")
    log.info("%s vs %s: distinct minima %s, %s (p = %.3g)", row["first"].item(), row["second"].item(),
             row["difference"].item(), row["verdict"].item(), row["p_value"].item())
