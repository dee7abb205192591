import json

from _entry import start

from basins.answer import Replicate, answer_hypothesis, answer_markdown, answer_sensitivity
from basins.io import add_provenance, read_dataset, write_dataset
from basins.data import TEST
from basins.rays import Probing

log = start(snakemake)
options = dict(snakemake.params.answer)
families = options.pop("families")
replicates, n_params = {}, {}
# Shape statistics exist for the replicates whose basins were probed, basin sizes by the walk for
# those whose basins were walked, each in the order of the rule's list.
probed, walked = iter(snakemake.input.tentacles), iter(snakemake.input.basin_sizes)
rays = iter(snakemake.input.rays)  # how each probed replicate's minima were chosen
for (experiment, seed), minima_path, flatness_path, dataset_path in zip(
    snakemake.params.replicates, snakemake.input.minima, snakemake.input.flatness, snakemake.input.datasets
):
    minima = read_dataset(minima_path)
    n_test = int((read_dataset(dataset_path)["split"].values == TEST).sum())
    experiment_config = snakemake.config["experiments"][experiment]
    tentacles = read_dataset(next(probed)) if experiment_config["basin_geometry"] else None
    probing = (Probing.from_stage_config(json.loads(read_dataset(next(rays)).attrs["stage_config"]))
               if experiment_config["basin_geometry"] else None)
    basin_sizes = read_dataset(next(walked)) if "basin_sizes" in experiment_config else None
    replicates.setdefault(experiment, []).append(
        Replicate(int(seed), minima, read_dataset(flatness_path), n_test, tentacles,
                  l2=float(experiment_config["training"].get("l2", 0.0)), basin_sizes=basin_sizes, probing=probing)
    )
    n_params[experiment] = minima.sizes["param"]
data_redrawn = {name: snakemake.config["experiments"][name]["dataset"]["seed"] == "per_seed" for name in replicates}
sensitivity = options.pop("sensitivity")
log.info("answer over %d replicates of %d experiments (each statistic redrawn with its measurement noise)",
         sum(map(len, replicates.values())), len(replicates))
redrawn_choices = {}  # the answer and its settings of the thresholds share the pairs' redraws
answer = answer_hypothesis(families, replicates, n_params, data_redrawn=data_redrawn,
                           redrawn_choices=redrawn_choices, **options)
if sensitivity["fit_threshold"] and sensitivity["min_members"]:
    others = {key: value for key, value in options.items() if key not in ("fit_threshold", "min_members")}
    answer = answer.merge(answer_sensitivity(
        families, replicates, n_params, data_redrawn=data_redrawn, fit_thresholds=sensitivity["fit_threshold"],
        min_members_options=sensitivity["min_members"], redrawn_choices=redrawn_choices, **others,
    ))
answer = add_provenance(
    answer,
    title="the study's answer: basin size, flatness and generalization, pooled over replicates",
    stage="answer_hypothesis",
    stage_config=snakemake.params.answer,
    inputs=(*snakemake.input.minima, *snakemake.input.flatness, *snakemake.input.datasets, *snakemake.input.tentacles,
            *snakemake.input.rays, *snakemake.input.basin_sizes),
)
write_dataset(answer, snakemake.output.netcdf)
with open(snakemake.output.markdown, "w") as markdown:
    markdown.write(answer_markdown(answer))
log.info("verdicts: %s", dict(zip(answer["statistic"].values, answer["verdict"].values)))
