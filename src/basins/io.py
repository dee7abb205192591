"""The NetCDF contract every stage writes to and reads from.

Each stage writes one ``xarray.Dataset``: dims from one vocabulary (:data:`DIMS`), a
coordinate for every dim, ``long_name`` and ``units`` on every variable, and CF-style global
attributes plus provenance. Files are written atomically (temporary file, then rename) so an
interrupted job never leaves a truncated result behind.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np
import xarray as xr

#: The dim vocabulary shared by all stages (singular snake_case).
DIMS = frozenset(
    {
        "sample",
        "test_sample",
        "feature",
        "member",
        "param",
        "step",
        "minimum",
        "direction",
        "radius",
        "eigen",
        "sigma",
        "tolerance",
        "fit",
        "mode",
        "alpha",
        "distance",
        "winding",
        "measured_state",
        "class",
        "bin",
        "plane",
        "axis",
        "grid_u",
        "grid_v",
        "experiment",
        "pair",
        "end",
        "image",
        "band",
        "transition_state",
        "merged_minimum",
        "refused_minimum",
        "level",
        "network",
        "train_size",
        "pooled_minimum",
        "seed",
        "depth",
        "side",
        "constraint",
        "statistic",
        "row",
        "replicate",
        "excluded",
        "coupling",
        "setting",
        "barrier",
        "ring",
        "baseline",
        "fine_member",
        "walked",
    }
)

CONVENTIONS = "CF-1.10"
_PROVENANCE_PACKAGES = ("basins", "torch", "numpy", "xarray", "netCDF4", "scipy")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages a result depends on."""
    versions = {}
    for name in _PROVENANCE_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit(path: str | os.PathLike = ".") -> str:
    """The commit of the checkout holding ``path`` (with ``-dirty``), or ``"unknown"``."""
    try:
        described = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=path,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return described.stdout.strip() or "unknown"


def add_provenance(
    ds: xr.Dataset,
    *,
    title: str,
    stage: str,
    stage_config: dict,
    seed: int | None = None,
    device: str = "cpu",
    inputs: tuple[str, ...] = (),
) -> xr.Dataset:
    """Return ``ds`` with CF global attributes and provenance attached.

    No timestamps are recorded: the same config and seed must give byte-identical values,
    and ``history`` names what made the file instead of when.
    """
    attrs = dict(ds.attrs)
    attrs.update(
        Conventions=CONVENTIONS,
        title=title,
        institution="basins study",
        source=f"basins {package_versions()['basins']}, stage {stage}",
        history=f"{stage}({', '.join(inputs)})" if inputs else stage,
        stage=stage,
        stage_config=json.dumps(stage_config, sort_keys=True, default=str),
        package_versions=json.dumps(package_versions(), sort_keys=True),
        python_version=platform.python_version(),
        git_commit=git_commit(Path(__file__).parent),
        device=device,
    )
    if seed is not None:
        attrs["seed"] = int(seed)
    return ds.assign_attrs(attrs)


def provenance_inputs(ds: xr.Dataset) -> list[str]:
    """The input files :func:`add_provenance` recorded in ``ds``'s history, as the stage named
    them (relative to the workflow's directory)."""
    history = ds.attrs.get("history", "")
    _, _, rest = history.partition("(")
    return rest.removesuffix(")").split(", ") if rest else []


def check_dataset(ds: xr.Dataset) -> None:
    """Raise ``ValueError`` naming the first breach of the NetCDF contract in ``ds``."""
    unknown = set(ds.dims) - DIMS
    if unknown:
        raise ValueError(f"dims {sorted(unknown)} are outside the vocabulary {sorted(DIMS)}")
    for dim in ds.dims:
        if dim not in ds.coords:
            raise ValueError(f"dim {dim!r} has no coordinate")
    for name, var in ds.variables.items():
        for key in ("long_name", "units"):
            if key not in var.attrs:
                raise ValueError(f"variable {name!r} lacks the attribute {key!r}")
    for key in ("Conventions", "title", "source", "history", "stage", "stage_config"):
        if key not in ds.attrs:
            raise ValueError(f"global attribute {key!r} is missing")


def write_dataset(ds: xr.Dataset, path: str | os.PathLike) -> None:
    """Check ``ds`` against the contract and write it atomically with zlib compression."""
    check_dataset(ds)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    encoding = {
        name: {"zlib": True, "complevel": 4}
        for name, var in ds.variables.items()
        if var.dtype.kind in "fiub"
    }
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        ds.to_netcdf(tmp, engine="netcdf4", format="NETCDF4", encoding=encoding)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_mode() -> int:
    """The mode a plain ``open()`` gives a new file under the process's umask (``0o666 & ~umask``).

    Temporary files from :mod:`tempfile` are private (0600); results renamed from them get
    this mode instead, as if written in place.
    """
    return 0o666 & ~_umask()


def _umask() -> int:
    # Linux reports it (since 4.7); elsewhere it can only be read by setting it and setting it
    # straight back, a window in which another thread's new file would get umask 022.
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def read_dataset(path: str | os.PathLike) -> xr.Dataset:
    """Open a stage output fully into memory (the file is closed on return)."""
    with xr.open_dataset(path, engine="netcdf4") as ds:
        return ds.load()


def read_starting_points(path: str | os.PathLike, member_ids, n_params: int):
    """The rows of ``initial_theta (member, param)`` in a NetCDF file for ``member_ids``.

    Any stage output with that variable serves (a training shard, a ring relaxation), as does
    a file written by hand with those dims and a ``member`` coordinate.
    """
    with xr.open_dataset(path, engine="netcdf4") as ds:
        if "initial_theta" not in ds or ds["initial_theta"].dims != ("member", "param"):
            raise ValueError(f"{path}: starting points need a variable initial_theta with dims (member, param)")
        if ds.sizes["param"] != n_params:
            raise ValueError(f"{path}: {ds.sizes['param']} parameters per point; this landscape has {n_params}")
        missing = sorted(set(int(m) for m in member_ids) - set(ds["member"].values.tolist()))
        if missing:
            raise ValueError(f"{path} has no starting point for members {missing[:5]}... ({len(missing)} missing)")
        return ds["initial_theta"].sel(member=list(member_ids)).values


#: Words of variable names that measure the machine, not the study (wall times): two runs of
#: the same computation differ there and nowhere else.
RUN_DEPENDENT_WORDS = ("wall", "elapsed", "seconds")


def differing_variables(first: str | os.PathLike, second: str | os.PathLike) -> list[str]:
    """Names of the variables (coordinates included) whose values differ between two stage
    outputs, bit for bit (NaN equal to NaN), or that only one of them has; variables that
    measure the machine (:data:`RUN_DEPENDENT_WORDS`) are left out. Two runs of one computation
    (a Slurm run and a local one, a resumed run and an uninterrupted one, a speed change that
    claims the same bits) must give none."""
    with xr.open_dataset(first, engine="netcdf4") as a, xr.open_dataset(second, engine="netcdf4") as b:
        names = sorted(set(a.variables) | set(b.variables))
        return [name for name in names if not any(word in name for word in RUN_DEPENDENT_WORDS)
                and not _same_values(a.variables.get(name), b.variables.get(name))]


def _same_values(a, b) -> bool:
    if a is None or b is None or a.shape != b.shape:
        return False
    x, y = a.values, b.values
    return bool(np.array_equal(x, y, equal_nan=x.dtype.kind in "fc"))


def variable_attrs(long_name: str, units: str = "1", **extra) -> dict:
    """The attributes every variable carries."""
    return {"long_name": long_name, "units": units, **extra}
