rule connect_minima:
    input:
        minima="results/minima/{experiment}/seed{seed}.nc",
        dataset=dataset_file,
        shards=training_shards,
        code=code_dependencies("connect_minima"),
    output:
        "results/connectivity/{experiment}/seed{seed}.nc",
    log:
        "logs/connect_minima/{experiment}/seed{seed}.log",
    conda:
        "../../envs/basins.yaml"
    resources:
        **engine_resources(),
    params:
        connectivity=section("connectivity"),
        training=section("training"),
        minima=minima_options,
        budget_factors=config["budget_factors"],
    script:
        "../scripts/connect_minima.py"


rule compare_connectivity:
    input:
        graphs=group_graphs_over_seeds,
        code=code_dependencies("compare_connectivity"),
    output:
        "results/connectivity/groups/{group}.nc",
    log:
        "logs/compare_connectivity/{group}.log",
    conda:
        "../../envs/basins.yaml"
    params:
        experiments=lambda wildcards: CONNECTIVITY_GROUPS[wildcards.group],
        alpha=0.05,
    script:
        "../scripts/compare_connectivity.py"
