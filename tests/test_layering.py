"""Package layering: data knows no grading or methods, evaluation knows no method, the engine knows neither."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package -> top-level packages of ours it must never import (at module level or inside a function)
FORBIDDEN = {
    "data": {"eval", "methods", "engine", "labeling", "prm", "distill"},
    "engine": {"eval", "methods", "data", "labeling", "prm", "distill"},
    "eval": {"methods", "labeling", "prm", "distill"},
    "labeling": {"prm", "distill"},
}
# Applications that live in a package for their command's name but sit on top of the layers below:
# `python -m eval.viewer` shows label.py's verdicts and PRM step scores beside eval's grades.
APPS = {"eval/viewer.py": {"labeling", "prm"}}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_respect_layers(package):
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = imported_packages(path) & FORBIDDEN[package] - APPS.get(str(path.relative_to(ROOT)), set())
        if bad:
            offenders.append(f"{path.relative_to(ROOT)} imports {', '.join(sorted(bad))}")
    assert not offenders, "; ".join(offenders)
