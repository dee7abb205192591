rule connect_minima:
    input:
        minima="results/minima/{experiment}/seed{seed}.nc",
        dataset="results/datasets/{experiment}.nc",
        shards=training_shards,
        code=code_dependencies("connect_minima"),
    output:
        "results/connectivity/{experiment}/seed{seed}.nc",
    log:
        "logs/connect_minima/{experiment}/seed{seed}.log",
    conda:
        "../../envs/basins.yaml"
    resources:
        gpu=1 if config["use_gpu"] else 0,
        mem_mb=int(config["memory_budget_mb"]) + 1024,
    params:
        connectivity=section("connectivity"),
        training=section("training"),
        minima=minima_options,
        rerun_budget_factors=config["rerun_budget_factors"],
    script:
        "../scripts/connect_minima.py"
