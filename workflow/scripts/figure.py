from _entry import start

from basins import figures
from basins.io import read_dataset

log = start(snakemake)
make_figure = getattr(figures, snakemake.rule)
title = f"{snakemake.wildcards.experiment}, seed {snakemake.wildcards.seed}"
fig = make_figure(read_dataset(snakemake.input.basins), title=title)
figures.save_figure(fig, snakemake.output.pdf, snakemake.output.png)
log.info("wrote %s", snakemake.output.png)
