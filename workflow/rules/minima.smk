rule deduplicate_minima:
    input:
        shards=training_shards,
        code=package_modules("minima", "io"),
    output:
        "results/minima/{experiment}/seed{seed}.nc",
    log:
        "logs/deduplicate_minima/{experiment}/seed{seed}.log",
    conda:
        "../../envs/basins.yaml"
    params:
        minima=section("minima"),
    script:
        "../scripts/deduplicate_minima.py"
