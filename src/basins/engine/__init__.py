"""The engine: run dynamics on any landscape, from many points at once, and read its curvature.

It knows nothing of networks, data or stages: a landscape reaches it only as a callable
(``objective(theta, batch) -> (loss, grad)`` or ``energy(theta) -> (n,)``).

- :mod:`~basins.engine.dynamics`: the steppers (gradient flow, GD, SGD, Adam, FIRE);
- :mod:`~basins.engine.flat_seeking`: Entropy-SGD and replicated GD, which seek wide flat minima;
- :mod:`~basins.engine.descent`: the loop that runs them until every member is decided;
- :mod:`~basins.engine.devices`: device, dtypes and chunking within a memory budget;
- :mod:`~basins.engine.checkpoints`: checkpoints tied to their run, data, code and torch;
- :mod:`~basins.engine.curvature`: Hessian-vector products, Lanczos, Hutchinson;
- :mod:`~basins.engine.polish`: Newton polish of endpoints onto their minimum;
- :mod:`~basins.engine.quasi_newton`: BFGS (weak-Wolfe) and Newton finish of members left on their budget;
- :mod:`~basins.engine.paths`: elastic bands and transition-state refinement.

Imports: the engine imports only itself, :mod:`basins.labels` and :mod:`basins.io`
(``tests/test_architecture.py``).
"""
