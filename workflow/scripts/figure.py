from _entry import start

from basins import figures
from basins.io import read_dataset

log = start(snakemake)
make_figure = getattr(figures, snakemake.rule)
# The figure function takes the rule's named inputs (code excepted) as datasets.
datasets = {name: read_dataset(path) for name, path in snakemake.input.items() if name != "code"}
subject = snakemake.wildcards.get("experiment") or snakemake.wildcards.get("comparison")
title = f"{subject}, seed {snakemake.wildcards.seed}" if subject else "all experiments and seeds"
fig = make_figure(**datasets, title=title)
figures.save_figure(fig, snakemake.output.pdf, snakemake.output.png)
log.info("wrote %s", snakemake.output.png)
