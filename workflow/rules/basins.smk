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


rule measure_tentacles:
    input:
        basins="results/basins/{experiment}/seed{seed}.nc",
        rays="results/rays/{experiment}/seed{seed}.nc",
        code=code_dependencies("measure_tentacles"),
    output:
        "results/tentacles/{experiment}/seed{seed}.nc",
    log:
        "logs/measure_tentacles/{experiment}/seed{seed}.log",
    conda:
        "../../envs/basins.yaml"
    script:
        "../scripts/measure_tentacles.py"
