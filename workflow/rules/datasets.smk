rule prepare_dataset:
    input:
        code=package_modules("data", "io"),
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
