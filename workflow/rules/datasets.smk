# A quick job: runs on the submit host, not as a cluster job.
rule prepare_dataset:
    input:
        code=code_dependencies("prepare_dataset"),
    output:
        "results/datasets/{experiment}/seed{seed}.nc",
    log:
        "logs/prepare_dataset/{experiment}/seed{seed}.log",
    # The head of the longest chains (training, catalogue, basins, rays): first of all.
    priority: 50
    localrule: True
    conda:
        "../../envs/basins.yaml"
    params:
        dataset=dataset_of_seed,
    script:
        "../scripts/prepare_dataset.py"
