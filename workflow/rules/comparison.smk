rule compare_dynamics:
    input:
        minima=compared_minima,
        dataset=reference_dataset,
        code=code_dependencies("compare_dynamics"),
    output:
        netcdf="results/comparisons/{comparison}/seed{seed}.nc",
        markdown="results/comparisons/{comparison}/seed{seed}.md",
    log:
        "logs/compare_dynamics/{comparison}/seed{seed}.log",
    conda:
        "../../envs/basins.yaml"
    params:
        experiments=lambda wildcards: COMPARISONS[wildcards.comparison],
        ensembles=lambda wildcards: [
            EXPERIMENTS[name]["ensemble"] for name in COMPARISONS[wildcards.comparison]
        ],
        minima=reference_minima_options,
    script:
        "../scripts/compare_dynamics.py"
