"""Agreement of the math grader with public answer-equivalence cases (tests/data/math_cases.jsonl).

    python scripts/bench_math_cases.py [--root CHECKOUT] [--mode project|math_verify] [--show_failures] [--json]

Each case is a reference answer (`gt`), a model response and the label its public suite gives (`expected`).
`--mode project` (the default) writes the cases as inference records and scores them the way a user would,
`python -m eval.math_eval --input_file ... --dataset_name MATH`, run in CHECKOUT (default: this checkout), so
an older checkout can be measured with the same cases. `--mode math_verify` grades the same pairs with
math-verify alone: `verify(parse("$gt$"), parse(response))` at its default extraction settings.
The figure printed is the share of cases where the grade equals `expected`, overall and per source.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CASES = ROOT / "tests" / "data" / "math_cases.jsonl"


def load_cases(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def source_group(source: str) -> str:
    """'owner/repo' for a public suite, 'issue 7' for the cases constructed from the issue."""
    return "issue 7" if source.startswith("issue 7") else "/".join(source.split("/")[:2])


def as_record(case: dict) -> dict:
    return {"id": case["id"], "query": f"(answer-equivalence case from {case['source']})", "gt": case["gt"],
            "source": "bench", "response": case["response"], "answer": None, "trajectory": [],
            "token_stats": {}, "method": "bench", "model": "bench"}


def grade_with_project(cases: list[dict], root: Path, num_workers: int, timeout: float) -> dict[str, dict]:
    """{case id: scores row} from `python -m eval.math_eval` run in `root`."""
    with tempfile.TemporaryDirectory(prefix="math_cases_") as tmp:
        input_file = Path(tmp) / "bench_infer.jsonl"
        input_file.write_text("".join(json.dumps(as_record(c)) + "\n" for c in cases), encoding="utf-8")
        command = [sys.executable, "-m", "eval.math_eval", "--input_file", str(input_file), "--dataset_name", "MATH",
                   "--output_dir", tmp, "--num_workers", str(num_workers), "--timeout", str(timeout), "--no_progress"]
        done = subprocess.run(command, cwd=root, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"eval.math_eval failed in {root} (exit {done.returncode}):\n{done.stderr[-3000:]}")
        scores = Path(tmp) / "bench_infer_scores.jsonl"
        return {row["id"]: row for row in map(json.loads, scores.read_text(encoding="utf-8").splitlines()) if row}


def grade_with_math_verify(cases: list[dict]) -> dict[str, dict]:
    from math_verify import parse, verify

    rows = {}
    for case in cases:
        try:
            pred = parse(case["response"])
            correct = bool(verify(parse(f"${case['gt']}$"), pred))
            shown = str(pred[1]) if len(pred) > 1 else (str(pred[0]) if pred else None)
            rows[case["id"]] = {"correct": correct, "prediction": shown, "reason": "math_verify"}
        except Exception as error:  # a crash grades the case incorrect, as a grader would
            rows[case["id"]] = {"correct": False, "prediction": None, "reason": f"error: {error!r}"[:200]}
    return rows


def summarize(cases: list[dict], rows: dict[str, dict]) -> dict:
    per_source: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    failures = []
    for case in cases:
        row = rows.get(case["id"], {"correct": False, "prediction": None, "reason": "missing from scores"})
        agree = bool(row.get("correct")) == bool(case["expected"])
        counts = per_source[source_group(case["source"])]
        counts[0] += agree
        counts[1] += 1
        if not agree:
            failures.append({"id": case["id"], "source": case["source"], "expected": case["expected"],
                             "gt": case["gt"], "prediction": row.get("prediction"), "reason": row.get("reason"),
                             "response": case["response"]})
    agreed = sum(a for a, _ in per_source.values())
    return {"cases": len(cases), "agreed": agreed, "agreement": round(agreed / max(len(cases), 1), 4),
            "false_positives": sum(1 for f in failures if not f["expected"]),
            "false_negatives": sum(1 for f in failures if f["expected"]),
            "per_source": {s: {"cases": n, "agreed": a, "agreement": round(a / n, 4)}
                           for s, (a, n) in sorted(per_source.items())},
            "failures": failures}


def excerpt(text: str, width: int = 110) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else "..." + text[-(width - 3):]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=str(ROOT), help="checkout whose eval.math_eval is measured (project mode)")
    parser.add_argument("--cases", default=str(DEFAULT_CASES), help="cases JSONL (id, source, gt, response, expected)")
    parser.add_argument("--mode", choices=("project", "math_verify"), default="project")
    parser.add_argument("--num_workers", type=int, default=2, help="grading processes for eval.math_eval")
    parser.add_argument("--timeout", type=float, default=5.0, help="eval.math_eval's per-item symbolic time limit")
    parser.add_argument("--show_failures", action="store_true", help="list the cases where the grade disagrees")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)

    cases = load_cases(args.cases)
    if args.mode == "project":
        rows = grade_with_project(cases, Path(args.root).resolve(), args.num_workers, args.timeout)
    else:
        rows = grade_with_math_verify(cases)
    summary = summarize(cases, rows)
    summary["mode"] = args.mode
    if args.mode == "project":
        summary["root"] = str(Path(args.root).resolve())
    if args.json:
        if not args.show_failures:
            summary.pop("failures")
        print(json.dumps(summary, indent=2, ensure_ascii=False))
        return 0
    where = f" ({summary['root']})" if args.mode == "project" else ""
    print(f"mode: {args.mode}{where}")
    print(f"agreement: {summary['agreement']:.3f} ({summary['agreed']}/{summary['cases']}); "
          f"false positives {summary['false_positives']}, false negatives {summary['false_negatives']}")
    for source, s in summary["per_source"].items():
        print(f"  {source:<36} {s['agreement']:.3f} ({s['agreed']}/{s['cases']})")
    if args.show_failures:
        print(f"\ndisagreements ({len(summary['failures'])}):")
        for f in summary["failures"]:
            print(f"- {f['id']} expected={f['expected']} gt={f['gt']!r} prediction={f['prediction']!r} "
                  f"reason={f['reason']}\n    {excerpt(f['response'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
