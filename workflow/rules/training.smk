rule train_ensemble:
    input:
        dataset="results/datasets/{experiment}.nc",
        starting_points=starting_points(EXPERIMENTS),
        code=code_dependencies("train_ensemble"),
    output:
        "results/training/{experiment}/seed{seed}/shard{shard}.nc",
    log:
        "logs/train_ensemble/{experiment}/seed{seed}/shard{shard}.log",
    conda:
        "../../envs/basins.yaml"
    resources:
        gpu=1 if config["use_gpu"] else 0,
        mem_mb=int(config["memory_budget_mb"]) + 1024,
    params:
        model=section("model"),
        training=section("training"),
        ensemble=section("ensemble"),
        checkpoint="results/checkpoints/{experiment}/seed{seed}/shard{shard}.pt",
    script:
        "../scripts/train_ensemble.py"
