rule deduplicate_minima:
    input:
        shards=training_shards,
        code=package_modules("minima", "io"),
    output:
        "results/minima/{experiment}/seed{seed}.nc",
    params:
        minima=section("minima"),
    log:
        "logs/deduplicate_minima/{experiment}/seed{seed}.log",
    conda:
        "../../envs/basins.yaml"
    script:
        "../scripts/deduplicate_minima.py"
