# Basin fractions too small to count (basins.basin_sizes): thermodynamic integration inside each
# basin, re-running the experiment's dynamics from every point its walk proposes; the largest
# basins are measured too, as the check against counting.


rule estimate_basin_sizes:
    input:
        minima="results/minima/{experiment}/seed{seed}.nc",
        dataset=dataset_file,
        shards=training_shards,
        code=code_dependencies("estimate_basin_sizes"),
    output:
        "results/basin_sizes/{experiment}/seed{seed}.nc",
    log:
        "logs/estimate_basin_sizes/{experiment}/seed{seed}.log",
    priority: 40
    conda:
        "../../envs/basins.yaml"
    resources:
        **engine_resources(),
    params:
        basin_sizes=section("basin_sizes"),
        min_members=lambda wildcards: EXPERIMENTS[wildcards.experiment]["tentacles"][
            "min_members"
        ],
        fit_threshold=config["answer"]["fit_threshold"],
        model=section("model"),
        training=section("training"),
        minima=minima_options,
        budget_factors=config["budget_factors"],
    script:
        "../scripts/estimate_basin_sizes.py"
