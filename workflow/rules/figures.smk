rule figure_basin_sizes:
    input:
        basins="results/basins/{experiment}/seed{seed}.nc",
        code=code_dependencies("figure"),
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
        code=code_dependencies("figure"),
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
        code=code_dependencies("figure"),
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


rule figure_return_probability:
    input:
        rays="results/rays/{experiment}/seed{seed}.nc",
        basins="results/basins/{experiment}/seed{seed}.nc",
        code=code_dependencies("figure"),
    output:
        pdf="results/figures/return_probability/{experiment}_seed{seed}.pdf",
        png=report(
            "results/figures/return_probability/{experiment}_seed{seed}.png",
            caption="../report/return_probability.rst",
            category="Return probability",
        ),
    log:
        "logs/figure_return_probability/{experiment}_seed{seed}.log",
    conda:
        "../../envs/basins.yaml"
    script:
        "../scripts/figure.py"


rule figure_tentacles:
    input:
        tentacles="results/tentacles/{experiment}/seed{seed}.nc",
        basins="results/basins/{experiment}/seed{seed}.nc",
        rays="results/rays/{experiment}/seed{seed}.nc",
        code=code_dependencies("figure"),
    output:
        pdf="results/figures/tentacles/{experiment}_seed{seed}.pdf",
        png=report(
            "results/figures/tentacles/{experiment}_seed{seed}.png",
            caption="../report/tentacles.rst",
            category="Tentacles",
        ),
    log:
        "logs/figure_tentacles/{experiment}_seed{seed}.log",
    conda:
        "../../envs/basins.yaml"
    script:
        "../scripts/figure.py"


rule figure_basin_slices:
    input:
        slices="results/slices/{experiment}/seed{seed}.nc",
        code=code_dependencies("figure"),
    output:
        pdf="results/figures/basin_slices/{experiment}_seed{seed}.pdf",
        png=report(
            "results/figures/basin_slices/{experiment}_seed{seed}.png",
            caption="../report/basin_slices.rst",
            category="Basin slices",
        ),
    log:
        "logs/figure_basin_slices/{experiment}_seed{seed}.log",
    conda:
        "../../envs/basins.yaml"
    script:
        "../scripts/figure.py"


rule figure_dynamics_comparison:
    input:
        comparison="results/comparisons/{comparison}/seed{seed}.nc",
        code=code_dependencies("figure"),
    output:
        pdf="results/figures/dynamics_comparison/{comparison}_seed{seed}.pdf",
        png=report(
            "results/figures/dynamics_comparison/{comparison}_seed{seed}.png",
            caption="../report/dynamics_comparison.rst",
            category="Dynamics comparison",
        ),
    log:
        "logs/figure_dynamics_comparison/{comparison}_seed{seed}.log",
    conda:
        "../../envs/basins.yaml"
    script:
        "../scripts/figure.py"


rule figure_summary:
    input:
        summary="results/summary.nc",
        code=code_dependencies("figure"),
    output:
        pdf="results/figures/summary/study.pdf",
        png=report(
            "results/figures/summary/study.png",
            caption="../report/summary.rst",
            category="Summary",
        ),
    log:
        "logs/figure_summary/study.log",
    conda:
        "../../envs/basins.yaml"
    script:
        "../scripts/figure.py"


rule figure_winding_distribution:
    input:
        basins="results/oscillators/basins/{ring}/seed{seed}.nc",
        code=code_dependencies("figure"),
    output:
        pdf="results/figures/winding_distribution/{ring}_seed{seed}.pdf",
        png=report(
            "results/figures/winding_distribution/{ring}_seed{seed}.png",
            caption="../report/winding_distribution.rst",
            category="Oscillator calibration",
        ),
    log:
        "logs/figure_winding_distribution/{ring}_seed{seed}.log",
    conda:
        "../../envs/basins.yaml"
    script:
        "../scripts/figure.py"


rule figure_ring_return_probability:
    input:
        rays="results/oscillators/rays/{ring}/seed{seed}.nc",
        basins="results/oscillators/basins/{ring}/seed{seed}.nc",
        code=code_dependencies("figure"),
    output:
        pdf="results/figures/ring_return_probability/{ring}_seed{seed}.pdf",
        png=report(
            "results/figures/ring_return_probability/{ring}_seed{seed}.png",
            caption="../report/ring_return_probability.rst",
            category="Oscillator calibration",
        ),
    log:
        "logs/figure_ring_return_probability/{ring}_seed{seed}.log",
    conda:
        "../../envs/basins.yaml"
    params:
        figure="figure_return_probability",
    script:
        "../scripts/figure.py"


rule figure_ring_tentacles:
    input:
        tentacles="results/oscillators/tentacles/{ring}/seed{seed}.nc",
        basins="results/oscillators/basins/{ring}/seed{seed}.nc",
        rays="results/oscillators/rays/{ring}/seed{seed}.nc",
        code=code_dependencies("figure"),
    output:
        pdf="results/figures/ring_tentacles/{ring}_seed{seed}.pdf",
        png=report(
            "results/figures/ring_tentacles/{ring}_seed{seed}.png",
            caption="../report/ring_tentacles.rst",
            category="Oscillator calibration",
        ),
    log:
        "logs/figure_ring_tentacles/{ring}_seed{seed}.log",
    conda:
        "../../envs/basins.yaml"
    params:
        figure="figure_tentacles",
    script:
        "../scripts/figure.py"


rule figure_flatness:
    input:
        flatness="results/flatness/{experiment}/seed{seed}.nc",
        basins="results/basins/{experiment}/seed{seed}.nc",
        code=code_dependencies("figure"),
    output:
        pdf="results/figures/flatness/{experiment}_seed{seed}.pdf",
        png=report(
            "results/figures/flatness/{experiment}_seed{seed}.png",
            caption="../report/flatness.rst",
            category="Flatness",
        ),
    log:
        "logs/figure_flatness/{experiment}_seed{seed}.log",
    conda:
        "../../envs/basins.yaml"
    script:
        "../scripts/figure.py"


rule figure_local_energy:
    input:
        flatness="results/flatness/{experiment}/seed{seed}.nc",
        basins="results/basins/{experiment}/seed{seed}.nc",
        code=code_dependencies("figure"),
    output:
        pdf="results/figures/local_energy/{experiment}_seed{seed}.pdf",
        png=report(
            "results/figures/local_energy/{experiment}_seed{seed}.png",
            caption="../report/local_energy.rst",
            category="Flatness",
        ),
    log:
        "logs/figure_local_energy/{experiment}_seed{seed}.log",
    conda:
        "../../envs/basins.yaml"
    script:
        "../scripts/figure.py"


rule figure_local_entropy:
    input:
        enumeration="results/local_entropy/perceptron.nc",
        code=code_dependencies("figure"),
    output:
        pdf="results/figures/local_entropy/perceptron.pdf",
        png=report(
            "results/figures/local_entropy/perceptron.png",
            caption="../report/local_entropy.rst",
            category="Flatness",
        ),
    log:
        "logs/figure_local_entropy.log",
    conda:
        "../../envs/basins.yaml"
    params:
        title="exact enumeration",
    script:
        "../scripts/figure.py"


rule figure_disconnectivity:
    input:
        connectivity=grouped_connectivity,
        code=code_dependencies("figure"),
    output:
        pdf="results/figures/disconnectivity/{group}_seed{seed}.pdf",
        png=report(
            "results/figures/disconnectivity/{group}_seed{seed}.png",
            caption="../report/disconnectivity.rst",
            category="Connectivity of minima",
        ),
    log:
        "logs/figure_disconnectivity/{group}_seed{seed}.log",
    conda:
        "../../envs/basins.yaml"
    script:
        "../scripts/figure.py"


rule figure_barriers:
    input:
        connectivity=grouped_connectivity,
        code=code_dependencies("figure"),
    output:
        pdf="results/figures/barriers/{group}_seed{seed}.pdf",
        png=report(
            "results/figures/barriers/{group}_seed{seed}.png",
            caption="../report/barriers.rst",
            category="Connectivity of minima",
        ),
    log:
        "logs/figure_barriers/{group}_seed{seed}.log",
    conda:
        "../../envs/basins.yaml"
    script:
        "../scripts/figure.py"


rule figure_jamming:
    input:
        jamming="results/jamming/{jamming}.nc",
        code=code_dependencies("figure"),
    output:
        pdf="results/figures/jamming/{jamming}.pdf",
        png=report(
            "results/figures/jamming/{jamming}.png",
            caption="../report/jamming.rst",
            category="Jamming transition",
        ),
    log:
        "logs/figure_jamming/{jamming}.log",
    conda:
        "../../envs/basins.yaml"
    params:
        module="jamming_figures",
    script:
        "../scripts/figure.py"


rule figure_jamming_gaps:
    input:
        jamming="results/jamming/{jamming}.nc",
        code=code_dependencies("figure"),
    output:
        pdf="results/figures/jamming_gaps/{jamming}.pdf",
        png=report(
            "results/figures/jamming_gaps/{jamming}.png",
            caption="../report/jamming_gaps.rst",
            category="Jamming transition",
        ),
    log:
        "logs/figure_jamming_gaps/{jamming}.log",
    conda:
        "../../envs/basins.yaml"
    params:
        module="jamming_figures",
    script:
        "../scripts/figure.py"


rule figure_jamming_test_error:
    input:
        jamming="results/jamming/{jamming}.nc",
        code=code_dependencies("figure"),
    output:
        pdf="results/figures/jamming_test_error/{jamming}.pdf",
        png=report(
            "results/figures/jamming_test_error/{jamming}.png",
            caption="../report/jamming_test_error.rst",
            category="Jamming transition",
        ),
    log:
        "logs/figure_jamming_test_error/{jamming}.log",
    conda:
        "../../envs/basins.yaml"
    params:
        module="jamming_figures",
    script:
        "../scripts/figure.py"


rule figure_protocols:
    input:
        protocols="results/protocols/{protocols}/seed{seed}.nc",
        code=code_dependencies("figure"),
    output:
        pdf="results/figures/protocols/{protocols}_seed{seed}.pdf",
        png=report(
            "results/figures/protocols/{protocols}_seed{seed}.png",
            caption="../report/protocols.rst",
            category="Flatness",
        ),
    log:
        "logs/figure_protocols/{protocols}_seed{seed}.log",
    conda:
        "../../envs/basins.yaml"
    script:
        "../scripts/figure.py"
