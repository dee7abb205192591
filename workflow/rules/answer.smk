# A quick job: runs on the submit host, not as a cluster job.
rule answer_hypothesis:
    input:
        minima=[
            f"results/minima/{name}/seed{seed}.nc"
            for name, seed in answer_replicates()
        ],
        flatness=[
            f"results/flatness/{name}/seed{seed}.nc"
            for name, seed in answer_replicates()
        ],
        datasets=[
            dataset_file(Namespace(experiment=name, seed=seed))
            for name, seed in answer_replicates()
        ],
        tentacles=[
            f"results/tentacles/{name}/seed{seed}.nc"
            for name, seed in answer_replicates()
            if name in BASIN_GEOMETRY
        ],
        rays=[
            f"results/rays/{name}/seed{seed}.nc"
            for name, seed in answer_replicates()
            if name in BASIN_GEOMETRY
        ],
        basin_sizes=[
            f"results/basin_sizes/{name}/seed{seed}.nc"
            for name, seed in answer_replicates()
            if name in BASIN_SIZES
        ],
        code=code_dependencies("answer_hypothesis"),
    output:
        netcdf="results/answer.nc",
        markdown="results/answer.md",
    log:
        "logs/answer_hypothesis.log",
    localrule: True
    conda:
        "../../envs/basins.yaml"
    params:
        replicates=answer_replicates(),
        answer=config["answer"],
    script:
        "../scripts/answer_hypothesis.py"
