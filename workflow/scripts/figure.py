from _entry import start

from basins import figures
from basins.io import read_dataset

log = start(snakemake)
# A rule draws the figure function of its own name, unless it names another (params.figure).
make_figure = getattr(figures, snakemake.params.get("figure", snakemake.rule))
# The figure function takes the rule's named inputs (code excepted) as datasets.
datasets = {name: read_dataset(path) for name, path in snakemake.input.items() if name != "code"}
wildcards = snakemake.wildcards
subject = wildcards.get("experiment") or wildcards.get("comparison") or wildcards.get("ring")
title = f"{subject}, seed {wildcards.seed}" if subject else snakemake.params.get("title", "all experiments and seeds")
fig = make_figure(**datasets, title=title)
figures.save_figure(fig, snakemake.output.pdf, snakemake.output.png)
log.info("wrote %s", snakemake.output.png)
