import importlib

from _entry import start

from basins import figures
from basins.io import read_dataset

log = start(snakemake)
# A rule draws the figure function of its own name, unless it names another (params.figure),
# from basins.figures or the figures module it names (params.module).
module = importlib.import_module(f"basins.{snakemake.params.get('module', 'figures')}")
make_figure = getattr(module, snakemake.params.get("figure", snakemake.rule))
# The figure function takes the rule's named inputs (code excepted) as datasets; a named input
# holding several files (one per experiment of a group) as a list of them.
datasets = {
    name: read_dataset(paths) if isinstance(paths, str) else [read_dataset(path) for path in paths]
    for name, paths in snakemake.input.items()
    if name != "code"
}
wildcards = snakemake.wildcards
subject = next(
    (wildcards.get(name) for name in ("experiment", "comparison", "protocols", "ring", "group", "jamming") if name in wildcards.keys()),
    None,
)
if subject and "seed" in wildcards.keys():
    title = f"{subject}, seed {wildcards.seed}"
else:
    title = subject or snakemake.params.get("title", "all experiments and seeds")
fig = make_figure(**datasets, title=title)
figures.save_figure(fig, snakemake.output.pdf, snakemake.output.png)
log.info("wrote %s", snakemake.output.png)
