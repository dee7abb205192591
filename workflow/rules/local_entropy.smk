rule enumerate_local_entropy:
    input:
        code=package_modules("local_entropy", "io"),
    output:
        "results/local_entropy/perceptron.nc",
    log:
        "logs/enumerate_local_entropy.log",
    conda:
        "../../envs/basins.yaml"
    params:
        local_entropy=config.get("local_entropy"),
    script:
        "../scripts/enumerate_local_entropy.py"
