"""The workflow as a user drives it: lint, formatting, dry runs, bad configs, a tiny study."""

import shutil
import subprocess

import numpy as np
import pytest
import xarray as xr
import yaml
from PIL import Image

from workflow_runner import BIN, ROOT, snakemake

from basins.io import check_dataset, read_dataset
from basins.labels import PHASE_VALUES, SAT, STUCK, UNSAT

STAGES = (
    "prepare_dataset",
    "train_ensemble",
    "deduplicate_minima",
    "analyze_basins",
    "probe_rays",
    "measure_tentacles",
    "slice_basins",
    "measure_flatness",
    "compare_dynamics",
    "compare_protocols",
    "summarize_study",
    "figures_basins",
    "figures_basin_geometry",
    "figure_basin_slices",
    "figure_dynamics_comparison",
    "figure_protocols",
    "figure_summary",
    "enumerate_local_entropy",
    "figure_local_entropy",
    "connect_minima",
    "figures_connectivity",
    "compare_connectivity",
    "figure_connectivity_comparison",
    "prepare_jamming_data",
    "sweep_jamming",
    "analyze_jamming",
    "figures_jamming",
    "figure_jamming_cover",
)
RING_STAGES = (
    "relax_ring",
    "classify_twisted_states",
    "analyze_ring_basins",
    "probe_ring_rays",
    "measure_ring_tentacles",
    "summarize_rings",
    "figures_rings",
)


def test_lint_is_clean():
    result = snakemake("--lint")
    assert "Congratulations" in result.stdout + result.stderr


def test_rule_files_are_snakefmt_formatted():
    result = subprocess.run(
        [str(BIN / "snakefmt"), "--check", "Snakefile", "workflow"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "config, stages",
    [
        ("config/config.yaml", STAGES + RING_STAGES),
        ("config/paper.yaml", STAGES + RING_STAGES + ("estimate_basin_sizes", "estimate_ring_basin_sizes")),
        ("config/test.yaml", STAGES + RING_STAGES + ("estimate_basin_sizes", "estimate_ring_basin_sizes")),
        ("config/kuramoto.yaml", RING_STAGES + ("estimate_ring_basin_sizes",)),
        ("config/connectivity.yaml", ("train_ensemble", "connect_minima", "compare_connectivity",
                                      "figure_connectivity_comparison")),
        ("config/basin_walk_digits.yaml", ("train_ensemble", "deduplicate_minima", "estimate_basin_sizes")),
        ("config/shapes_width40.yaml", ("train_ensemble", "probe_rays", "measure_tentacles", "answer_hypothesis")),
    ],
)
def test_dry_run_lists_every_stage(config, stages, tmp_path):
    result = snakemake("-n", "--directory", str(tmp_path), "--configfile", str(ROOT / config))
    for stage in stages:
        assert f"rule {stage}:" in result.stdout, stage


def test_the_walk_validation_runs_the_default_studys_landscape():
    # config/basin_walk_digits.yaml checks the walk against counts on the answer's N = 41
    # replicates: it must measure the landscape the default study counts, not a look-alike.
    default = yaml.safe_load((ROOT / "config/config.yaml").read_text())["experiments"]["digits_parity_tanh"]
    walks = yaml.safe_load((ROOT / "config/basin_walk_digits.yaml").read_text())["experiments"]
    assert set(walks) == {"digits_parity_tanh", "digits_parity_tanh_anchored", "digits_parity_tanh_exchange",
                          "digits_parity_tanh_exchange8"}
    for walk in walks.values():
        for section in ("dataset", "model", "training", "minima"):
            assert walk[section] == default[section], section
        assert walk["ensemble"]["n_members"] == default["ensemble"]["n_members"]
        assert set(walk["ensemble"]["seeds"]) <= set(default["ensemble"]["seeds"])
    assert walks["digits_parity_tanh_anchored"]["basin_sizes"]["max_basin_samples"] == 0
    # The exchange's experiment differs from the anchored one in the exchange alone.
    exchange, apart = (dict(walks[name]["basin_sizes"]) for name in ("digits_parity_tanh_exchange", "digits_parity_tanh_anchored"))
    assert exchange.pop("replica_exchange") is True and apart.pop("replica_exchange") is False and exchange == apart
    # ... and the eight ladders' from the exchange's in the number of ladders alone.
    eight = dict(walks["digits_parity_tanh_exchange8"]["basin_sizes"])
    assert eight.pop("n_chains") == 2 * exchange.pop("n_chains") == 8
    assert eight.pop("replica_exchange") is True and eight == exchange


def test_the_shape_rows_at_n_401_probe_the_default_studys_replicates():
    # config/shapes_width40.yaml probes the default study's N = 401 draws as it probes N = 41's:
    # the same landscape, members and catalogue (its files reusable), the same probing sections.
    default = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    shapes = yaml.safe_load((ROOT / "config/shapes_width40.yaml").read_text())
    mine, theirs = shapes["experiments"]["digits_parity_tanh_width40"], default["experiments"]["digits_parity_tanh_width40"]
    for section in ("dataset", "model", "training", "minima"):
        assert mine[section] == theirs[section], section
    assert {key: value for key, value in mine["ensemble"].items() if key != "seeds"} == {
        key: value for key, value in theirs["ensemble"].items() if key != "seeds"}
    assert set(mine["ensemble"]["seeds"]) <= set(theirs["ensemble"]["seeds"])
    n41 = default["experiments"]["digits_parity_tanh"]
    assert mine["tentacles"] == n41["tentacles"]
    # The rays: N = 41's, their grid in units of the initialization shell (N = 41's distances
    # over a shell of 20 / 4.5 = 4.4, where N = 41's shells lie: 3.8-4.9).
    grid = ("smallest_radius", "largest_radius", "radii_in_shells")
    assert {k: v for k, v in mine["rays"].items() if k not in grid} == {
        k: v for k, v in n41["rays"].items() if k not in grid}
    assert mine["rays"]["radii_in_shells"] and not n41["rays"].get("radii_in_shells", False)
    assert mine["rays"]["largest_radius"] / mine["rays"]["smallest_radius"] == pytest.approx(
        n41["rays"]["largest_radius"] / n41["rays"]["smallest_radius"])
    assert n41["rays"]["largest_radius"] / mine["rays"]["largest_radius"] == pytest.approx(4.44, abs=0.01)
    assert mine.get("basin_geometry", True) and not theirs["basin_geometry"]
    # config/paper.yaml's dimension axis probes with the same sections.
    paper = yaml.safe_load((ROOT / "config/paper.yaml").read_text())["experiments"]
    for width in (4, 16, 40):
        for section in ("rays", "tentacles"):
            assert paper[f"digits_parity_p60_width{width}"][section] == mine[section], (width, section)
    assert {key: value for key, value in shapes["answer"].items() if key != "families"} == {
        key: value for key, value in default["answer"].items() if key != "families"}


def test_experiments_with_the_same_data_set_share_one_file(tmp_path):
    # tiny_teacher, tiny_teacher_gd and tiny_teacher_langevin draw one teacher-student set.
    result = snakemake("-n", "--directory", str(tmp_path), "--configfile", str(ROOT / "config/test.yaml"))
    assert "output: results/datasets/tiny_teacher/seed1.nc" in result.stdout
    assert "results/datasets/tiny_teacher_gd/" not in result.stdout
    assert "results/datasets/tiny_teacher_langevin/" not in result.stdout


def test_only_the_seeds_named_in_slices_are_sliced(tmp_path):
    config = yaml.safe_load((ROOT / "config/test.yaml").read_text())
    for experiment in config["experiments"].values():  # the protocols compare tiny_teacher's seeds
        experiment["ensemble"]["seeds"] = [1, 2]
    config["experiments"]["tiny_teacher"]["slices"]["seeds"] = [2]
    path = tmp_path / "two_seeds.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--directory", str(tmp_path), "--configfile", str(path))
    assert "results/slices/tiny_teacher/seed2.nc" in result.stdout
    assert "results/slices/tiny_teacher/seed1.nc" not in result.stdout
    assert "results/tentacles/tiny_teacher/seed1.nc" in result.stdout


def test_the_slurm_profile_sends_short_jobs_in_batches(tmp_path):
    result = snakemake(
        "-n", "--profile", str(ROOT / "profiles/slurm"), "--directory", str(tmp_path),
        "--configfile", str(ROOT / "config/test.yaml"),
    )
    assert "Group job deduplicate_minima" in result.stdout
    assert "Group job analyze_jamming" in result.stdout


def broken_config(tmp_path, edit):
    config = yaml.safe_load((ROOT / "config/test.yaml").read_text())
    edit(config["experiments"]["tiny_teacher"])
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    "edit, named",
    [
        (lambda e: e["dataset"].update(kind="cifar"), "kind"),
        (lambda e: e["training"].update(loss="l1"), "loss"),
        (lambda e: e["ensemble"].update(n_members=0), "n_members"),
        (lambda e: e["training"].update(lr=-1.0), "lr"),
        (lambda e: e["model"].update(width="wide"), "width"),
        (lambda e: e.pop("minima"), "minima"),
        (lambda e: e["training"].update(learning_rate=0.1), "learning_rate"),
        (lambda e: e["ensemble"].update(n_shards=100), "n_shards"),
        (lambda e: e["ensemble"].update(noise_draws=2), "gradient_flow without noise runs every draw"),
        (lambda e: e["training"].update(beta=4.0), "beta applies to the cross_entropy loss"),
        (lambda e: e["training"].update(loss="cross_entropy", beta_start=0.5), "beta_start needs beta_ramp_steps"),
        (lambda e: e["training"].update(loss="cross_entropy", beta_start=0.5, beta_ramp_steps=10), "stepwise dynamics"),
        (lambda e: e["training"].update(loss="cross_entropy", dynamics="gd", beta_ramp_steps=10), "beta_start other than"),
        (lambda e: e["training"].update(dynamics="fire"), "basin_geometry: dynamics 'fire' is inertial"),
        (lambda e: e["training"].update(stop_when_satisfied=True), "stop_when_satisfied stops runs"),
        (lambda e: e["model"].update(init="orthogonal"), "basin_sizes: model.init='orthogonal'"),
        (lambda e: e["basin_sizes"].update(n_couplings=4), "n_couplings=4 must be odd"),
        (lambda e: e["training"].update(l2=0.0), "basin_sizes: needs training.l2 > 0"),
        (lambda e: e["slices"].update(seeds=[7]), "slices.seeds: [7] not among the ensemble's seeds"),
    ],
)
def test_a_broken_config_fails_before_any_job_and_names_the_key(tmp_path, edit, named):
    result = snakemake(
        "-n", "--directory", str(tmp_path), "--configfile", str(broken_config(tmp_path, edit)), check=False
    )
    assert result.returncode != 0
    assert named in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    "edit, named",
    [
        (lambda r: r["ring"].update(coupling_range=4), "coupling_range"),
        (lambda r: r["ring"].update(n_oscillators=2), "n_oscillators"),
        (lambda r: r["relaxation"].update(dynamics="sgd"), "dynamics"),
        (lambda r: r["twisted_states"].update(tolerance=0), "tolerance"),
        (lambda r: r.setdefault("rays", {}).update(n_far_radii=2), "n_far_radii=2 needs farthest_radius"),
        (lambda r: r.setdefault("rays", {}).update(radii_in_shells=True, smallest_radius=0.01, largest_radius=0.9),
         "the grid ends at 0.9 shell distances, inside the initialization shell"),
        (lambda r: r["basin_sizes"].update(n_couplings=4), "basin_sizes.n_couplings=4 must be odd"),
        (lambda r: r["basin_sizes"].pop("winding_numbers"), "winding_numbers"),
        (lambda r: r["basin_sizes"].update(n_stepz=3), "'n_stepz' was unexpected"),
        (lambda r: r["basin_sizes"].update(independent_share=1.0), "independent_share"),
        (lambda r: r["basin_sizes"].update(n_steps=3, n_burn=2), "the half-length walk needs n_steps // 2 > max(n_burn // 2, 1)"),
        (lambda r: r["basin_sizes"].update(half_length_walk="yes"), "half_length_walk"),
    ],
)
def test_a_broken_ring_is_named(tmp_path, edit, named):
    config = yaml.safe_load((ROOT / "config/test.yaml").read_text())
    config["oscillators"]["tiny_ring"].setdefault("twisted_states", {})
    edit(config["oscillators"]["tiny_ring"])
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--directory", str(tmp_path), "--configfile", str(path), check=False)
    assert result.returncode != 0 and named in result.stdout + result.stderr


def test_an_even_perceptron_is_refused_before_any_job(tmp_path):
    config = yaml.safe_load((ROOT / "config/test.yaml").read_text())
    config["local_entropy"]["n_weights"] = 10
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--directory", str(tmp_path), "--configfile", str(path), check=False)
    assert result.returncode != 0 and "must be odd" in result.stdout + result.stderr


@pytest.mark.parametrize(
    "comparison, named",
    [
        (["tiny_teacher", "no_such_experiment"], "no_such_experiment"),
        (["tiny_teacher", "tiny_mnist1d_classes"], "differs"),
    ],
)
def test_a_broken_comparison_is_named(tmp_path, comparison, named):
    assert_dry_run_names(tmp_path, named, comparisons={"broken": comparison})


def assert_dry_run_names(tmp_path, named, **top_level):
    """A dry run of the test config with top-level sections replaced fails and names ``named``."""
    config = {**yaml.safe_load((ROOT / "config/test.yaml").read_text()), **top_level}
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--directory", str(tmp_path), "--configfile", str(path), check=False)
    assert result.returncode != 0 and named in result.stdout + result.stderr


@pytest.mark.parametrize(
    "members, named",
    [(["no_such_experiment"], "no_such_experiment"), (["tiny_teacher"], "connectivity section")],
)
def test_a_broken_connectivity_group_is_named(tmp_path, members, named):
    assert_dry_run_names(tmp_path, named, connectivity_groups={"broken": members})


@pytest.mark.parametrize(
    "protocols, named",
    [
        ({"experiments": ["tiny_teacher", "no_such_experiment"]}, "no_such_experiment"),
        ({"experiments": ["tiny_teacher", "tiny_mnist1d_classes"]}, "one network on one data set"),
        ({"experiments": ["tiny_teacher", "tiny_teacher_gd"], "reference_sigma": 0.3}, "reference_sigma=0.3"),
        ({"experiments": ["tiny_teacher"]}, "experiments"),
    ],
)
def test_a_broken_protocol_comparison_is_named(tmp_path, protocols, named):
    assert_dry_run_names(tmp_path, named, protocols={"broken": protocols})


def tiny_random_sweep(**changes):
    sweep = yaml.safe_load((ROOT / "config/test.yaml").read_text())["jamming"]["tiny_random"]
    return {"broken": {**sweep, **changes}}


@pytest.mark.parametrize(
    "changes, named",
    [
        ({"networks": [{"depth": 0, "width": 3}]}, "a perceptron (depth 0) has width 0"),
        ({"networks": [{"depth": 1}]}, "a perceptron (depth 0) has width 0"),
        ({"networks": [{"depth": 0}, {"depth": 0}]}, "lists a network twice"),
        ({"train_sizes": {"smallest": 50, "largest": 50, "n_sizes": 3}}, "smallest=50 must be below"),
        ({"training": {"lr": 0.1, "max_steps": 10, "loss": "mse"}}, "loss"),
    ],
)
def test_a_broken_jamming_sweep_is_named(tmp_path, changes, named):
    assert_dry_run_names(tmp_path, named, jamming=tiny_random_sweep(**changes))


def test_a_ring_can_start_from_points_in_a_netcdf_file(tmp_path):
    start = np.random.default_rng(0).uniform(-np.pi, np.pi, (4, 8))
    points = xr.Dataset(
        {"initial_theta": (("member", "param"), start)}, coords={"member": np.arange(4), "param": np.arange(8)}
    )
    points.to_netcdf(tmp_path / "points.nc")
    config = yaml.safe_load((ROOT / "config/test.yaml").read_text())
    ring = config["oscillators"]["tiny_ring"]
    ring["ensemble"].update(n_members=4, n_shards=1, initial_points=str(tmp_path / "points.nc"))
    path = tmp_path / "restart.yaml"
    path.write_text(yaml.safe_dump(config))
    snakemake("--cores", "1", "--directory", str(tmp_path), "--configfile", str(path), "--until", "relax_ring")
    relaxed = read_dataset(tmp_path / "results/oscillators/relaxation/tiny_ring/seed1/shard0.nc")
    np.testing.assert_array_equal(relaxed["initial_theta"].values, start)
    assert str(tmp_path / "points.nc") in relaxed.attrs["history"]


def check_values(path, ds):
    """Value ranges every stage output must respect."""
    for name in ("basin_fraction", "train_error", "test_error", "unassigned_fraction",
                 "return_probability", "tentacle_fraction", "censored_fraction", "boundary_fraction",
                 "agreement", "unmatched_fraction", "good_old_tentacle_fraction", "bad_old_tentacle_fraction",
                 "reach", "leaving_fraction", "far_return_probability", "far_reentry_probability",
                 "inside_fraction", "good_reach", "bad_reach", "good_leaving_fraction", "bad_leaving_fraction",
                 "undecided_fraction", "saddle_fraction", "run_undecided_fraction", "return_probability_low",
                 "return_probability_high", "exit_survival"):
        if name in ds:
            values = ds[name].values
            assert np.all((values[np.isfinite(values)] >= 0) & (values[np.isfinite(values)] <= 1)), (path, name)
    if "status" in ds:
        assert set(np.unique(ds["status"].values)) <= {0, 1, 2, 3}
    if "assigned_fraction" in ds and ds["assigned_fraction"].ndim == 0:  # a catalogue's members are at
        # a minimum, a saddle, undecided or diverged
        parts = ("assigned_fraction", "saddle_fraction", "undecided_fraction", "diverged_fraction")
        assert sum(float(ds[name]) for name in parts) == pytest.approx(1.0), path
    if "start_distance" in ds and "winding_number" not in ds:  # the nearest image is never farther
        # than the image reached (rings measure to the exact twisted state: analyze_basins' end_offset)
        start, travel = ds["start_distance"].values, ds["travel_distance"].values
        assert not np.any(start > travel * (1 + 1e-10) + 1e-12), path
    for name in ("outcome", "segment_outcome"):
        if name in ds:
            assert set(np.unique(ds[name].values)) <= {0, 1, 2}
    if "minimum_of_member" in ds and ds.sizes.get("minimum", 0):
        assert ds["minimum_of_member"].max() < ds.sizes["minimum"]
    if "unmatched_fraction" in ds:  # a dynamics comparison: per experiment, every run is counted once
        total = ds["basin_fraction"].sum("minimum") + ds["unmatched_fraction"] + ds["unassigned_fraction"]
        np.testing.assert_allclose(total.values, 1.0, err_msg=str(path))
    elif "unassigned_fraction" in ds and "basin_fraction" in ds:
        total = float(ds["basin_fraction"].sum() + ds["unassigned_fraction"])
        assert total == pytest.approx(1.0), path
    if "is_edge" in ds:  # a transition state counts only as a verified index-1 saddle of two minima
        edge = ds["is_edge"].values
        assert (ds["ts_index"].values[edge] == 1).all()
        connected = ds["connected_minimum"].values[edge]
        assert (connected >= 0).all() and (connected[:, 0] != connected[:, 1]).all()
        assert (ds["barrier"].values[edge] >= 0).all(), path
        assert 0 < ds.attrs["funnel_fraction"] <= 1
        # every pair ends connected, merged or unconnected; merged entries name a distinct minimum
        assert set(np.unique(ds["pair_outcome"].values)) <= {0, 1, 2}, path
        assert ((ds["merged_into"] >= 0) & (ds["merged_into"] < ds.sizes["minimum"])).all(), path
    if "phase" in ds:  # SAT: no point left unsatisfied; UNSAT and stuck: some
        phase, n_unsatisfied = ds["phase"].values, ds["n_unsatisfied"].values
        assert set(np.unique(phase)) <= set(PHASE_VALUES)
        assert (n_unsatisfied[phase == SAT] == 0).all(), path
        assert (n_unsatisfied[(phase == UNSAT) | (phase == STUCK)] > 0).all(), path


@pytest.mark.slow
def test_tiny_study_runs_end_to_end_and_every_result_keeps_the_contract(tiny_study):
    tmp_path = tiny_study
    results = tmp_path / "results"
    netcdf = sorted(results.rglob("*.nc"))
    stages = {p.relative_to(results).parts[0] for p in netcdf}
    assert stages == {
        "datasets", "training", "minima", "basins", "rays", "tentacles", "slices", "comparisons", "summary.nc",
        "oscillators", "flatness", "local_entropy", "connectivity", "jamming", "protocols", "answer.nc",
        "basin_sizes",
    }
    for path in netcdf:
        ds = read_dataset(path)
        check_dataset(ds)
        assert ds.attrs["stage_config"] and ds.attrs["package_versions"]
        check_values(path, ds)
    shards = read_dataset(results / "training/tiny_teacher/seed1/shard1.nc")
    assert shards.sizes["member"] == 24 and int(shards["member"][0]) == 24
    # Langevin's second shard is the second noise draw: the same 24 starts, other member ids
    draws = [read_dataset(results / f"training/tiny_teacher_langevin/seed1/shard{k}.nc") for k in (0, 1)]
    assert draws[1]["member"].values.tolist() == list(range(24, 48))
    np.testing.assert_array_equal(draws[0]["initial_theta"].values, draws[1]["initial_theta"].values)
    reference_starts = read_dataset(results / "training/tiny_teacher/seed1/shard0.nc")["initial_theta"].values
    np.testing.assert_array_equal(draws[0]["initial_theta"].values, reference_starts)
    comparison = read_dataset(results / "comparisons/tiny_dynamics/seed1.nc")
    assert comparison["n_draws"].values.tolist() == [1, 1, 2] and comparison.attrs["n_starts_compared"] == 24
    pngs = sorted(results.rglob("*.png"))
    # figures x (experiment, seed) pairs, one comparison, one protocol comparison, the summary,
    # ring figures x (ring, seed), the local entropy, the connectivity group's three, two per
    # jamming sweep, the digits sweep's test error, the random sweep's Cover calibration and the answer
    # (basin geometry figures only for the 2 (experiment, seed) pairs whose dynamics has basins
    # to probe)
    n_figures = 5 * 6 + 4 * 2 + 1 + 1 + 1 + 4 * 1 + 1 + 3 + 2 * 2 + 1 + 1 + 1
    assert len(pngs) == n_figures and len(sorted(results.rglob("*.pdf"))) == n_figures
    for png in pngs:
        width, height = Image.open(png).size
        assert width > 300 and height > 200
    assert not list(results.glob("checkpoints/**/*.pt"))
    ring = read_dataset(results / "oscillators/basins/tiny_ring/seed1.nc")
    assert set(ring["winding_number"].values) <= {-1, 0, 1}  # the stable states of n = 8, k = 1
    assert int(ring["winding_number"][0]) == 0  # the largest basin
    ring_sizes = read_dataset(results / "oscillators/basin_sizes/tiny_ring/seed1.nc")
    assert ring_sizes["winding_number"].values.tolist() == [0] and (ring_sizes["orbit_size"] == 1).all()
    ring_minima = read_dataset(results / "oscillators/minima/tiny_ring/seed1.nc")
    assert ring_sizes["n_members"].values.tolist() == ring_minima["n_members"].values[
        ring_minima["winding_number"].values == 0].tolist()
    assert "| tiny_ring/seed1 | 0 |" in (results / "oscillators/calibration.md").read_text()
    # The perceptron (N = 5) fits P = 2 random labels and jams at P = 60, for every seed.
    perceptron = read_dataset(results / "jamming/tiny_random.nc").isel(network=0)
    assert (perceptron["phase"].isel(train_size=0) == 0).all() and (perceptron["phase"].isel(train_size=-1) == 1).all()
    assert np.isfinite(perceptron["transition_ratio"]).all()
    answer = read_dataset(results / "answer.nc")
    sizes = read_dataset(results / "basin_sizes/tiny_teacher/seed1.nc")
    assert (sizes["orbit_size"] == 8).all() and (sizes["log_basin_fraction_low"] <= 0).all()
    assert set(answer["sensitivity_verdict"].values.ravel()) <= {"supported", "contradicted", "undecided"}
    graphs = read_dataset(results / "connectivity/groups/tiny_moons_graphs.nc")
    assert graphs.sizes["experiment"] == 1 and graphs.sizes["pair"] == 0
    assert graphs["value"].sel(statistic="n_minima").item() == read_dataset(
        results / "connectivity/tiny_moons/seed1.nc").sizes["minimum"]
    assert set(answer["verdict"].values) <= {"supported", "contradicted", "undecided"}
    assert list(answer["replicate"].values) == [1, 2]
    assert set(answer["experiment"].values) == {"tiny_mnist1d_classes", "tiny_teacher"}
    # tiny_teacher's walk enters the answer: a row with basin sizes by the walk, its walked minima kept
    walk_row = answer["statistic"].values == "basin_fraction_by_walk_vs_test_error"
    assert answer["experiment"].values[walk_row].tolist() == ["tiny_teacher"]
    assert answer["basin_size_source"].values[walk_row].tolist() == ["walk"]
    assert answer["walked_minimum"].values.tolist() == sizes["minimum"].values.tolist()
    page = (results / "answer.md").read_text()
    assert "| tiny | tiny_mnist1d_classes |" in page
    assert "| tiny_walked | tiny_teacher | 11 | basin_fraction_by_walk_vs_test_error | walk |" in page
    summary = (results / "summary.csv").read_text().splitlines()
    assert len(summary) == 1 + 2 and summary[0].startswith("experiment,")

    # The report builds, with a caption for every figure and no reStructuredText errors.
    report = snakemake("--directory", str(tmp_path), "--configfile", str(ROOT / "config/test.yaml"),
                       "--report", str(tmp_path / "report.html"))
    assert (tmp_path / "report.html").stat().st_size > 100_000
    assert "ERROR/" not in report.stdout + report.stderr

    # Re-running catalogued starts reproduces their labels (the identity rule), and the
    # catalogue holds minima, not saddles.
    verify = subprocess.run([str(BIN / "python"), "-m", "basins.verify", str(results), "--n-rerun", "48"],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "| tiny_teacher | 1 |" in verify.stdout

    # Rerunning one stage reproduces its output exactly.
    minima = results / "minima/tiny_teacher/seed1.nc"
    before = read_dataset(minima)
    snakemake(
        "--cores", "2", "--directory", str(tmp_path), "--configfile", str(ROOT / "config/test.yaml"),
        "--forcerun", "deduplicate_minima", "--until", "deduplicate_minima",
    )
    after = read_dataset(minima)
    np.testing.assert_array_equal(before["minimum_of_member"].values, after["minimum_of_member"].values)
    np.testing.assert_array_equal(before["theta"].values, after["theta"].values)
    shutil.rmtree(tmp_path / ".snakemake", ignore_errors=True)


def _code_dependencies():
    """common.smk's code_dependencies, run outside Snakemake on this checkout."""
    import re
    from pathlib import Path
    from types import SimpleNamespace

    source = (ROOT / "workflow/rules/common.smk").read_text()
    function = re.search(r"^def code_dependencies\(.*?(?=^\S)", source, flags=re.S | re.M).group(0)
    namespace = {"Path": Path, "workflow": SimpleNamespace(basedir=str(ROOT))}
    exec(function, namespace)
    return namespace["code_dependencies"]


@pytest.mark.parametrize(
    "script, stage_module",
    [("connect_minima", "connectivity"), ("compare_protocols", "protocols"), ("probe_rays", "rays"),
     ("train_ensemble", "training"), ("figure", "figures")],
)
def test_code_dependencies_cover_every_module_the_stage_imports(script, stage_module):
    """A rule's code inputs hold every package module its stage imports at run time (the
    two that hand lists missed: connect_minima -> flatness, compare_protocols -> basin_geometry)."""
    listed = {path.split("/src/basins/")[1] for path in _code_dependencies()(script) if "/src/basins/" in path}
    imported = subprocess.run(
        [str(BIN / "python"), "-c",
         f"import sys, basins.{stage_module}; print(' '.join(m.__file__ for n, m in sys.modules.items() "
         "if n.startswith('basins.')))"],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    assert {path.split("/src/basins/")[1] for path in imported} <= listed
    assert f"{stage_module}.py" in listed
    if "landscapes/native_mlp.py" in listed:  # the C source it compiles reruns the stage too
        assert "landscapes/native_mlp.c" in listed


def test_code_dependencies_follow_a_figure_module_imported_by_name():
    """figure.py imports a rule's ``module`` param (answer_figures, jamming_figures) with
    importlib, which the import graph cannot see: the rule names it, and editing it reruns
    the figure."""
    listed = {path.split("/src/basins/")[-1] for path in _code_dependencies()("figure", modules=["answer_figures"])}
    assert {"answer_figures.py", "answer.py", "summary.py", "figures.py"} <= listed
    assert "answer_figures.py" not in {path.split("/src/basins/")[-1] for path in _code_dependencies()("figure")}
