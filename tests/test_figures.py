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


def shape_datasets():
    """Rays, basins and measure_tentacles output of the planted ball and ring (small settings)."""
    from basins.labels import LEFT, RETURNED
    from basins.landscapes.planted import ball_and_ring
    from basins.rays import probe_rays
    from basins.tentacles import measure_tentacles

    landscape = ball_and_ring(2)
    starts = landscape.sample_starts(200, seed=0)
    label = landscape.basin_of(starts)
    basins = analyze_basins(label, starts, landscape.minima[label], np.zeros(4), np.array([0.1, 0.3, 0.2, 0.4]))

    def outcomes(points, targets):
        return np.where(landscape.basin_of(points) == targets, RETURNED, LEFT).astype(np.int8)

    rows = np.array([0, 1, 3])
    rays = probe_rays(landscape.minima[rows], lambda points, k: outcomes(points, rows[k]),
                      radii=np.geomspace(0.05, 4, 10), n_directions=16, n_bisection=1, seed=0, minimum_ids=rows)
    tentacles = measure_tentacles(rays, basins["basin_fraction"].values, basins["start_distance"].values, label,
                                  starts, landscape.minima[label], outcomes, n_star_members=10, n_segment=6,
                                  n_thickness_members=5, n_thickness_directions=6, n_bootstrap=100)
    return rays, basins, tentacles


@pytest.mark.parametrize("name", ["basin_shape", "return_probability", "tentacles"])
def test_shape_figures_render(name, tmp_path):
    rays, basins, tentacles = shape_datasets()
    inputs = {"basin_shape": dict(tentacles=tentacles, basins=basins),
              "return_probability": dict(rays=rays, basins=basins, tentacles=tentacles),
              "tentacles": dict(tentacles=tentacles, basins=basins, rays=rays)}[name]
    figures.save_figure(getattr(figures, f"figure_{name}")(**inputs, title="test"), tmp_path / "a.pdf",
                        tmp_path / "a.png")
    width, height = Image.open(tmp_path / "a.png").size
    assert width > 300 and height > 200


def test_dynamics_comparison_draws_fractions_and_paired_changes(tmp_path):
    from basins.comparison import compare_dynamics

    rng = np.random.default_rng(0)
    names = ["net", "net_gd", "net_entropy", "net_langevin"]
    labels = rng.integers(-1, 3, size=(len(names), 40))
    comparison = compare_dynamics(labels, [np.arange(3)] * len(names), names, n_reference_minima=3)
    figure = figures.figure_dynamics_comparison(comparison, title="test")
    heatmap = figure.axes[1]
    assert [t.get_text() for t in heatmap.get_xticklabels()] == ["reference", "gd", "entropy", "langevin"]
    change = comparison.sel(experiment="net_entropy", baseline="net_langevin", minimum=0)
    assert f"{float(change['basin_fraction_change']):+.2f}" in [t.get_text().split("\n")[0] for t in heatmap.texts]
    figures.save_figure(figure, tmp_path / "c.pdf", tmp_path / "c.png")
    assert figures.dynamics_names(["x_adam", "x_anneal"]) == ["adam", "anneal"]
