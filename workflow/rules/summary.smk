# A quick job: runs on the submit host, not as a cluster job.
rule summarize_study:
    input:
        basins=[
            f"results/basins/{name}/seed{seed}.nc"
            for name, seed in basin_geometry_seeds()
        ],
        tentacles=[
            f"results/tentacles/{name}/seed{seed}.nc"
            for name, seed in basin_geometry_seeds()
        ],
        flatness=[
            f"results/flatness/{name}/seed{seed}.nc"
            for name, seed in basin_geometry_seeds()
        ],
        code=code_dependencies("summarize_study"),
    output:
        netcdf="results/summary.nc",
        csv="results/summary.csv",
        matched="results/summary_matched.csv",
    log:
        "logs/summarize_study.log",
    localrule: True
    conda:
        "../../envs/basins.yaml"
    params:
        labels=[f"{name}/seed{seed}" for name, seed in basin_geometry_seeds()],
        match_factor=config["answer"]["match_factor"],
    script:
        "../scripts/summarize_study.py"
