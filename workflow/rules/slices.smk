rule slice_basins:
    input:
        minima="results/minima/{experiment}/seed{seed}.nc",
        dataset=dataset_file,
        shards=training_shards,
        code=code_dependencies("slice_basins"),
    output:
        "results/slices/{experiment}/seed{seed}.nc",
    log:
        "logs/slice_basins/{experiment}/seed{seed}.log",
    priority: 35
    conda:
        "../../envs/basins.yaml"
    resources:
        **engine_resources(),
    params:
        slices=slicing_options,
        training=section("training"),
        minima=minima_options,
        budget_factors=config["budget_factors"],
    script:
        "../scripts/slice_basins.py"
