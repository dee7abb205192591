import importlib

from _entry import start

from basins import figures
from basins.io import read_dataset

log = start(snakemake)
wildcards = snakemake.wildcards
subject = next(
    (wildcards.get(name) for name in ("experiment", "comparison", "protocols", "ring", "group", "jamming") if name in wildcards.keys()),
    None,
)
# Each named input (code excepted) is a dataset, or a list of them where it holds several files
# (one per experiment of a group); read once, whichever of the job's figures take it.
datasets = {
    name: read_dataset(paths) if isinstance(paths, str) else [read_dataset(path) for path in paths]
    for name, paths in snakemake.input.items()
    if name != "code"
}
# The job draws each figure of params.figures: the figure function of its own name, unless it
# names another (`figure`), from basins.figures or the figures module it names (`module`), on
# the inputs it lists.
for name, drawn in snakemake.params.figures.items():
    module = importlib.import_module(f"basins.{drawn.get('module', 'figures')}")
    make_figure = getattr(module, drawn.get("figure", f"figure_{name}"))
    if subject and "seed" in wildcards.keys():
        title = f"{subject}, seed {wildcards.seed}"
    else:
        title = subject or drawn.get("title", "all experiments and seeds")
    fig = make_figure(**{key: datasets[key] for key in drawn["inputs"]}, title=title)
    figures.save_figure(fig, snakemake.output[f"{name}_pdf"], snakemake.output[f"{name}_png"])
    log.info("wrote %s", snakemake.output[f"{name}_png"])
