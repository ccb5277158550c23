"""Time `python -m eval.math_eval` on generated math records (target: 5,000 records in under 60 s on 2 cores).

    python scripts/bench_grading.py [--num_records 5000] [--num_workers 2] [--keep DIR]

The records mix the answer forms real runs produce: integers with separators and units, fractions and
decimals, percentages, degrees, LaTeX expressions that only a symbolic check can match (radicals, pi,
polynomials, intervals, sets, tuples, matrices), text answers, missing answers, failed samples and a
few pathological towers, right and wrong in roughly the proportions of a mid-strength model.
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def _symbolic_table(rng: random.Random) -> list[tuple[str, list[str], list[str]]]:
    """(reference, equivalent forms, non-equivalent forms) with fresh numbers each time, so the grader's
    parse caches do not flatter the figure: real runs rarely repeat an expression."""
    a, b, c = rng.randint(2, 30), rng.randint(2, 30), rng.randint(2, 9)
    return [
        (f"\\frac{{\\sqrt{{{a}}}}}{{{b}}}", [f"\\frac{{1}}{{{b}}}\\sqrt{{{a}}}", f"\\sqrt{{{a}}}/{b}"],
         [f"\\frac{{\\sqrt{{{a + 1}}}}}{{{b}}}", f"\\sqrt{{{a}}}"]),
        (f"{c}\\sqrt{{{a}}}", [f"\\sqrt{{{c * c * a}}}", f"{c} \\sqrt{{{a}}}"],
         [f"\\sqrt{{{a}}}", f"{c + 1}\\sqrt{{{a}}}"]),
        (f"\\frac{{{c}\\pi}}{{{b}}}", [f"{c}\\pi/{b}", f"\\frac{{{c}}}{{{b}}}\\pi"],
         [f"\\frac{{\\pi}}{{{b}}}", f"{c}\\pi"]),
        (f"x^2+{a + b}x+{a * b}", [f"(x+{a})(x+{b})", f"x^2 + {a + b}x + {a * b}"],
         [f"(x+{a})(x+{b + 1})", f"x^2+{a * b}"]),
        (f"[{-a},{b})", [f"[{-a}, {b})", f"\\left[{-a},{b}\\right)"], [f"({-a},{b})", f"[{-a},{b}]"]),
        (f"(-\\infty, {a}]", [f"(-\\infty,{a}]"], [f"(-\\infty, {a})", f"[{a}, \\infty)"]),
        (f"\\{{{a},{b},{c}\\}}", [f"\\{{{c},{b},{a}\\}}", f"\\{{{a}, {b}, {c}\\}}"],
         [f"\\{{{a},{b}\\}}", f"\\{{{a},{b},{c + 100}\\}}"]),
        (f"({a}, \\frac{{\\pi}}{{{c}}})", [f"\\left( {a}, \\frac{{\\pi}}{{{c}}} \\right)", f"({a}, \\pi/{c})"],
         [f"({a}, \\pi)", f"(\\frac{{\\pi}}{{{c}}}, {a})"]),
        (f"\\begin{{pmatrix}} {a} \\\\ -{b} \\end{{pmatrix}}", [f"\\begin{{bmatrix}}{a}\\\\-{b}\\end{{bmatrix}}"],
         [f"\\begin{{pmatrix}} -{a} \\\\ {b} \\end{{pmatrix}}"]),
        (f"{a}+{b}i", [f"{b}i+{a}", f"{a} + {b}i"], [f"{a}-{b}i", f"{b}+{a}i"]),
        (f"\\frac{{{a}+\\sqrt{{{c}}}}}{{{b}}}", [f"\\frac{{\\sqrt{{{c}}}+{a}}}{{{b}}}"],
         [f"\\frac{{{a}-\\sqrt{{{c}}}}}{{{b}}}"]),
        (f"e^{{{c}}}", [f"e^{c}"], [f"{c}e", f"e^{{{c + 1}}}"]),
        (f"y={a}x+{b}", [f"{a}x+{b}", f"y = {b} + {a}x"], [f"y={a}x-{b}"]),
    ]


TEXT = [("\\text{Monday}", ["Monday", "monday"], ["Tuesday"]), ("\\text{(C)}", ["C", "(C)"], ["B", "(D)"]),
        ("\\text{odd}", ["odd"], ["even"])]
PATHOLOGICAL = [("5", "2^{2^{100}}"), ("7", "9^{9^{9}}"), ("10", "123456!")]


def _integer_case(rng: random.Random, right: bool) -> tuple[str, str]:
    value = rng.randint(0, 50_000)
    gt = str(value)
    shown = value if right else value + rng.choice([-10, -1, 1, 2, 100])
    forms = [str(shown), f"{shown:,}", f"{shown}.0", f"\\${shown}", f"{shown} apples", f"x = {shown}", f"{shown}.00"]
    return gt, rng.choice(forms)


def _fraction_case(rng: random.Random, right: bool) -> tuple[str, str]:
    num, den = rng.randint(1, 40), rng.choice([2, 3, 4, 5, 8, 10, 16, 20, 25])
    gt = f"\\frac{{{num}}}{{{den}}}"
    if not right:
        num += rng.choice([1, 2, -1]) or 1
    value = num / den
    forms = [f"\\dfrac{{{num}}}{{{den}}}", f"{num}/{den}",
             f"\\frac{num}{den}" if num < 10 and den < 10 else f"{num}/{den}"]
    if len(f"{value}") < 8:
        forms.append(f"{value}")
    return gt, rng.choice(forms)


def _unit_case(rng: random.Random, right: bool) -> tuple[str, str]:
    value = rng.randint(1, 359)
    shown = value if right else value + rng.choice([1, 5, 90])
    kind = rng.choice(["percent", "degree", "unit"])
    if kind == "percent":
        return f"{value}\\%", rng.choice([f"{shown}", f"{shown}\\%", f"{shown}%", f"{shown / 100}"])
    if kind == "degree":
        return f"{value}^\\circ", rng.choice([f"{shown}", f"{shown}^{{\\circ}}", f"{shown} degrees", f"{shown}°"])
    return f"{value}", rng.choice([f"{shown}\\text{{ cm}}", f"{shown} \\mbox{{inches}}", f"\\${shown}"])


def _listed_case(rng: random.Random, right: bool, table: list) -> tuple[str, str]:
    gt, same, different = rng.choice(table)
    return gt, rng.choice(same if right else different)


def make_records(num_records: int, seed: int = 0) -> list[dict]:
    """`num_records` inference records in the canonical format, with varied answer forms."""
    rng = random.Random(seed)
    records = []
    for index in range(num_records):
        right = rng.random() < 0.55
        roll = rng.random()
        if index < len(PATHOLOGICAL):
            gt, pred = PATHOLOGICAL[index]
        elif roll < 0.45:
            gt, pred = _integer_case(rng, right)
        elif roll < 0.60:
            gt, pred = _fraction_case(rng, right)
        elif roll < 0.70:
            gt, pred = _unit_case(rng, right)
        elif roll < 0.90:
            gt, pred = _listed_case(rng, right, _symbolic_table(rng))
        elif roll < 0.95:
            gt, pred = _listed_case(rng, right, TEXT)
        else:
            gt, pred = str(rng.randint(1, 99)), None
        record = {"id": f"bench-{index}", "query": "(generated)", "gt": gt, "source": "MATH", "method": "cot",
                  "model": "bench", "config": {},
                  "response": f"Step by step...\nSo the answer is $\\boxed{{{pred}}}$." if pred else "I am not sure.",
                  "answer": pred if rng.random() < 0.7 else None,  # None: the grader extracts from the response
                  "trajectory": [], "token_stats": {"bench": {"num_llm_calls": 1, "prompt_tokens": 200,
                                                              "completion_tokens": 150}}, "latency_s": 1.0}
        if rng.random() < 0.01:
            record["error"] = "EngineError: generated failure"
        records.append(record)
    return records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num_records", type=int, default=5000)
    parser.add_argument("--num_workers", type=int, default=None, help="passed to eval.math_eval (default: all cores)")
    parser.add_argument("--timeout", type=float, default=5.0, help="per-item symbolic check limit, seconds")
    parser.add_argument("--keep", default=None, help="write the records and outputs here instead of a temp folder")
    args = parser.parse_args()
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_grading_"))
    folder.mkdir(parents=True, exist_ok=True)
    input_file = folder / "cot_infer.jsonl"
    input_file.write_text("".join(json.dumps(r) + "\n" for r in make_records(args.num_records)), encoding="utf-8")
    command = [sys.executable, "-m", "eval.math_eval", "--input_file", str(input_file), "--timeout", str(args.timeout),
               "--no_progress"]
    if args.num_workers:
        command += ["--num_workers", str(args.num_workers)]
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True)
    elapsed = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the CLI and its grading workers
    cpu_s = usage.ru_utime + usage.ru_stime
    metrics = json.loads((folder / "cot_infer_metrics.json").read_text(encoding="utf-8"))
    symbolic = sum(v for k, v in metrics["reasons"].items()
                   if k in ("symbolic_equal", "not_equal", "parse_error", "timeout"))
    print(f"\n{args.num_records} records graded in {elapsed:.1f} s wall (whole CLI run, start-up included), "
          f"{args.num_records / elapsed:.0f} records/s, {cpu_s:.1f} s CPU in all processes; "
          f"~{symbolic} reached the symbolic check; "
          f"target < 60 s: {'met' if elapsed < 60 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
