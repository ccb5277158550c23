"""Agreement of multiple-choice extraction with the public cases in tests/data/choice_cases.jsonl, measured through
the CLI a user runs (`python -m eval.medmcqa_eval`) in a given checkout.

    python scripts/bench_choice_cases.py --root .                      # this checkout
    python scripts/bench_choice_cases.py --root /tmp/agentark_before   # another checkout, same cases
    python scripts/bench_choice_cases.py --root . --split heldout --show_misses

Each case becomes one inference record (the response, `answer` null, `choices` of the case's length). A case
agrees when the scored prediction equals its expected letter; a case whose expected answer is "none stated"
carries an arbitrary reference letter and agrees when the prediction is null.
"""
from __future__ import annotations

import argparse
import json
import string
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

CASES = Path(__file__).resolve().parents[1] / "tests" / "data" / "choice_cases.jsonl"


def load_cases(path: Path = CASES) -> list[dict]:
    """The public extraction cases, one dict per line (id, source, split, num_choices, choices, response, expected)."""
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def case_choices(case: dict) -> list[str]:
    """The option texts of a case: its own, or placeholders that no response mentions."""
    return case["choices"] or [f"(text of option {letter} not shown)"
                               for letter in string.ascii_uppercase[:case["num_choices"]]]


def to_record(case: dict) -> dict:
    return {"id": case["id"], "query": "(question not shown)", "gt": case["expected"] or "A",
            "choices": case_choices(case), "source": case["source"], "response": case["response"],
            "answer": None, "trajectory": [], "token_stats": {}, "method": "cot", "model": "public-cases"}


def score_in_checkout(root: Path, cases: list[dict]) -> dict[str, str | None]:
    """Prediction per case id, from `python -m eval.medmcqa_eval` run in `root`."""
    with tempfile.TemporaryDirectory() as tmp:
        input_file = Path(tmp) / "cases_infer.jsonl"
        input_file.write_text("".join(json.dumps(to_record(c), ensure_ascii=False) + "\n" for c in cases),
                              encoding="utf-8")
        command = [sys.executable, "-m", "eval.medmcqa_eval", "--input_file", str(input_file),
                   "--dataset_name", "MedMCQA", "--output_dir", tmp]
        done = subprocess.run(command, cwd=root, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"eval.medmcqa_eval failed in {root}: {done.stderr.strip()[-2000:]}")
        with (Path(tmp) / "cases_infer_scores.jsonl").open(encoding="utf-8") as f:
            return {row["id"]: row["prediction"] for row in map(json.loads, f)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=".", help="the checkout whose eval.medmcqa_eval is measured")
    parser.add_argument("--split", choices=["all", "dev", "heldout"], default="all",
                        help="which cases to list misses for (the figures always cover every split)")
    parser.add_argument("--show_misses", action="store_true", help="print each case that disagrees")
    args = parser.parse_args()
    cases = load_cases()
    predictions = score_in_checkout(Path(args.root).resolve(), cases)
    agree = {case["id"]: predictions[case["id"]] == case["expected"] for case in cases}

    def rate(selected: list[dict]) -> str:
        hits = sum(agree[c["id"]] for c in selected)
        return f"{hits / len(selected):.3f} ({hits}/{len(selected)})" if selected else "n/a"

    print(f"checkout: {Path(args.root).resolve()}")
    print(f"all: {rate(cases)}")
    for split in ("dev", "heldout"):
        print(f"{split}: {rate([c for c in cases if c['split'] == split])}")
    for source, count in sorted(Counter(c["source"] for c in cases).items()):
        print(f"  {source:<14} {count:>3} cases  {rate([c for c in cases if c['source'] == source])}")
    if args.show_misses:
        for case in cases:
            if not agree[case["id"]] and args.split in ("all", case["split"]):
                print(f"MISS {case['id']} ({case['split']}): expected {case['expected']}, "
                      f"got {predictions[case['id']]}: {case['response'][:150]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
