# Basins of attraction of neural-network minima: the study's table of contents.
# Stages: prepare_dataset -> train_ensemble (sharded) -> deduplicate_minima -> analyze_basins
# -> probe_rays -> measure_tentacles, slice_basins, measure_flatness; estimate_basin_sizes; compare_dynamics;
# compare_protocols (flatness of the minima each training protocol reaches);
# summarize_study -> figures; enumerate_local_entropy; connect_minima (transition states,
# disconnectivity graphs); prepare_jamming_data -> sweep_jamming -> analyze_jamming (the
# under- to over-parametrized transition). Each stage is one rule file in workflow/rules and one module in src/basins.
# Calibration: relax_ring -> classify_twisted_states -> analyze_ring_basins -> probe_ring_rays
# -> measure_ring_tentacles on Kuramoto rings (workflow/rules/oscillators.smk).


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/datasets.smk"
include: "workflow/rules/training.smk"
include: "workflow/rules/minima.smk"
include: "workflow/rules/basins.smk"
include: "workflow/rules/rays.smk"
include: "workflow/rules/tentacles.smk"
include: "workflow/rules/basin_sizes.smk"
include: "workflow/rules/slices.smk"
include: "workflow/rules/flatness.smk"
include: "workflow/rules/connectivity.smk"
include: "workflow/rules/local_entropy.smk"
include: "workflow/rules/jamming.smk"
include: "workflow/rules/comparison.smk"
include: "workflow/rules/protocols.smk"
include: "workflow/rules/summary.smk"
include: "workflow/rules/answer.smk"
include: "workflow/rules/oscillators.smk"
include: "workflow/rules/figures.smk"


rule all:
    default_target: True
    input:
        all_figures(),
    localrule: True
