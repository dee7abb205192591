rule train_ensemble:
    input:
        dataset=dataset_file,
        starting_points=starting_points(EXPERIMENTS),
        code=code_dependencies("train_ensemble"),
    output:
        "results/training/{experiment}/seed{seed}/shard{shard}.nc",
    log:
        "logs/train_ensemble/{experiment}/seed{seed}/shard{shard}.log",
    priority: 10
    conda:
        "../../envs/basins.yaml"
    resources:
        **engine_resources(),
    params:
        model=section("model"),
        training=section("training"),
        ensemble=section("ensemble"),
        budget_factors=config["budget_factors"],
        checkpoint="results/checkpoints/{experiment}/seed{seed}/shard{shard}.pt",
    script:
        "../scripts/train_ensemble.py"
