rule prepare_dataset:
    input:
        code=code_dependencies("prepare_dataset"),
    output:
        "results/datasets/{experiment}.nc",
    log:
        "logs/prepare_dataset/{experiment}.log",
    conda:
        "../../envs/basins.yaml"
    params:
        dataset=section("dataset"),
    script:
        "../scripts/prepare_dataset.py"
