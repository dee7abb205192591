rule probe_rays:
    input:
        minima="results/minima/{experiment}/seed{seed}.nc",
        basins="results/basins/{experiment}/seed{seed}.nc",
        dataset="results/datasets/{experiment}.nc",
        shards=training_shards,
        code=code_dependencies("probe_rays"),
    output:
        "results/rays/{experiment}/seed{seed}.nc",
    log:
        "logs/probe_rays/{experiment}/seed{seed}.log",
    conda:
        "../../envs/basins.yaml"
    resources:
        gpu=1 if config["use_gpu"] else 0,
        mem_mb=int(config["memory_budget_mb"]) + 1024,
    params:
        rays=section("rays"),
        training=section("training"),
        minima=minima_options,
        rerun_budget_factors=config["rerun_budget_factors"],
    script:
        "../scripts/probe_rays.py"
