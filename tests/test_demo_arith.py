"""scripts/demo_arith.sh as a user runs it: inference, grading, the report and label.py on Arith."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_arith_runs_end_to_end_on_the_default_model(tmp_path):
    results, reports = tmp_path / "results", tmp_path / "reports"
    env = {**os.environ, "PYTHON": sys.executable, "RESULTS_DIR": str(results), "REPORT_DIR": str(reports),
           "METHODS": "cot"}
    done = subprocess.run(["bash", "scripts/demo_arith.sh", "3", "32", "hf"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    run_dir = next((results / "Arith").iterdir())
    records = [json.loads(line) for line in (run_dir / "cot_infer.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in records) == [f"Arith-L1-test-{i}" for i in range(3)]
    metrics = json.loads((run_dir / "cot_infer_metrics.json").read_text())
    assert metrics["dataset"] == "Arith" and metrics["metrics"]["accuracy"]["n"] == 3
    assert "| Arith | cot |" in (reports / "report.md").read_text()
    labeled = results / "Arith" / "labeled.jsonl"
    stats = json.loads(labeled.with_name("labeled.stats.json").read_text())
    assert stats["run"]["records_read"] == 3
    # cot gives one solution per question: each is either labelled or dropped as cut off at 32 tokens
    assert stats["labels"]["solutions"] + stats["run"]["truncated_solutions_dropped"] == 3
    scores = {s["id"]: s for s in map(json.loads, (run_dir / "cot_infer_scores.jsonl").read_text().splitlines())}
    for record in map(json.loads, labeled.read_text().splitlines()):
        (solution,) = record["solutions"]
        assert solution["method"] == "cot"
        assert solution["is_correct"] == scores[record["id"]]["correct"]  # the rule judge is eval's grader
