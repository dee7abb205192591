"""Landscapes: what the engine descends, each with what is known about it.

- :mod:`~basins.landscapes.architecture`: network shapes and initial parameters (no torch);
- :mod:`~basins.landscapes.networks`: the forward pass of a whole ensemble;
- :mod:`~basins.landscapes.outputs`: the same outputs in NumPy, for the stages that compare
  minima by their function without loading torch;
- :mod:`~basins.landscapes.losses`: per-sample losses and the L2 penalty;
- :mod:`~basins.landscapes.objective`: a network on its data as the engine's objective;
- :mod:`~basins.landscapes.fused_mlp`: its loss and gradient by a hand-derived backward pass (the default);
- :mod:`~basins.landscapes.symmetry`: the symmetry group of a network, canonical forms and
  nearest images;
- :mod:`~basins.landscapes.planted`: analytic potentials whose basins are known by construction;
- :mod:`~basins.landscapes.lennard_jones`: the 2-D seven-atom Lennard-Jones cluster, a standard
  test landscape with published minima and a table of its transition states.

Imports: landscapes import themselves and the engine's interface (dynamics, devices), never a
stage (``tests/test_architecture.py``).
"""
