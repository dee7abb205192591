rule analyze_basins:
    input:
        minima="results/minima/{experiment}/seed{seed}.nc",
        shards=training_shards,
        code=code_dependencies("analyze_basins"),
    output:
        "results/basins/{experiment}/seed{seed}.nc",
    log:
        "logs/analyze_basins/{experiment}/seed{seed}.log",
    priority: 30
    conda:
        "../../envs/basins.yaml"
    params:
        basins=section("basins"),
    script:
        "../scripts/analyze_basins.py"
