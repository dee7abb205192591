# A quick job: runs on the submit host, not as a cluster job.
rule prepare_jamming_data:
    input:
        code=code_dependencies("prepare_dataset"),
    output:
        "results/jamming/datasets/{jamming}_d{features}_seed{seed}.nc",
    log:
        "logs/prepare_jamming_data/{jamming}_d{features}_seed{seed}.log",
    localrule: True
    conda:
        "../../envs/basins.yaml"
    params:
        dataset=jamming_dataset,
    script:
        "../scripts/prepare_dataset.py"


rule sweep_jamming:
    input:
        dataset=jamming_network_dataset,
        code=code_dependencies("sweep_jamming"),
    output:
        "results/jamming/runs/{jamming}/depth{depth}_width{width}_seed{seed}.nc",
    log:
        "logs/sweep_jamming/{jamming}/depth{depth}_width{width}_seed{seed}.log",
    conda:
        "../../envs/basins.yaml"
    resources:
        **engine_resources(),
    params:
        model=jamming_section("model"),
        training=jamming_section("training"),
        train_sizes=jamming_section("train_sizes"),
        checkpoint="results/checkpoints/jamming/{jamming}/depth{depth}_width{width}_seed{seed}.pt",
    script:
        "../scripts/sweep_jamming.py"


rule analyze_jamming:
    input:
        runs=jamming_runs,
        code=code_dependencies("analyze_jamming"),
    output:
        "results/jamming/{jamming}.nc",
    log:
        "logs/analyze_jamming/{jamming}.log",
    conda:
        "../../envs/basins.yaml"
    params:
        analysis=jamming_section("analysis"),
    script:
        "../scripts/analyze_jamming.py"
