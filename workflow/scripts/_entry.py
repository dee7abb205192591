"""Shared start of every entry script: find the package and send logging to the job's log.

Snakemake drops PYTHONPATH in ``--sdm conda`` jobs, so where ``basins`` is not installed in
the job's environment the checkout's ``src/`` is put on the path instead.
"""

import gc
import logging
import sys
from pathlib import Path

try:
    import basins  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))


def start(snakemake) -> logging.Logger:
    """Configure logging to the rule's log file (and stderr) and return the stage logger."""
    handlers = [logging.StreamHandler(sys.stderr)]
    if snakemake.log:
        Path(snakemake.log[0]).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(snakemake.log[0], mode="w"))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", handlers=handlers, force=True
    )
    log = logging.getLogger(f"basins.{snakemake.rule}")
    _use_declared_threads(snakemake.threads)
    _keep_freed_memory()

    def log_uncaught(kind, error, traceback):
        log.error("failed", exc_info=(kind, error, traceback))

    # Put the traceback of a failing job into its log file too, not only on the console.
    sys.excepthook = log_uncaught
    _spare_collections_of_imports()
    return log


def _spare_collections_of_imports() -> None:
    """Keep the objects the imports made (torch's ~10^6) out of every later garbage collection.

    Called once the entry script's imports are done. The collection at interpreter exit
    otherwise walks them all: 0.4-0.5 s of each torch job (medians of 8 starts, 1.93 against
    1.53 s for ``import torch``), a few minutes of job-seconds over the default study's ~260
    jobs. Reference counting still frees them; only reference cycles among them are never
    collected, which a process about to exit does not need.
    """
    gc.freeze()


def _keep_freed_memory() -> None:
    """Jobs that compute with torch reuse the memory of freed tensors
    (:func:`basins.engine.devices.keep_freed_memory`: the same results, without a page fault
    per temporary's page). Jobs that never import torch are left alone."""
    if "torch" in sys.modules:
        from basins.engine.devices import keep_freed_memory

        keep_freed_memory()


def _use_declared_threads(threads: int) -> None:
    """Compute on as many threads as the rule declared (Snakemake's ``threads``, 1 unless set).

    torch otherwise starts one thread per core in every job, and the scheduler, which counts
    declared threads, runs as many jobs as there are cores: on 2 cores two jobs of 2 threads
    each spin against each other (a factor 2-40 slower for the small networks of the default
    study). Jobs that never import torch are left alone.
    """
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(max(1, int(threads)))


def compute_options(snakemake) -> dict:
    """Where a job computes and within how much memory: ``device`` (resolved, e.g. "cpu") and
    ``memory_budget_mb``.

    Read from the config, not from the rule's params: params are a rerun trigger, and these
    settings change results by round-off at most (chunking never does, the device by
    round-off), so changing them must not rerun the study. A job that asks for a GPU where
    there is none fails here, before it reads or writes anything.
    """
    from basins.engine.devices import resolve_device

    config = snakemake.config
    device = "cuda" if config["use_gpu"] else "auto"
    try:
        device = str(resolve_device(device))
    except ValueError:
        raise ValueError(
            "use_gpu: true, but this job's machine has no CUDA device; set use_gpu: false or "
            "run the jobs on GPU nodes (a cluster profile)"
        ) from None
    return dict(device=device, memory_budget_mb=config["memory_budget_mb"])


def engine_options(snakemake) -> dict:
    """:func:`compute_options` and the checkpointing of a training-engine job (the interval,
    like them, from the config: it changes no result)."""
    return dict(
        compute_options(snakemake),
        checkpoint_path=snakemake.params.checkpoint,
        checkpoint_every_s=snakemake.config["checkpoint_every_s"],
    )


def landscape_options(training) -> dict:
    """The keys of an experiment's training section that define its loss landscape (the
    cross-entropy at its final inverse temperature)."""
    return {key: training[key] for key in ("loss", "margin", "l2", "beta")}


def shard_starts(snakemake, n_params: int, draw) -> tuple:
    """This shard's members and their starting points: ``ensemble.initial_points`` when the
    experiment names a file of them, else ``draw(starts)``. With ``noise_draws`` the members
    are ``draw * n_members + start``: every start runs once per noise draw, and member ids
    (which seed the noise) differ between the draws."""
    import numpy as np

    from basins.io import read_starting_points

    ensemble, shard = snakemake.params.ensemble, int(snakemake.wildcards.shard)
    n_starts = ensemble["n_members"]
    members = np.array_split(np.arange(n_starts * ensemble["noise_draws"]), ensemble["n_shards"])[shard]
    starts = members % n_starts
    if ensemble["initial_points"]:
        return members, read_starting_points(ensemble["initial_points"], starts, n_params)
    return members, draw(starts)
