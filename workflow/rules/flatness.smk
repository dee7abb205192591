rule measure_flatness:
    input:
        minima="results/minima/{experiment}/seed{seed}.nc",
        dataset=dataset_file,
        code=code_dependencies("measure_flatness"),
    output:
        "results/flatness/{experiment}/seed{seed}.nc",
    log:
        "logs/measure_flatness/{experiment}/seed{seed}.log",
    conda:
        "../../envs/basins.yaml"
    resources:
        **engine_resources(),
    params:
        flatness=section("flatness"),
        training=section("training"),
    script:
        "../scripts/measure_flatness.py"
