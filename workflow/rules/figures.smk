rule figure_basin_sizes:
    input:
        basins="results/basins/{experiment}/seed{seed}.nc",
        code=package_modules("figures"),
    output:
        pdf="results/figures/basin_sizes/{experiment}_seed{seed}.pdf",
        png=report(
            "results/figures/basin_sizes/{experiment}_seed{seed}.png",
            caption="../report/basin_sizes.rst",
            category="Basin sizes",
        ),
    log:
        "logs/figure_basin_sizes/{experiment}_seed{seed}.log",
    conda:
        "../../envs/basins.yaml"
    script:
        "../scripts/figure.py"


rule figure_basin_vs_test_error:
    input:
        basins="results/basins/{experiment}/seed{seed}.nc",
        code=package_modules("figures"),
    output:
        pdf="results/figures/basin_vs_test_error/{experiment}_seed{seed}.pdf",
        png=report(
            "results/figures/basin_vs_test_error/{experiment}_seed{seed}.png",
            caption="../report/basin_vs_test_error.rst",
            category="Basin size vs test error",
        ),
    log:
        "logs/figure_basin_vs_test_error/{experiment}_seed{seed}.log",
    conda:
        "../../envs/basins.yaml"
    script:
        "../scripts/figure.py"


rule figure_travel_distance:
    input:
        basins="results/basins/{experiment}/seed{seed}.nc",
        code=package_modules("figures"),
    output:
        pdf="results/figures/travel_distance/{experiment}_seed{seed}.pdf",
        png=report(
            "results/figures/travel_distance/{experiment}_seed{seed}.png",
            caption="../report/travel_distance.rst",
            category="Distance from start to minimum",
        ),
    log:
        "logs/figure_travel_distance/{experiment}_seed{seed}.log",
    conda:
        "../../envs/basins.yaml"
    script:
        "../scripts/figure.py"
