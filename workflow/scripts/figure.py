import importlib

import matplotlib.pyplot as plt
import xarray as xr
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
# Slices of an empty catalogue have no plane: the figure says so (basins.figures.figure_basin_slices
# cannot draw zero panels; this stop-gap goes once it draws an empty panel as its neighbours do).
if any(isinstance(ds, xr.Dataset) and ds.sizes.get("plane") == 0 for ds in datasets.values()):
    fig, ax = plt.subplots(figsize=(4, 2))
    ax.text(0.5, 0.5, "no minimum in the catalogue: no plane to slice", ha="center", va="center")
    ax.set_axis_off()
    ax.set_title(title, fontsize=8)
else:
    fig = make_figure(**datasets, title=title)
figures.save_figure(fig, snakemake.output.pdf, snakemake.output.png)
log.info("wrote %s", snakemake.output.png)
