rule prepare_dataset:
    input:
        code=package_modules("data", "io"),
    output:
        "results/datasets/{experiment}.nc",
    params:
        dataset=section("dataset"),
    log:
        "logs/prepare_dataset/{experiment}.log",
    conda:
        "../../envs/basins.yaml"
    script:
        "../scripts/prepare_dataset.py"
