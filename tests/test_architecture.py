"""The package's layers, enforced on its imports: engine -> landscapes -> stages -> figures.

- the engine (``basins/engine``) imports only itself, ``labels`` and ``io``: it never knows a
  network, data or a stage;
- landscapes (``basins/landscapes``) import themselves, the engine's interface, ``labels`` and
  ``io``, never a stage;
- ``labels``, ``stats`` and ``size_prior`` import no other module of the package and never torch;
- figure modules, the summary, the basin geometry (with the architectures and symmetry group
  it reads) and the catalogue of minima never load torch: those jobs need none of it, and
  importing it costs each ~1.4 s.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "basins"
SHARED = {"basins.labels", "basins.io"}


def _modules(folder):
    return sorted((PACKAGE / folder).glob("*.py")) if folder else sorted(PACKAGE.glob("*.py"))


def _package_imports(path):
    """Every ``basins...`` module a file imports, anywhere in it (functions included)."""
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    return {name for name in imported if name.split(".")[0] == "basins"}


def _violations(folder, allowed):
    return {
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in _modules(folder)
        for name in _package_imports(path)
        if not any(name == prefix or name.startswith(prefix + ".") for prefix in allowed)
    }


def test_the_engine_imports_no_landscape_and_no_stage():
    assert _violations("engine", {"basins.engine", *SHARED}) == set()


def test_landscapes_import_no_stage():
    assert _violations("landscapes", {"basins.landscapes", "basins.engine", *SHARED}) == set()


def test_the_import_rules_see_a_violation():
    """The check itself can fail: a stage module imports stages."""
    assert _violations("", {"basins.engine", *SHARED})


@pytest.mark.parametrize("module", ["labels", "stats", "size_prior"])
def test_labels_and_statistics_stand_alone(module):
    assert _package_imports(PACKAGE / f"{module}.py") == set()


@pytest.mark.parametrize(
    "module",
    [
        "basins.labels", "basins.stats", "basins.size_prior", "basins.figures", "basins.jamming_figures",
        "basins.summary", "basins.basin_geometry", "basins.landscapes.architecture", "basins.landscapes.symmetry",
        "basins.minima",
    ],
)
def test_figures_and_statistics_never_load_torch(module):
    loaded = subprocess.run(
        [sys.executable, "-c", f"import sys, {module}; print('torch' in sys.modules)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert loaded == "False"
