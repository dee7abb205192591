# Config validation, input functions and config look-ups shared by all rule files.
import difflib
import math
import os
import subprocess
from argparse import Namespace
from pathlib import Path

from jsonschema import ValidationError
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate


def check_finite(value, where=""):
    """No .nan or .inf anywhere: the schema's bounds let them through (nan compares false)."""
    if isinstance(value, dict):
        for key, item in value.items():
            check_finite(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_finite(item, f"{where}[{index}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(
            f"{where}={value}: every number in the config must be finite; set a finite value"
        )


def validate_config(schema):
    """The schema's validation, its error cut to the key path, what was wrong, and for an
    unknown key the closest valid one (Snakemake's own message prints the whole schema).
    """
    try:
        validate(config, workflow.source_path(schema), set_default=True)
    except WorkflowError as error:
        cause = error.__context__
        if not isinstance(cause, ValidationError):
            raise
        raise ValueError(schema_error(cause)) from None


def schema_error(error):
    where = (
        ".".join(str(part) for part in error.absolute_path) or "the config's top level"
    )
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = list(error.schema.get("properties", {}))
        unknown = [key for key in error.instance if key not in allowed]
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hints.append(
                f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
            )
        return (
            f"config: unknown key {', '.join(hints)} in {where}; allowed keys there: "
            f"{', '.join(allowed)}"
        )
    description = (
        error.schema.get("description") if isinstance(error.schema, dict) else None
    )
    return f"config: {where}: {error.message}" + (
        f" ({' '.join(description.split())})" if description else ""
    )


check_finite(config)
validate_config("../schemas/config.schema.yaml")

EXPERIMENTS = config["experiments"]
COMPARISONS = config["comparisons"]
RINGS = config["oscillators"]
CONNECTIVITY_GROUPS = config["connectivity_groups"]
PROTOCOLS = config["protocols"]
ANSWER = config["answer"]
JAMMING = config["jamming"]
CONNECTED = [
    name for name, experiment in EXPERIMENTS.items() if "connectivity" in experiment
]
# What compared experiments must share: the landscape (data, model, loss) and the initial
# conditions (ensemble members; they are compared on the seeds they all run); only the
# dynamics may differ.
SHARED_FOR_COMPARISON = {
    "dataset": None,
    "model": None,
    # Start i is the same point in every experiment (it depends on seed and i alone), so
    # ensembles of different sizes are compared on the starts they share (noise draws may differ).
    "ensemble": ("initial_points",),
    "training": ("loss", "l2", "margin"),
}
# Experiments whose basins are measured (rays, tentacles, slices): basin_geometry is set.
BASIN_GEOMETRY = [
    name for name, experiment in EXPERIMENTS.items() if experiment["basin_geometry"]
]
BASIN_SIZES = [
    name for name, experiment in EXPERIMENTS.items() if "basin_sizes" in experiment
]
FIGURES = [
    "basin_sizes",
    "basin_vs_test_error",
    "travel_distance",
    "flatness",
    "local_energy",
]
BASIN_GEOMETRY_FIGURES = [
    "return_probability",
    "tentacles",
    "basin_shape",
]
RING_FIGURES = [
    "winding_distribution",
    "ring_return_probability",
    "ring_tentacles",
    "ring_basin_shape",
]
CONNECTIVITY_FIGURES = ["disconnectivity", "barriers"]
# Every sweep's; the test error or Cover's curve is added by the sweep's kind (jamming_figures).
JAMMING_FIGURES = ["jamming", "jamming_gaps"]


def check_experiments():
    """Checks across keys that a JSON schema cannot express."""
    for name, experiment in EXPERIMENTS.items():
        ensemble, training, rays = (
            experiment["ensemble"],
            experiment["training"],
            experiment["rays"],
        )
        check_rays(f"experiments.{name}.rays", rays)
        if ensemble["n_shards"] > ensemble["n_members"]:
            raise ValueError(
                f"experiments.{name}.ensemble.n_shards={ensemble['n_shards']} exceeds "
                f"n_members={ensemble['n_members']}; every shard needs a member"
            )
        if ensemble["noise_draws"] > 1 and not noisy_dynamics(training):
            raise ValueError(
                f"experiments.{name}.ensemble.noise_draws={ensemble['noise_draws']}: "
                f"{training['dynamics']} without noise runs every draw of a start alike"
            )
        if training["dynamics"] == "sgd" and training["batch_size"] is None:
            raise ValueError(
                f"experiments.{name}.training.batch_size is required with dynamics 'sgd'"
            )
        check_beta_schedule(f"experiments.{name}.training", training)
        check_flat_seeking(f"experiments.{name}.training", training)
        check_tentacles(f"experiments.{name}.tentacles", experiment["tentacles"])
        unknown = set(experiment["slices"].get("seeds", [])) - set(ensemble["seeds"])
        if unknown:
            raise ValueError(
                f"experiments.{name}.slices.seeds: {sorted(unknown)} not among the ensemble's "
                f"seeds {ensemble['seeds']}"
            )
        check_basin_geometry(name, experiment)
        check_basin_sizes(name, experiment)
        check_dataset(
            f"experiments.{name}.dataset",
            experiment["dataset"],
            experiment["dataset"]["n_train"],
        )


# Raw inputs of the real data sets: images of sklearn's digits (8 x 8 pixels) and the
# mnist1d signals (length 40); mnist1d generates as many samples as asked.
DIGITS_IMAGES = 1797
RAW_FEATURES = {"digits": 64, "mnist1d": 40}
SYNTHETIC_DATASETS = ("random_patterns", "teacher_student", "gaussian_mixture")


def check_dataset(where, dataset, n_train):
    """basins.data.prepare_dataset's checks on a config section, before any job runs."""
    kind, task, n_features = dataset["kind"], dataset["task"], dataset["n_features"]
    n_test = dataset["n_test"]
    if kind in SYNTHETIC_DATASETS and n_features is None:
        raise ValueError(
            f"{where}: kind {kind!r} needs n_features (the input dimension); set e.g. n_features: 10"
        )
    if kind in (*SYNTHETIC_DATASETS, "two_moons") and task != "binary":
        raise ValueError(
            f"{where}.task={task!r}: {kind!r} has two classes only; set task: binary (or leave it out)"
        )
    if kind == "two_moons" and n_features not in (None, 2):
        raise ValueError(
            f"{where}.n_features={n_features}: two_moons is 2-D; leave n_features out"
        )
    if kind in RAW_FEATURES and task not in ("parity", "classes"):
        raise ValueError(
            f"{where}.task={task!r}: {kind!r} offers the tasks 'parity' (even vs odd) and 'classes'"
        )
    if kind == "digits" and n_train + n_test > DIGITS_IMAGES:
        raise ValueError(
            f"{where}: n_train + n_test = {n_train} + {n_test} = {n_train + n_test} exceeds the "
            f"{DIGITS_IMAGES} images of the digits data set; lower n_train or n_test"
        )
    if kind in RAW_FEATURES and n_features is not None:
        limit = min(RAW_FEATURES[kind], n_train)
        if n_features > limit:
            raise ValueError(
                f"{where}.n_features={n_features}: {kind!r} has {RAW_FEATURES[kind]} raw features "
                f"and the PCA is fitted on n_train = {n_train} points; choose n_features <= {limit}"
            )


def check_basin_geometry(name, experiment):
    """Basins are measured only where the dynamics has basins of attraction on one landscape."""
    training = experiment["training"]
    reasons = {
        "dynamics 'fire' is inertial: where a run ends depends on its velocity, not only on its "
        "starting point": training["dynamics"] == "fire",
        "stop_when_satisfied stops runs at the first zero-error point, not at a minimum": training[
            "stop_when_satisfied"
        ],
        "beta_ramp_steps moves the landscape during training, so re-runs from probe points "
        "would not see the landscape the minima belong to (measure its quench instead)": training[
            "beta_ramp_steps"
        ]
        > 0,
        "lr_decay_every makes the dynamics depend on time, not only on the point": training[
            "lr_decay_every"
        ]
        > 0,
        "entropy_gd and replicated_gd carry noise or replicas drawn per member, so where a "
        "run ends is not a function of its starting point alone": training["dynamics"]
        in ("entropy_gd", "replicated_gd"),
    }
    why = [reason for reason, applies in reasons.items() if applies]
    if experiment["basin_geometry"] and why:
        raise ValueError(
            f"experiments.{name}.basin_geometry: {'; '.join(why)}. Set basin_geometry: false "
            "(its catalogue, basin fractions, flatness and protocol comparisons stay)"
        )


def check_basin_sizes(name, experiment):
    """Basin sizes need basins (basin_geometry) and an initial measure of independent Gaussians."""
    if "basin_sizes" not in experiment:
        return
    where = f"experiments.{name}.basin_sizes"
    if not experiment["basin_geometry"]:
        raise ValueError(
            f"{where}: needs basin_geometry: true (its dynamics must have basins)"
        )
    if experiment["model"]["init"] not in ("gaussian", "kaiming"):
        raise ValueError(
            f"{where}: model.init={experiment['model']['init']!r}; the walk needs an initial "
            "measure of independent Gaussians ('gaussian' or 'kaiming')"
        )
    if experiment["training"]["l2"] <= 0:
        raise ValueError(
            f"{where}: needs training.l2 > 0; without weight decay minima lie along flat "
            "valleys, and a re-run that ends further along its valley would count as leaving"
        )
    check_basin_walk(where, experiment["basin_sizes"])


def check_basin_walk(where, sizes):
    """The walk of basins.basin_volume: Simpson's rule over the couplings, a burn-in to discard."""
    if sizes["n_couplings"] % 2 == 0:
        raise ValueError(
            f"{where}.n_couplings={sizes['n_couplings']} must be odd (Simpson's rule)"
        )
    if sizes["n_burn"] >= sizes["n_steps"]:
        raise ValueError(
            f"{where}.n_burn={sizes['n_burn']} must be below n_steps={sizes['n_steps']}"
        )
    if sizes["half_length_walk"] and sizes["n_steps"] // 2 <= max(
        sizes["n_burn"] // 2, 1
    ):
        raise ValueError(
            f"{where}: the half-length walk needs n_steps // 2 > max(n_burn // 2, 1) (n_steps="
            f"{sizes['n_steps']}, n_burn={sizes['n_burn']}); raise n_steps or set half_length_walk: false"
        )


def check_flat_seeking(where, training):
    """entropy_gd and replicated_gd need their options (and their own keys), others none.
    Both name their temperature (noise): replicated_gd without it does not seek flat minima.
    """
    needed = {
        "entropy_gd": {"inner_lr", "inner_steps", "noise"},
        "replicated_gd": {"n_replicas", "replica_spread", "noise"},
    }
    options, dynamics = training["flat_seeking"], training["dynamics"]
    if dynamics not in needed:
        if options is not None:
            raise ValueError(
                f"{where}.flat_seeking applies to entropy_gd and replicated_gd, not {dynamics}"
            )
        return
    if options is None:
        raise ValueError(
            f"{where}.flat_seeking: dynamics {dynamics} needs its options (see the schema)"
        )
    missing = needed[dynamics] - set(options)
    foreign = set(options) & (set().union(*needed.values()) - needed[dynamics])
    if missing or foreign:
        raise ValueError(
            f"{where}.flat_seeking: {dynamics} needs {sorted(needed[dynamics])}"
            + (f"; missing {sorted(missing)}" if missing else "")
            + (f"; {sorted(foreign)} belong to the other dynamics" if foreign else "")
        )


def noisy_dynamics(training):
    """Whether a run depends on more than its start: SGD's minibatches, or the Langevin noise
    of entropy_gd and replicated_gd."""
    options = training["flat_seeking"] or {}
    return training["dynamics"] == "sgd" or options.get("noise", 0) > 0


def check_beta_schedule(where, training):
    """basins.landscapes.objective.check_beta_schedule on a config section (the Snakefile stays torch-free)."""
    annealed = training["beta_ramp_steps"] > 0
    if training["loss"] != "cross_entropy" and (
        training["beta"] != 1.0 or training["beta_start"] is not None
    ):
        raise ValueError(f"{where}: beta applies to the cross_entropy loss only")
    if annealed and training["dynamics"] == "gradient_flow":
        raise ValueError(
            f"{where}.beta_ramp_steps needs a stepwise dynamics (gd, sgd, adam, fire)"
        )
    if training["beta_start"] is not None and not annealed:
        raise ValueError(f"{where}.beta_start needs beta_ramp_steps > 0")
    if annealed and training["beta_start"] in (None, training["beta"]):
        raise ValueError(f"{where}.beta_ramp_steps needs a beta_start other than beta")


def check_comparisons():
    for name, members in COMPARISONS.items():
        for experiment in members:
            if experiment not in EXPERIMENTS:
                raise ValueError(
                    f"comparisons.{name} names experiment {experiment!r}, which is not in "
                    f"experiments ({', '.join(EXPERIMENTS)})"
                )
        reference = EXPERIMENTS[members[0]]
        for experiment in members[1:]:
            for section, keys in SHARED_FOR_COMPARISON.items():
                for key in keys or reference[section]:
                    if EXPERIMENTS[experiment][section].get(key) != reference[
                        section
                    ].get(key):
                        raise ValueError(
                            f"comparisons.{name}: experiments.{experiment}.{section}.{key} "
                            f"differs from experiments.{members[0]}.{section}.{key}; compared "
                            "experiments may differ only in their dynamics"
                        )


def check_rings():
    for name, ring in RINGS.items():
        n, k = ring["ring"]["n_oscillators"], ring["ring"]["coupling_range"]
        if 2 * k >= n:
            raise ValueError(
                f"oscillators.{name}.ring.coupling_range={k} must be below n_oscillators / 2 "
                f"= {n / 2}: the neighbours on the two sides must differ"
            )
        if ring["ensemble"]["n_shards"] > ring["ensemble"]["n_members"]:
            raise ValueError(
                f"oscillators.{name}.ensemble.n_shards exceeds n_members; every shard needs a member"
            )
        if ring["ensemble"]["noise_draws"] > 1:
            raise ValueError(
                f"oscillators.{name}.ensemble.noise_draws: a ring relaxes without noise"
            )
        check_rays(f"oscillators.{name}.rays", ring["rays"])
        check_tentacles(f"oscillators.{name}.tentacles", ring["tentacles"])
        if "basin_sizes" in ring:
            check_basin_walk(f"oscillators.{name}.basin_sizes", ring["basin_sizes"])


def check_rays(where, rays):
    """The ray grid of basins.rays.ray_radii: log-spaced radii, then optional far ones."""
    if rays["smallest_radius"] >= rays["largest_radius"]:
        raise ValueError(
            f"{where}.smallest_radius={rays['smallest_radius']} must be below "
            f"largest_radius={rays['largest_radius']}"
        )
    if (
        rays["n_far_radii"]
        and not rays.get("farthest_radius", 0) > rays["largest_radius"]
    ):
        raise ValueError(
            f"{where}.n_far_radii={rays['n_far_radii']} needs farthest_radius above "
            f"largest_radius={rays['largest_radius']}"
        )
    outermost = (
        rays.get("farthest_radius", 0)
        if rays["n_far_radii"]
        else rays["largest_radius"]
    )
    if rays["radii_in_shells"] and outermost <= 1:
        raise ValueError(
            f"{where}.radii_in_shells: the grid ends at {outermost} shell distances, inside the "
            "initialization shell, where the far statistics have no ray (raise largest_radius above 1)"
        )


def check_tentacles(where, tentacles):
    if tentacles["thickness_smallest"] >= tentacles["thickness_largest"]:
        raise ValueError(
            f"{where}.thickness_smallest={tentacles['thickness_smallest']} must be below "
            f"thickness_largest={tentacles['thickness_largest']}"
        )


def check_connectivity_groups():
    for name, members in CONNECTIVITY_GROUPS.items():
        for experiment in members:
            if experiment not in CONNECTED:
                raise ValueError(
                    f"connectivity_groups.{name} names {experiment!r}, which is not an experiment "
                    f"with a connectivity section ({', '.join(CONNECTED) or 'none has one'})"
                )
            missing = set(EXPERIMENTS[members[0]]["ensemble"]["seeds"]) - set(
                EXPERIMENTS[experiment]["ensemble"]["seeds"]
            )
            if missing:
                raise ValueError(
                    f"connectivity_groups.{name}: experiments.{experiment} lacks seeds "
                    f"{sorted(missing)} of {members[0]}, the group's first experiment"
                )


def check_protocols():
    for name, protocols in PROTOCOLS.items():
        members = protocols["experiments"]
        for experiment in members:
            if experiment not in EXPERIMENTS:
                raise ValueError(
                    f"protocols.{name} names experiment {experiment!r}, which is not in "
                    f"experiments ({', '.join(EXPERIMENTS)})"
                )
        first = EXPERIMENTS[members[0]]
        sigmas = first["flatness"]["sigmas"]
        if not any(
            abs(sigma - protocols["reference_sigma"]) < 1e-12 for sigma in sigmas
        ):
            raise ValueError(
                f"protocols.{name}.reference_sigma={protocols['reference_sigma']} is not one of "
                f"experiments.{members[0]}.flatness.sigmas {sigmas}"
            )
        for experiment in members[1:]:
            other = EXPERIMENTS[experiment]
            for key in ("dataset", "model"):
                if other[key] != first[key]:
                    raise ValueError(
                        f"protocols.{name}: experiments.{experiment}.{key} differs from "
                        f"experiments.{members[0]}.{key}; protocols train one network on one data set"
                    )
            if other["flatness"]["sigmas"] != sigmas:
                raise ValueError(
                    f"protocols.{name}: experiments.{experiment}.flatness.sigmas differ from "
                    f"{members[0]}'s; local energies are compared on one grid"
                )
            missing = set(first["ensemble"]["seeds"]) - set(other["ensemble"]["seeds"])
            if missing:
                raise ValueError(
                    f"protocols.{name}: experiments.{experiment} lacks seeds {sorted(missing)} "
                    f"of {members[0]}, the first protocol"
                )


def check_answer():
    for name, experiments in ANSWER["families"].items():
        for experiment in experiments:
            if experiment not in EXPERIMENTS:
                raise ValueError(
                    f"answer.families.{name} names experiment {experiment!r}, which is not in "
                    f"experiments ({', '.join(EXPERIMENTS)})"
                )


def answer_replicates():
    """(experiment, seed) of every replicate the answer pools, family by family."""
    experiments = dict.fromkeys(
        e for family in ANSWER["families"].values() for e in family
    )
    return [
        (name, seed)
        for name in experiments
        for seed in EXPERIMENTS[name]["ensemble"]["seeds"]
    ]


def check_local_entropy():
    enumeration = config.get("local_entropy")
    if enumeration and enumeration["n_weights"] % 2 == 0:
        raise ValueError(
            f"local_entropy.n_weights={enumeration['n_weights']} must be odd, so that no "
            "pattern lies on the perceptron's decision boundary"
        )
    if enumeration and enumeration["radius"] > enumeration["n_weights"]:
        raise ValueError("local_entropy.radius must not exceed n_weights")


def jamming_features(sweep, network):
    """Input dimension of a network's data: its own n_features (Geiger et al.'s d = h), else
    the sweep's dataset.n_features; 0 where neither is set (the data set's own features).
    """
    return network.get("n_features") or sweep["dataset"]["n_features"] or 0


def check_jamming():
    for name, sweep in JAMMING.items():
        networks = [
            (network["depth"], network["width"]) for network in sweep["networks"]
        ]
        for depth, width in networks:
            if (depth == 0) != (width == 0):
                raise ValueError(
                    f"jamming.{name}.networks: depth {depth} with width {width}; a perceptron "
                    "(depth 0) has width 0 and deeper networks a positive width"
                )
        if len(set(networks)) != len(networks):
            raise ValueError(f"jamming.{name}.networks lists a network twice")
        sizes = sweep["train_sizes"]
        if sizes["smallest"] >= sizes["largest"]:
            raise ValueError(
                f"jamming.{name}.train_sizes.smallest={sizes['smallest']} must be below "
                f"largest={sizes['largest']}"
            )
        # The pool holds the largest training set (jamming_dataset), one per input dimension.
        for features in sorted(
            {jamming_features(sweep, network) for network in sweep["networks"]}
        ):
            check_dataset(
                f"jamming.{name}.dataset",
                {
                    **sweep["dataset"],
                    "n_features": features or sweep["dataset"]["n_features"],
                },
                sizes["largest"],
            )


def check_gpu_visible():
    """use_gpu with jobs run on this machine: fail before the first job if nvidia-smi lists no
    GPU here (or CUDA_VISIBLE_DEVICES hides them all). Torch-free, so only a first check: each
    job checks its own machine with torch before it touches a file (compute_options in
    workflow/scripts/_entry.py), the only check where jobs run elsewhere (a cluster executor:
    the submit host needs no GPU)."""
    if not config["use_gpu"] or not workflow.local_exec:
        return
    if not any(job.rule.resources.get("gpu") for job in workflow.dag.needrun_jobs()):
        return
    found = False
    if os.environ.get("CUDA_VISIBLE_DEVICES", "0").strip() not in ("", "-1"):
        try:
            listed = subprocess.run(
                ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30
            )
            found = listed.returncode == 0 and "GPU" in listed.stdout
        except (OSError, subprocess.SubprocessError):
            pass
    if not found:
        raise WorkflowError(
            "use_gpu: true, but the jobs would run on this machine and it shows no NVIDIA GPU "
            "(nvidia-smi -L); set use_gpu: false, or run with a cluster profile whose jobs get GPU nodes"
        )


onstart:
    check_gpu_visible()


check_experiments()
check_jamming()
check_comparisons()
check_rings()
check_connectivity_groups()
check_protocols()
check_local_entropy()
check_answer()


wildcard_constraints:
    experiment="|".join(EXPERIMENTS) or "no_experiment",
    ring="|".join(RINGS) or "no_ring",
    comparison="|".join(COMPARISONS) or "no_comparison",
    group="|".join(CONNECTIVITY_GROUPS) or "no_group",
    protocols="|".join(PROTOCOLS) or "no_protocols",
    jamming="|".join(JAMMING) or "no_jamming",
    features=r"\d+",
    depth=r"\d+",
    width=r"\d+",
    seed=r"\d+",
    shard=r"\d+",


def code_dependencies(script, modules=()):
    """Every source file an entry script imports, transitively: the package's modules (with
    the C source a module compiles, its namesake ``.c``) and the scripts' shared helpers.
    Derived from the imports (ast), so editing any file a stage runs reruns it; a rule lists
    no module by hand. Package modules the script imports by
    name at run time (the ``module`` param of a figure) are passed as ``modules`` and followed
    the same way.
    """
    import ast

    scripts = Path(workflow.basedir) / "workflow" / "scripts"
    package = Path(workflow.basedir) / "src" / "basins"
    seen = set()
    pending = [scripts / f"{script}.py"] + [package / f"{name}.py" for name in modules]
    while pending:
        path = pending.pop()
        if path in seen or not path.exists():
            continue
        seen.add(path)
        if path.with_suffix(".c").exists():
            seen.add(path.with_suffix(".c"))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] == "basins":
                    # basins.a.b.c: the module a/b.py (or the package a/b/) and the
                    # packages above it; a trailing name that is no file is an attribute.
                    for depth in range(1, len(parts) + 1):
                        folder = package.joinpath(*parts[1:depth])
                        pending += [folder / "__init__.py", folder.with_suffix(".py")]
                elif len(parts) == 1:
                    pending.append(scripts / f"{name}.py")
    return sorted(str(path) for path in seen)


def engine_resources():
    """Resources of a job that runs the training engine: the GPU where the study uses one, and
    its memory budget plus room for the interpreter and torch."""
    return dict(
        gpu=1 if config["use_gpu"] else 0, mem_mb=int(config["memory_budget_mb"]) + 1024
    )


def section(name):
    """Input function: one config section of the job's experiment."""
    return lambda wildcards: EXPERIMENTS[wildcards.experiment][name]


def slicing_options(wildcards):
    """slice_basins options of one experiment: its slices section less the seeds it names
    (which seeds are sliced does not change a slice)."""
    slices = EXPERIMENTS[wildcards.experiment]["slices"]
    return {key: value for key, value in slices.items() if key != "seeds"}


def dataset_of_seed(wildcards):
    """prepare_dataset options of one experiment and seed: ``seed: per_seed`` draws each
    ensemble seed its own data (replicates over data draws), an integer one shared draw.
    """
    dataset = dict(EXPERIMENTS[wildcards.experiment]["dataset"])
    if dataset["seed"] == "per_seed":
        dataset["seed"] = int(wildcards.seed)
    return dataset


def dataset_file(wildcards):
    """The data set file of one experiment and seed. Experiments that draw the same data set
    (equal prepare_dataset options for that seed) read one file, that of the first of them in
    the config that runs the seed (its own where none does): it is prepared once, and stages
    that compare experiments read their data from one file."""
    options = dataset_of_seed(wildcards)
    owner = next(
        (
            name
            for name, experiment in EXPERIMENTS.items()
            if int(wildcards.seed) in experiment["ensemble"]["seeds"]
            and dataset_of_seed(Namespace(experiment=name, seed=wildcards.seed))
            == options
        ),
        wildcards.experiment,
    )
    return f"results/datasets/{owner}/seed{wildcards.seed}.nc"


def minima_options(wildcards):
    """The experiment's minima section with criterion "auto" resolved."""
    experiment = EXPERIMENTS[wildcards.experiment]
    options = dict(experiment["minima"])
    if options["criterion"] == "auto":
        # Without L2 the zero-loss set is a manifold: group by function (solution classes).
        isolated = experiment["training"]["l2"] > 0
        options["criterion"] = "function_and_parameters" if isolated else "function"
    return options


def starting_points(sections):
    """Input function: the ensemble's initial_points file, if it names one."""

    def files(wildcards):
        name = wildcards.get("experiment") or wildcards.get("ring")
        path = sections[name]["ensemble"]["initial_points"]
        return [path] if path else []

    return files


def ring_section(name):
    """Input function: one config section of the job's oscillator ring."""
    return lambda wildcards: RINGS[wildcards.ring][name]


def ring_shards(wildcards):
    n_shards = RINGS[wildcards.ring]["ensemble"]["n_shards"]
    return expand(
        "results/oscillators/relaxation/{ring}/seed{seed}/shard{shard}.nc",
        ring=wildcards.ring,
        seed=wildcards.seed,
        shard=range(n_shards),
    )


def ring_seeds():
    return [
        (name, seed)
        for name, ring in RINGS.items()
        for seed in ring["ensemble"]["seeds"]
    ]


def training_shards(wildcards):
    n_shards = EXPERIMENTS[wildcards.experiment]["ensemble"]["n_shards"]
    return expand(
        "results/training/{experiment}/seed{seed}/shard{shard}.nc",
        experiment=wildcards.experiment,
        seed=wildcards.seed,
        shard=range(n_shards),
    )


def experiment_seeds():
    return [
        (name, seed)
        for name, experiment in EXPERIMENTS.items()
        for seed in experiment["ensemble"]["seeds"]
    ]


def comparison_seeds():
    """(comparison, seed) for every seed that all of a comparison's experiments run."""
    return [
        (name, seed)
        for name, members in COMPARISONS.items()
        for seed in EXPERIMENTS[members[0]]["ensemble"]["seeds"]
        if all(seed in EXPERIMENTS[m]["ensemble"]["seeds"] for m in members)
    ]


def compared_minima(wildcards):
    return [
        f"results/minima/{experiment}/seed{wildcards.seed}.nc"
        for experiment in COMPARISONS[wildcards.comparison]
    ]


def reference_dataset(wildcards):
    return dataset_file(
        Namespace(experiment=COMPARISONS[wildcards.comparison][0], seed=wildcards.seed)
    )


def reference_minima_options(wildcards):
    return minima_options(Namespace(experiment=COMPARISONS[wildcards.comparison][0]))


def protocol_seeds():
    return [
        (name, seed)
        for name, protocols in PROTOCOLS.items()
        for seed in EXPERIMENTS[protocols["experiments"][0]]["ensemble"]["seeds"]
    ]


def protocol_results(stage):
    """Input function: one stage's result for each experiment of the job's protocols."""
    return lambda wildcards: [
        f"results/{stage}/{experiment}/seed{wildcards.seed}.nc"
        for experiment in PROTOCOLS[wildcards.protocols]["experiments"]
    ]


def connectivity_group_seeds():
    return [
        (name, seed)
        for name, members in CONNECTIVITY_GROUPS.items()
        for seed in EXPERIMENTS[members[0]]["ensemble"]["seeds"]
    ]


def grouped_connectivity(wildcards):
    return [
        f"results/connectivity/{experiment}/seed{wildcards.seed}.nc"
        for experiment in CONNECTIVITY_GROUPS[wildcards.group]
    ]


def group_graphs_over_seeds(wildcards):
    """Input function: every seed's graph of every experiment of a connectivity group."""
    return [
        f"results/connectivity/{experiment}/seed{seed}.nc"
        for experiment in CONNECTIVITY_GROUPS[wildcards.group]
        for seed in EXPERIMENTS[experiment]["ensemble"]["seeds"]
    ]


def jamming_section(name):
    """Input function: one config section of the job's jamming sweep."""
    return lambda wildcards: JAMMING[wildcards.jamming][name]


def jamming_dataset(wildcards):
    """prepare_dataset options of one jamming seed and input dimension: the pool holds the
    largest train size."""
    sweep = JAMMING[wildcards.jamming]
    return {
        **sweep["dataset"],
        "n_features": int(wildcards.features) or sweep["dataset"]["n_features"],
        "n_train": sweep["train_sizes"]["largest"],
        "seed": int(wildcards.seed),
    }


def jamming_network_dataset(wildcards):
    """The pool a sweep job fits: its seed's, in its network's input dimension."""
    sweep = JAMMING[wildcards.jamming]
    network = next(
        network
        for network in sweep["networks"]
        if (network["depth"], network["width"])
        == (int(wildcards.depth), int(wildcards.width))
    )
    features = jamming_features(sweep, network)
    return f"results/jamming/datasets/{wildcards.jamming}_d{features}_seed{wildcards.seed}.nc"


def jamming_runs(wildcards):
    sweep = JAMMING[wildcards.jamming]
    return [
        f"results/jamming/runs/{wildcards.jamming}/depth{network['depth']}_width{network['width']}_seed{seed}.nc"
        for network in sweep["networks"]
        for seed in sweep["seeds"]
    ]


def jamming_figures():
    """Phase diagram and gap distributions of every sweep; test error vs N where the
    labels can be learned (for random labels it is 1/2 by construction); the calibration
    against Cover's count where a perceptron fits random patterns."""
    figures = []
    for name, sweep in JAMMING.items():
        kinds = list(JAMMING_FIGURES)
        if sweep["dataset"]["kind"] != "random_patterns":
            kinds.append("jamming_test_error")
        elif any(network["depth"] == 0 for network in sweep["networks"]):
            kinds.append("jamming_cover")
        figures += [
            f"results/figures/{kind}/{name}.{ext}"
            for kind in kinds
            for ext in ("pdf", "png")
        ]
    return figures


def basin_geometry_seeds():
    return [(name, seed) for name, seed in experiment_seeds() if name in BASIN_GEOMETRY]


def slice_seeds():
    """(experiment, seed) of the basins sliced: the slices section's seeds, or every seed."""
    return [
        (name, seed)
        for name, seed in basin_geometry_seeds()
        if seed in EXPERIMENTS[name]["slices"].get("seeds", [seed])
    ]


def figure_seeds(pairs):
    """The (experiment, seed) pairs whose per-seed pictures are drawn: the experiment's
    figures.seeds, or every seed."""
    return [
        (name, seed)
        for name, seed in pairs
        if seed in EXPERIMENTS[name]["figures"].get("seeds", [seed])
    ]


def all_figures():
    per_experiment = (
        [
            f"results/figures/{figure}/{name}_seed{seed}.{ext}"
            for name, seed in figure_seeds(experiment_seeds())
            for figure in FIGURES
            for ext in ("pdf", "png")
        ]
        + [
            f"results/figures/{figure}/{name}_seed{seed}.{ext}"
            for name, seed in figure_seeds(basin_geometry_seeds())
            for figure in BASIN_GEOMETRY_FIGURES
            for ext in ("pdf", "png")
        ]
        + [
            f"results/figures/basin_slices/{name}_seed{seed}.{ext}"
            for name, seed in slice_seeds()
            for ext in ("pdf", "png")
        ]
    )
    per_comparison = [
        f"results/figures/dynamics_comparison/{name}_seed{seed}.{ext}"
        for name, seed in comparison_seeds()
        for ext in ("pdf", "png")
    ]
    summary = [
        "results/summary.csv",
        "results/figures/summary/study.pdf",
        "results/figures/summary/study.png",
    ]
    per_ring = [
        f"results/figures/{figure}/{name}_seed{seed}.{ext}"
        for name, seed in ring_seeds()
        for figure in RING_FIGURES
        for ext in ("pdf", "png")
    ]
    basin_sizes = [
        f"results/basin_sizes/{name}/seed{seed}.nc"
        for name, seed in experiment_seeds()
        if name in BASIN_SIZES
    ]
    connectivity = (
        [
            f"results/connectivity/{name}/seed{seed}.nc"
            for name, seed in experiment_seeds()
            if name in CONNECTED
        ]
        + [
            f"results/figures/{figure}/{name}_seed{seed}.{ext}"
            for name, seed in connectivity_group_seeds()
            for figure in CONNECTIVITY_FIGURES
            for ext in ("pdf", "png")
        ]
        + [
            f"results/figures/connectivity_comparison/{name}.{ext}"
            for name in CONNECTIVITY_GROUPS
            for ext in ("pdf", "png")
        ]
    )
    per_protocols = [
        f"results/figures/protocols/{name}_seed{seed}.{ext}"
        for name, seed in protocol_seeds()
        for ext in ("pdf", "png")
    ]
    enumeration = (
        [f"results/figures/local_entropy/perceptron.{ext}" for ext in ("pdf", "png")]
        if config.get("local_entropy")
        else []
    )
    # Every seed's basin analysis, also where no figure of that seed is drawn (figure_seeds).
    basin_analyses = [
        f"results/basins/{name}/seed{seed}.nc" for name, seed in experiment_seeds()
    ]
    return (
        per_experiment
        + basin_analyses
        + per_comparison
        + per_protocols
        + (summary if BASIN_GEOMETRY else [])
        + per_ring
        + (["results/oscillators/calibration.md"] if RINGS else [])
        + connectivity
        + basin_sizes
        + enumeration
        + jamming_figures()
        + answer_outputs()
    )


def answer_outputs():
    if not ANSWER["families"]:
        return []
    return ["results/answer.md"] + [
        f"results/figures/answer/study.{ext}" for ext in ("pdf", "png")
    ]
