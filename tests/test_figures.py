import numpy as np
import pytest
from PIL import Image

from basins import figures
from basins.basin_geometry import analyze_basins

FIGURES = [figures.figure_basin_sizes, figures.figure_basin_vs_test_error, figures.figure_travel_distance]


def basins_dataset(n_minima):
    rng = np.random.default_rng(0)
    labels = rng.integers(-1, n_minima, size=200) if n_minima else np.full(200, -1)
    start = rng.normal(size=(200, 5))
    return analyze_basins(labels, start, start + rng.normal(size=(200, 5)), rng.uniform(size=n_minima),
                          rng.uniform(size=n_minima))


@pytest.mark.parametrize("make_figure", FIGURES)
@pytest.mark.parametrize("n_minima", [0, 6])
def test_figures_render_to_stable_pdf_and_png(make_figure, n_minima, tmp_path):
    paths = []
    for attempt in range(2):
        pdf, png = tmp_path / f"{attempt}.pdf", tmp_path / f"{attempt}.png"
        figures.save_figure(make_figure(basins_dataset(n_minima), title="test"), pdf, png)
        paths.append((pdf, png))
    (pdf0, png0), (pdf1, png1) = paths
    assert pdf0.read_bytes() == pdf1.read_bytes() and png0.read_bytes() == png1.read_bytes()
    width, height = Image.open(png0).size
    assert width > 300 and height > 200
