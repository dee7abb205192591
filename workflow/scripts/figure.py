from _entry import start

from basins import figures
from basins.io import read_dataset

log = start(snakemake)
# A rule draws the figure function of its own name, unless it names another (params.figure).
make_figure = getattr(figures, snakemake.params.get("figure", snakemake.rule))
# The figure function takes the rule's named inputs (code excepted) as datasets; a named input
# holding several files (one per experiment of a group) as a list of them.
datasets = {
    name: read_dataset(paths) if isinstance(paths, str) else [read_dataset(path) for path in paths]
    for name, paths in snakemake.input.items()
    if name != "code"
}
wildcards = snakemake.wildcards
subject = wildcards.get("experiment") or wildcards.get("comparison") or wildcards.get("ring") or wildcards.get("group")
title = f"{subject}, seed {wildcards.seed}" if subject else snakemake.params.get("title", "all experiments and seeds")
fig = make_figure(**datasets, title=title)
figures.save_figure(fig, snakemake.output.pdf, snakemake.output.png)
log.info("wrote %s", snakemake.output.png)
