"""The installed layout: every package folder is declared, and the library layer never imports Ray."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _declared() -> set[str]:
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])


def test_every_package_folder_is_declared_in_pyproject():
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "dl3d").rglob("__init__.py")}
    found |= {"dl3d.workers", "dl3d.jobs"}
    missing = found - _declared()
    assert not missing, f"add {sorted(missing)} to [tool.setuptools] packages in pyproject.toml"


def test_library_layer_never_imports_ray_workers_or_jobs():
    offenders = []
    for path in (ROOT / "dl3d").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] == "ray" or name.startswith(("dl3d.workers", "dl3d.jobs")):
                    offenders.append(f"{path.relative_to(ROOT)}: import {name}")
    assert not offenders, "dl3d/ must not import ray, workers or jobs:\n" + "\n".join(offenders)
