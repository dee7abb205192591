rule probe_rays:
    input:
        minima="results/minima/{experiment}/seed{seed}.nc",
        basins="results/basins/{experiment}/seed{seed}.nc",
        dataset=dataset_file,
        shards=training_shards,
        code=code_dependencies("probe_rays"),
    output:
        "results/rays/{experiment}/seed{seed}.nc",
    log:
        "logs/probe_rays/{experiment}/seed{seed}.log",
    # The chain to the longest jobs (training, catalogue, basins, rays) goes first, so they
    # do not run alone at the end of a study while cores stand idle.
    priority: 40
    conda:
        "../../envs/basins.yaml"
    resources:
        **engine_resources(),
    params:
        rays=section("rays"),
        min_members=lambda wildcards: EXPERIMENTS[wildcards.experiment]["tentacles"][
            "min_members"
        ],
        fit_threshold=config["answer"]["fit_threshold"],
        match_factor=config["answer"]["match_factor"],
        training=section("training"),
        minima=minima_options,
        budget_factors=config["budget_factors"],
    script:
        "../scripts/probe_rays.py"
