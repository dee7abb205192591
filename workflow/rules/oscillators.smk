# The calibration landscape: rings of Kuramoto oscillators, whose basins (the twisted states)
# are known, run through the same engine, basin statistics and ray probes as the networks.


rule relax_ring:
    input:
        starting_points=starting_points(RINGS),
        code=code_dependencies("relax_ring"),
    output:
        "results/oscillators/relaxation/{ring}/seed{seed}/shard{shard}.nc",
    log:
        "logs/relax_ring/{ring}/seed{seed}/shard{shard}.log",
    conda:
        "../../envs/basins.yaml"
    resources:
        **engine_resources(),
    params:
        ring=ring_section("ring"),
        relaxation=ring_section("relaxation"),
        ensemble=ring_section("ensemble"),
        budget_factors=config["budget_factors"],
        checkpoint="results/checkpoints/oscillators/{ring}/seed{seed}/shard{shard}.pt",
    script:
        "../scripts/relax_ring.py"


rule classify_twisted_states:
    input:
        shards=ring_shards,
        code=code_dependencies("classify_twisted_states"),
    output:
        "results/oscillators/minima/{ring}/seed{seed}.nc",
    log:
        "logs/classify_twisted_states/{ring}/seed{seed}.log",
    conda:
        "../../envs/basins.yaml"
    params:
        twisted_states=ring_section("twisted_states"),
    script:
        "../scripts/classify_twisted_states.py"


rule analyze_ring_basins:
    input:
        minima="results/oscillators/minima/{ring}/seed{seed}.nc",
        shards=ring_shards,
        code=code_dependencies("analyze_ring_basins"),
    output:
        "results/oscillators/basins/{ring}/seed{seed}.nc",
    log:
        "logs/analyze_ring_basins/{ring}/seed{seed}.log",
    conda:
        "../../envs/basins.yaml"
    params:
        basins=ring_section("basins"),
    script:
        "../scripts/analyze_ring_basins.py"


rule probe_ring_rays:
    input:
        minima="results/oscillators/minima/{ring}/seed{seed}.nc",
        basins="results/oscillators/basins/{ring}/seed{seed}.nc",
        code=code_dependencies("probe_ring_rays"),
    output:
        "results/oscillators/rays/{ring}/seed{seed}.nc",
    log:
        "logs/probe_ring_rays/{ring}/seed{seed}.log",
    conda:
        "../../envs/basins.yaml"
    resources:
        **engine_resources(),
    params:
        rays=ring_section("rays"),
        relaxation=ring_section("relaxation"),
        twisted_states=ring_section("twisted_states"),
        budget_factors=config["budget_factors"],
    script:
        "../scripts/probe_ring_rays.py"


rule measure_ring_tentacles:
    input:
        minima="results/oscillators/minima/{ring}/seed{seed}.nc",
        basins="results/oscillators/basins/{ring}/seed{seed}.nc",
        rays="results/oscillators/rays/{ring}/seed{seed}.nc",
        shards=ring_shards,
        code=code_dependencies("measure_ring_tentacles"),
    output:
        "results/oscillators/tentacles/{ring}/seed{seed}.nc",
    log:
        "logs/measure_ring_tentacles/{ring}/seed{seed}.log",
    conda:
        "../../envs/basins.yaml"
    resources:
        **engine_resources(),
    params:
        tentacles=ring_section("tentacles"),
        relaxation=ring_section("relaxation"),
        twisted_states=ring_section("twisted_states"),
        budget_factors=config["budget_factors"],
    script:
        "../scripts/measure_ring_tentacles.py"


rule estimate_ring_basin_sizes:
    input:
        minima="results/oscillators/minima/{ring}/seed{seed}.nc",
        shards=ring_shards,
        code=code_dependencies("estimate_ring_basin_sizes"),
    output:
        "results/oscillators/basin_sizes/{ring}/seed{seed}.nc",
    log:
        "logs/estimate_ring_basin_sizes/{ring}/seed{seed}.log",
    priority: 40
    conda:
        "../../envs/basins.yaml"
    resources:
        **engine_resources(),
    params:
        basin_sizes=ring_section("basin_sizes"),
        relaxation=ring_section("relaxation"),
        twisted_states=ring_section("twisted_states"),
        budget_factors=config["budget_factors"],
    script:
        "../scripts/estimate_ring_basin_sizes.py"


rule summarize_rings:
    input:
        basins=[
            f"results/oscillators/basins/{name}/seed{seed}.nc"
            for name, seed in ring_seeds()
        ],
        tentacles=[
            f"results/oscillators/tentacles/{name}/seed{seed}.nc"
            for name, seed in ring_seeds()
        ],
        basin_sizes=[
            f"results/oscillators/basin_sizes/{name}/seed{seed}.nc"
            for name, seed in ring_seeds()
            if "basin_sizes" in RINGS[name]
        ],
        code=code_dependencies("summarize_rings"),
    output:
        netcdf="results/oscillators/calibration.nc",
        markdown="results/oscillators/calibration.md",
    log:
        "logs/summarize_rings.log",
    localrule: True
    conda:
        "../../envs/basins.yaml"
    params:
        labels=[f"{name}/seed{seed}" for name, seed in ring_seeds()],
        basin_size_labels=[
            f"{name}/seed{seed}"
            for name, seed in ring_seeds()
            if "basin_sizes" in RINGS[name]
        ],
    script:
        "../scripts/summarize_rings.py"
