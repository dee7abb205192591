rule compare_protocols:
    input:
        minima=protocol_results("minima"),
        flatness=protocol_results("flatness"),
        code=code_dependencies("compare_protocols"),
    output:
        "results/protocols/{protocols}/seed{seed}.nc",
    log:
        "logs/compare_protocols/{protocols}/seed{seed}.log",
    conda:
        "../../envs/basins.yaml"
    params:
        experiments=lambda wildcards: PROTOCOLS[wildcards.protocols]["experiments"],
        reference_sigma=lambda wildcards: PROTOCOLS[wildcards.protocols][
            "reference_sigma"
        ],
        n_starts=lambda wildcards: [
            EXPERIMENTS[name]["ensemble"]["n_members"]
            for name in PROTOCOLS[wildcards.protocols]["experiments"]
        ],
    script:
        "../scripts/compare_protocols.py"
