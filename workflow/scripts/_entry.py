"""Shared start of every entry script: find the package and send logging to the job's log.

Snakemake drops PYTHONPATH in ``--sdm conda`` jobs, so where ``basins`` is not installed in
the job's environment the checkout's ``src/`` is put on the path instead.
"""

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

    def log_uncaught(kind, error, traceback):
        log.error("failed", exc_info=(kind, error, traceback))

    # Put the traceback of a failing job into its log file too, not only on the console.
    sys.excepthook = log_uncaught
    return log


def engine_options(params) -> dict:
    """Where and how a training-engine job runs: device, memory budget, checkpointing."""
    return dict(
        device=params.device,
        memory_budget_mb=params.memory_budget_mb,
        checkpoint_path=params.checkpoint,
        checkpoint_every_s=params.checkpoint_every_s,
    )


def landscape_options(training) -> dict:
    """The keys of an experiment's training section that define its loss landscape (the
    cross-entropy at its final inverse temperature)."""
    return {key: training[key] for key in ("loss", "margin", "l2", "beta")}
