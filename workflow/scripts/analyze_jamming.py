from _entry import start

from basins.io import add_provenance, read_dataset, write_dataset
from basins.jamming_analysis import analyze_jamming

log = start(snakemake)
runs = [read_dataset(path) for path in snakemake.input.runs]
analysis = analyze_jamming(runs, **snakemake.params.analysis)
analysis = add_provenance(
    analysis,
    title=f"jamming transition of sweep {snakemake.wildcards.jamming}",
    stage="analyze_jamming",
    stage_config=snakemake.params.analysis,
    inputs=tuple(snakemake.input.runs),
)
write_dataset(analysis, snakemake.output[0])
for depth in analysis["depth"].values:
    ratio = analysis.sel(depth=depth)
    at_depth = analysis.isel(network=analysis["network_depth"].values == depth)
    log.info(
        "depth %d: r* = P*/N = %.3g, 95 %% interval [%.3g, %.3g] (%d estimates, sd %.2g; %d without one), bracket "
        "of P* at most %.3g wide (relative); %d stuck, %d undecided runs",
        depth, ratio["transition_ratio_mean"], ratio["transition_ratio_low"], ratio["transition_ratio_high"],
        ratio["n_transitions"], ratio["transition_ratio_std"], ratio["n_transitions_missing"],
        at_depth["transition_resolution"].max(), at_depth["n_stuck"].sum(), at_depth["n_undecided"].sum(),
    )
    log.info(
        "depth %d, UNSAT runs with silenced points set apart: r* = %.3g, 95 %% interval [%.3g, %.3g]",
        depth, ratio["transition_ratio_silenced_apart_mean"], ratio["transition_ratio_silenced_apart_low"],
        ratio["transition_ratio_silenced_apart_high"],
    )
