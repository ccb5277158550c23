"""eval.report over a results tree: the table's numbers, both plots, and files it must skip."""
import csv
import json

import pytest

from eval import report
from eval.common import EvalError


def _record(sample_id, gt, answer, calls, model, method, **extra):
    return {"id": sample_id, "query": "q", "gt": gt, "source": "test", "method": method, "model": model,
            "config": {}, "response": str(answer), "answer": answer, "trajectory": [],
            "token_stats": {model: {"num_llm_calls": calls, "prompt_tokens": 100 * calls,
                                    "completion_tokens": 50 * calls}},
            "latency_s": 0.25 * calls, **extra}


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "results"
    model = "org/tiny-model"  # a hub-style id: nested folders under the dataset
    # GSM8K: cot 1/4 right with 1 call, llm_debate 3/4 right with 6 calls.
    _write(root / "GSM8K" / "org" / "tiny-model" / "cot_infer.jsonl",
           [_record(f"g{i}", str(i), str(i if i == 0 else i + 1), 1, model, "cot") for i in range(4)])
    _write(root / "GSM8K" / "org" / "tiny-model" / "llm_debate_infer.jsonl",
           [_record(f"g{i}", str(i), f"{i}.0" if i < 3 else "x", 6, model, "llm_debate") for i in range(4)])
    _write(root / "MedMCQA" / "org" / "tiny-model" / "cot_infer.jsonl",
           [_record(f"m{i}", "ABCD"[i], "ABCD"[i] if i % 2 else "A", 1, model, "cot", choices=list("wxyz"))
            for i in range(4)])
    _write(root / "QMSum" / "org" / "tiny-model" / "cot_infer.jsonl",
           [_record("q0", "they chose a rechargeable battery", "they chose a rechargeable battery", 1, model, "cot")])
    # Files the report must name and skip without losing the other runs:
    (root / "MATH" / "org" / "tiny-model").mkdir(parents=True)
    (root / "MATH" / "org" / "tiny-model" / "mav_infer.jsonl").write_text('{"id": "a"}\n{broken\n{"id": "b"}\n')
    _write(root / "NotADataset" / "m" / "cot_infer.jsonl", [_record("z", "1", "1", 1, "m", "cot")])
    return root


def test_report_table_and_plots(results, tmp_path, capsys):
    out = tmp_path / "reports"
    assert report.main(["--results_dir", str(results), "--out", str(out), "--num_workers", "1"]) == 0
    rows = {(r["dataset"], r["method"]): r for r in csv.DictReader((out / "report.csv").open())}
    assert set(rows) == {("GSM8K", "cot"), ("GSM8K", "llm_debate"), ("MedMCQA", "cot"), ("QMSum", "cot")}
    debate, cot = rows[("GSM8K", "llm_debate")], rows[("GSM8K", "cot")]
    assert float(debate["score"]) == pytest.approx(0.75) and float(cot["score"]) == pytest.approx(0.25)
    assert float(debate["llm_calls_per_question"]) == 6 and float(debate["tokens_per_question"]) == 900
    assert float(debate["latency_s_per_question"]) == pytest.approx(1.5)
    assert float(debate["ci_low"]) <= 0.75 <= float(debate["ci_high"])
    assert debate["model"] == "org/tiny-model" and debate["metric"] == "accuracy"
    assert float(rows[("MedMCQA", "cot")]["score"]) == pytest.approx(0.75)
    assert rows[("QMSum", "cot")]["metric"] == "rougeL" and float(rows[("QMSum", "cot")]["score"]) == 1.0

    markdown = (out / "report.md").read_text()
    assert "| GSM8K | llm_debate | org/tiny-model | 4 | accuracy | 75.0 [" in markdown
    assert "accuracy_vs_tokens.png" in markdown and "## Skipped files" in markdown
    assert "mav_infer.jsonl:2: malformed JSON" in markdown and "unknown dataset 'NotADataset'" in markdown
    assert "skipped:" in capsys.readouterr().err

    from PIL import Image

    for name in ("accuracy_vs_tokens.png", "accuracy_by_method.png"):
        with Image.open(out / name) as image:
            width, height = image.size
            assert width > 600 and height > 300
            colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
            assert colours is not None and len(colours) > 50  # drawn, not a blank canvas


def test_report_with_nothing_to_grade(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(EvalError, match="no gradable"):
        report.build_report(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(EvalError, match="no such folder"):
        report.build_report(tmp_path / "missing", tmp_path / "out")


def test_pareto_frontier_keeps_only_undominated_points():
    points = [(100, 30), (500, 45), (900, 40), (1500, 60), (2000, 60)]
    assert report._pareto(points) == [(100, 30), (500, 45), (1500, 60)]


def _truncating_turns(cut):
    """One solver turn, cut off at the token limit when `cut`, with the counts inference.py records."""
    return {"trajectory": [{"agent": 0, "role": "solver", "round": 0, "messages": [], "text": "x", "answer": None,
                            "prompt_tokens": 1, "completion_tokens": 1, "finish_reason": "length" if cut else "stop"}],
            "num_truncated_turns": int(cut)}


def test_report_shows_truncated_answers_and_writes_no_nan(tmp_path, capsys):
    root = tmp_path / "results"
    model = "org/tiny-model"
    # cot: 1 of 3 answers cut off; llm_debate: written before finish reasons (unknown), no latency at all.
    rows = [_record(f"g{i}", str(i), str(i), 1, model, "cot", response="x", **_truncating_turns(i == 0))
            for i in range(3)]
    _write(root / "GSM8K" / "org" / "tiny-model" / "cot_infer.jsonl", rows)
    old = [_record(f"g{i}", str(i), str(i), 2, model, "llm_debate") for i in range(2)]
    for row in old:
        del row["latency_s"]
    _write(root / "GSM8K" / "org" / "tiny-model" / "llm_debate_infer.jsonl", old)
    out = tmp_path / "reports"
    assert report.main(["--results_dir", str(root), "--out", str(out), "--num_workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "GSM8K cot (org/tiny-model): 1 of 3 final answers were cut off at the token limit" in printed
    assert "llm_debate (org/tiny-model): " not in printed

    table = {(r["method"]): r for r in csv.DictReader((out / "report.csv").open())}
    assert table["cot"]["num_truncated_answers"] == "1" and table["cot"]["truncation_known"] == "3"
    assert table["cot"]["num_records_with_truncated_turns"] == "1"
    assert table["llm_debate"]["num_truncated_answers"] == "" and table["llm_debate"]["truncation_known"] == "0"
    cells = [cell.lower() for row in table.values() for cell in row.values()]
    assert not {"nan", "inf", "-inf"} & set(cells)
    assert table["llm_debate"]["latency_s_per_question"] == ""  # missing, written empty (CSV's null)

    markdown = (out / "report.md").read_text()
    assert "| Failed | Truncated |" in markdown
    cot_line = next(line for line in markdown.splitlines() if "| cot |" in line)
    debate_line = next(line for line in markdown.splitlines() if "| llm_debate |" in line)
    assert cot_line.endswith("| 0 | 1 |") and debate_line.endswith("| 0 | n/a |")


@pytest.mark.parametrize("timeout", ["0", "-1", "nan"])
def test_report_refuses_a_timeout_that_turns_the_limit_off(results, tmp_path, timeout):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-m", "eval.report", "--results_dir", str(results), "--out",
                           str(tmp_path / "out"), "--timeout", timeout], cwd=root, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"error: --timeout must be a finite number of seconds > 0, got {float(timeout)}"
    assert not (tmp_path / "out").exists()  # refused before any grading
