# Figure rules, generated from one table: name -> the figure's named inputs (each a dataset the
# figure function takes), its file stem (wildcards), its report category and optional params
# (`figure`: another figure function drawn for it; `module`: a figures module other than
# basins.figures; `title`). Rule figure_<name> draws results/figures/<name>/<stem>.{pdf,png}
# with the caption workflow/report/<name>.rst. Adding a figure is one entry here.
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


for figure_name, figure in FIGURE_TABLE.items():

    rule:
        name:
            f"figure_{figure_name}"
        input:
            **figure["inputs"],
            code=code_dependencies(
                "figure", modules=[figure.get("params", {}).get("module", "figures")]
            ),
        output:
            pdf=f"results/figures/{figure_name}/{figure['stem']}.pdf",
            png=report(
                f"results/figures/{figure_name}/{figure['stem']}.png",
                caption=f"../report/{figure_name}.rst",
                category=figure["category"],
            ),
        log:
            f"logs/figure_{figure_name}/{figure['stem']}.log",
        localrule: True
        conda:
            "../../envs/basins.yaml"
        params:
            **figure.get("params", {}),
        script:
            "../scripts/figure.py"
