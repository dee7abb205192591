# Basin shape: compact head or thin tentacles (basins.tentacles). Re-runs the experiment's
# dynamics from points on segments to members' starts and on rays around them.


rule measure_tentacles:
    input:
        minima="results/minima/{experiment}/seed{seed}.nc",
        basins="results/basins/{experiment}/seed{seed}.nc",
        rays="results/rays/{experiment}/seed{seed}.nc",
        dataset=dataset_file,
        shards=training_shards,
        code=code_dependencies("measure_tentacles"),
    output:
        "results/tentacles/{experiment}/seed{seed}.nc",
    log:
        "logs/measure_tentacles/{experiment}/seed{seed}.log",
    priority: 40
    conda:
        "../../envs/basins.yaml"
    resources:
        **engine_resources(),
    params:
        tentacles=section("tentacles"),
        training=section("training"),
        minima=minima_options,
        budget_factors=config["budget_factors"],
    script:
        "../scripts/measure_tentacles.py"
