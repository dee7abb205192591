# Figure rules, generated from two tables. FIGURE_TABLE: name -> the figure's named inputs (each
# a dataset the figure function takes), its file stem (wildcards), its report category and
# optional params (`figure`: another figure function drawn for it; `module`: a figures module
# other than basins.figures; `title`). FIGURE_SETS: figures of one stem drawn by one job, rule
# figures_<set> (a job's imports cost more than drawing a figure, so the figures of one subject
# share them); every other figure has its own rule figure_<name>. Either way the figure is
# results/figures/<name>/<stem>.{pdf,png} with the caption workflow/report/<name>.rst. Adding
# a figure is one entry in FIGURE_TABLE (and in a set, where it belongs to one).
EXPERIMENT, RING = "{experiment}_seed{seed}", "{ring}_seed{seed}"
FIGURE_TABLE = {
    "basin_sizes": dict(
        inputs={"basins": "results/basins/{experiment}/seed{seed}.nc"},
        stem=EXPERIMENT,
        category="Basin sizes",
    ),
    "basin_vs_test_error": dict(
        inputs={"basins": "results/basins/{experiment}/seed{seed}.nc"},
        stem=EXPERIMENT,
        category="Basin size vs test error",
    ),
    "travel_distance": dict(
        inputs={"basins": "results/basins/{experiment}/seed{seed}.nc"},
        stem=EXPERIMENT,
        category="Distance from start to minimum",
    ),
    "return_probability": dict(
        inputs={
            "rays": "results/rays/{experiment}/seed{seed}.nc",
            "basins": "results/basins/{experiment}/seed{seed}.nc",
            "tentacles": "results/tentacles/{experiment}/seed{seed}.nc",
        },
        stem=EXPERIMENT,
        category="Return probability",
    ),
    "tentacles": dict(
        inputs={
            "tentacles": "results/tentacles/{experiment}/seed{seed}.nc",
            "basins": "results/basins/{experiment}/seed{seed}.nc",
            "rays": "results/rays/{experiment}/seed{seed}.nc",
        },
        stem=EXPERIMENT,
        category="Tentacles",
    ),
    "basin_shape": dict(
        inputs={
            "tentacles": "results/tentacles/{experiment}/seed{seed}.nc",
            "basins": "results/basins/{experiment}/seed{seed}.nc",
        },
        stem=EXPERIMENT,
        category="Tentacles",
    ),
    "basin_slices": dict(
        inputs={"slices": "results/slices/{experiment}/seed{seed}.nc"},
        stem=EXPERIMENT,
        category="Basin slices",
    ),
    "dynamics_comparison": dict(
        inputs={"comparison": "results/comparisons/{comparison}/seed{seed}.nc"},
        stem="{comparison}_seed{seed}",
        category="Dynamics comparison",
    ),
    "summary": dict(
        inputs={"summary": "results/summary.nc"}, stem="study", category="Summary"
    ),
    "answer": dict(
        inputs={"answer": "results/answer.nc"},
        stem="study",
        category="1. The answer",
        params={"module": "answer_figures"},
    ),
    "winding_distribution": dict(
        inputs={"basins": "results/oscillators/basins/{ring}/seed{seed}.nc"},
        stem=RING,
        category="Oscillator calibration",
    ),
    "ring_return_probability": dict(
        inputs={
            "rays": "results/oscillators/rays/{ring}/seed{seed}.nc",
            "basins": "results/oscillators/basins/{ring}/seed{seed}.nc",
            "tentacles": "results/oscillators/tentacles/{ring}/seed{seed}.nc",
        },
        stem=RING,
        category="Oscillator calibration",
        params={"figure": "figure_return_probability"},
    ),
    "ring_tentacles": dict(
        inputs={
            "tentacles": "results/oscillators/tentacles/{ring}/seed{seed}.nc",
            "basins": "results/oscillators/basins/{ring}/seed{seed}.nc",
            "rays": "results/oscillators/rays/{ring}/seed{seed}.nc",
        },
        stem=RING,
        category="Oscillator calibration",
        params={"figure": "figure_tentacles"},
    ),
    "ring_basin_shape": dict(
        inputs={
            "tentacles": "results/oscillators/tentacles/{ring}/seed{seed}.nc",
            "basins": "results/oscillators/basins/{ring}/seed{seed}.nc",
        },
        stem=RING,
        category="Oscillator calibration",
        params={"figure": "figure_basin_shape"},
    ),
    "flatness": dict(
        inputs={
            "flatness": "results/flatness/{experiment}/seed{seed}.nc",
            "basins": "results/basins/{experiment}/seed{seed}.nc",
        },
        stem=EXPERIMENT,
        category="Flatness",
    ),
    "local_energy": dict(
        inputs={
            "flatness": "results/flatness/{experiment}/seed{seed}.nc",
            "basins": "results/basins/{experiment}/seed{seed}.nc",
        },
        stem=EXPERIMENT,
        category="Flatness",
    ),
    "local_entropy": dict(
        inputs={"enumeration": "results/local_entropy/perceptron.nc"},
        stem="perceptron",
        category="Flatness",
        params={"title": "exact enumeration"},
    ),
    "disconnectivity": dict(
        inputs={"connectivity": grouped_connectivity},
        stem="{group}_seed{seed}",
        category="Connectivity of minima",
    ),
    "barriers": dict(
        inputs={"connectivity": grouped_connectivity},
        stem="{group}_seed{seed}",
        category="Connectivity of minima",
    ),
    "connectivity_comparison": dict(
        inputs={"comparison": "results/connectivity/groups/{group}.nc"},
        stem="{group}",
        category="Connectivity of minima",
    ),
    "jamming": dict(
        inputs={"jamming": "results/jamming/{jamming}.nc"},
        stem="{jamming}",
        category="Jamming transition",
        params={"module": "jamming_figures"},
    ),
    "jamming_gaps": dict(
        inputs={"jamming": "results/jamming/{jamming}.nc"},
        stem="{jamming}",
        category="Jamming transition",
        params={"module": "jamming_figures"},
    ),
    "jamming_cover": dict(
        inputs={"jamming": "results/jamming/{jamming}.nc"},
        stem="{jamming}",
        category="Jamming transition",
        params={"module": "jamming_figures"},
    ),
    "jamming_test_error": dict(
        inputs={"jamming": "results/jamming/{jamming}.nc"},
        stem="{jamming}",
        category="Jamming transition",
        params={"module": "jamming_figures"},
    ),
    "protocols": dict(
        inputs={"protocols": "results/protocols/{protocols}/seed{seed}.nc"},
        stem="{protocols}_seed{seed}",
        category="Flatness",
    ),
}


FIGURE_SETS = {
    "basins": FIGURES,
    "basin_geometry": BASIN_GEOMETRY_FIGURES,
    "rings": RING_FIGURES,
    "connectivity": CONNECTIVITY_FIGURES,
    "jamming": JAMMING_FIGURES,
}
FIGURE_JOBS = {f"figures_{name}": members for name, members in FIGURE_SETS.items()} | {
    f"figure_{name}": [name]
    for name in FIGURE_TABLE
    if not any(name in members for members in FIGURE_SETS.values())
}


def figure_job(members):
    """Inputs, outputs and params of the job that draws the figures ``members`` (one stem)."""
    (stem,) = {FIGURE_TABLE[name]["stem"] for name in members}
    inputs, modules, outputs, drawn = {}, set(), {}, {}
    for name in members:
        figure = FIGURE_TABLE[name]
        for key, path in figure["inputs"].items():
            if inputs.setdefault(key, path) != path:
                raise ValueError(f"figure {name}: input {key!r} differs within its set")
        params = figure.get("params", {})
        modules.add(params.get("module", "figures"))
        outputs[f"{name}_pdf"] = f"results/figures/{name}/{stem}.pdf"
        outputs[f"{name}_png"] = report(
            f"results/figures/{name}/{stem}.png",
            caption=f"../report/{name}.rst",
            category=figure["category"],
        )
        drawn[name] = dict(params, inputs=list(figure["inputs"]))
    return inputs, sorted(modules), outputs, stem, drawn


for job_name, members in FIGURE_JOBS.items():
    inputs, modules, outputs, stem, drawn = figure_job(members)

    rule:
        name:
            job_name
        input:
            **inputs,
            code=code_dependencies("figure", modules=modules),
        output:
            **outputs,
        log:
            f"logs/{job_name}/{stem}.log",
        localrule: True
        conda:
            "../../envs/basins.yaml"
        params:
            figures=drawn,
        script:
            "../scripts/figure.py"
