"""The GPU smoke check's inputs: git-ignored, scripts that parse, and a clear stop when they were not built."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script", ["gpu_smoke.sh", "gpu_smoke_prepare.sh"])
def test_scripts_are_valid_bash(script):
    done = subprocess.run(["bash", "-n", str(ROOT / "scripts" / script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("path", [".gpu/smollm2/config.json", ".whl/trl-1.16.0-py3-none-any.whl"])
def test_built_inputs_are_git_ignored(path):
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    done = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT)
    assert done.returncode == 0, f"{path} is not git-ignored"


def test_smoke_without_prepared_inputs_stops_with_one_line(tmp_path):
    # A fresh clone: the script stops before any work and names the command that builds what it needs.
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "gpu_smoke.sh", tmp_path / "scripts")
    done = subprocess.run(["bash", str(tmp_path / "scripts" / "gpu_smoke.sh")], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "OUT": str(tmp_path / "out")}, timeout=60)
    assert done.returncode == 2
    assert done.stderr == ("error: .gpu/smollm2/config.json is missing; "
                           "run 'bash scripts/gpu_smoke_prepare.sh' first\n")


def test_prepare_downloads_what_the_smoke_imports():
    # Every package the smoke's parts import beyond the GPU image (torch, transformers, peft, accelerate,
    # pytest, pyarrow, ...) is in the prepare script's wheel list.
    prepare = (ROOT / "scripts" / "gpu_smoke_prepare.sh").read_text()
    wheels = prepare.split('PACKAGES=${SMOKE_WHEELS:-"', 1)[1].split('"', 1)[0].split()
    assert {"trl", "datasets", "dill", "multiprocess", "pytest-asyncio", "math-verify"} <= set(wheels)
