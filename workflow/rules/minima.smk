rule deduplicate_minima:
    input:
        shards=training_shards,
        dataset=dataset_file,
        code=code_dependencies("deduplicate_minima"),
    output:
        "results/minima/{experiment}/seed{seed}.nc",
    log:
        "logs/deduplicate_minima/{experiment}/seed{seed}.log",
    priority: 20
    conda:
        "../../envs/basins.yaml"
    params:
        minima=minima_options,
    script:
        "../scripts/deduplicate_minima.py"
