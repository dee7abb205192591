rule enumerate_local_entropy:
    input:
        code=code_dependencies("enumerate_local_entropy"),
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
