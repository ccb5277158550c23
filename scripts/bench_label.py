"""Time `label.py --judge rule` on generated math inference records (target: >= 5,000 records per minute on 2 cores).

    python scripts/bench_label.py [--num_records 5000] [--num_workers 2] [--keep DIR]

Each record is an llm_debate run of 3 agents x 2 rounds, labelled with --all_rounds: 6 solutions per record
(30,000 for 5,000 records). Turns carry what real records carry: the messages sent (round 1 shows the
peers' round-0 solutions), multi-paragraph solutions, extracted answers. Answers are right and wrong in
a mid-strength model's proportions, in the forms real runs produce: integers (with separators, units,
decimals), fractions, and LaTeX that only a symbolic check can match (radicals, pi, polynomials); some
turns state no answer, some are truncated, some records failed. The known truth of every generated
answer is checked against the labels, so the figure is for a correct run.
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
NUM_AGENTS, NUM_ROUNDS = 3, 2


def _answer(rng: random.Random, gt: int) -> tuple[str | None, str, bool]:
    """(the turn's answer field, how the text states it, correct?) for reference `gt`."""
    roll = rng.random()
    if roll < 0.04:  # no final answer stated
        return None, "I am not sure how to finish this.", False
    if roll < 0.09:  # symbolic: only math-verify can tell
        a, b = rng.randint(2, 30), rng.randint(2, 9)
        forms = [(f"\\frac{{{gt}\\sqrt{{{a}}}}}{{{a}}}", f"\\frac{{{gt}}}{{\\sqrt{{{a}}}}}"),
                 (f"{b}\\sqrt{{{a}}}", f"\\sqrt{{{b * b * a}}}"),
                 (f"x^2+{a + b}x+{a * b}", f"(x+{a})(x+{b})")]
        stated, _ = rng.choice(forms)
        return stated, f"so the answer is $\\boxed{{{stated}}}$", False  # gt is an integer: never equal
    correct = roll < 0.55
    value = gt if correct else gt + rng.choice([-10, -2, -1, 1, 3, 7, 100])
    form = rng.random()
    if form < 0.6:
        stated = str(value)
    elif form < 0.75:
        stated = f"{value:,}"
    elif form < 0.85:
        stated = f"{value}.0"
    elif form < 0.95:
        stated = f"\\frac{{{2 * value}}}{{2}}"
    else:
        stated = f"{value} apples"
    return stated, f"The answer is $\\boxed{{{stated}}}$.", correct


def _solution_text(rng: random.Random, question: str, statement: str) -> str:
    steps = [f"We start from the question: {question[:60]}..."]
    for step in range(rng.randint(3, 7)):
        x, y = rng.randint(1, 500), rng.randint(1, 500)
        steps.append(f"Step {step + 1}: we compute {x} + {y} = {x + y}, and carry it forward to the next part "
                     f"of the problem, checking the units as we go.")
    steps.append(statement)
    return "\n\n".join(steps)


def make_records(num_records: int, seed: int = 0) -> tuple[list[dict], dict[tuple[str, int, int], bool]]:
    """Synthetic llm_debate inference records and the truth of each solution turn by (id, agent, round)."""
    rng = random.Random(seed)
    records, truth = [], {}
    for index in range(num_records):
        gt = rng.randint(1, 5000)
        qid = f"bench-{index}"
        question = (f"A farmer has {gt - 7} apples and buys 7 more. How many apples does the farmer have now? "
                    f"(question {index})")
        trajectory: list[dict] = []
        previous: list[str] = []
        for round_index in range(NUM_ROUNDS):
            texts = []
            for agent in range(NUM_AGENTS):
                answer, statement, correct = _answer(rng, gt)
                text = _solution_text(rng, question, statement)
                content = question if not previous else (
                    question + "\n\nOther agents' solutions:\n\n" + "\n\n---\n\n".join(previous))
                truncated = rng.random() < 0.02
                trajectory.append({"agent": agent, "role": "debater", "round": round_index,
                                   "messages": [{"role": "user", "content": content}], "text": text,
                                   "answer": answer, "prompt_tokens": len(content.split()),
                                   "completion_tokens": len(text.split()),
                                   "finish_reason": "length" if truncated else "stop"})
                truth[(qid, agent, round_index)] = correct
                texts.append(text)
            previous = texts
        record = {"id": qid, "query": question, "gt": str(gt), "source": "GSM8K", "method": "llm_debate",
                  "model": "bench-model", "config": {"num_agents": NUM_AGENTS, "num_rounds": NUM_ROUNDS},
                  "response": trajectory[-1]["text"], "answer": trajectory[-1]["answer"], "trajectory": trajectory,
                  "num_truncated_turns": sum(t["finish_reason"] == "length" for t in trajectory),
                  "token_stats": {"bench-model": {"num_llm_calls": len(trajectory), "prompt_tokens": 0,
                                                  "completion_tokens": 0}}, "latency_s": 1.0}
        if rng.random() < 0.01:
            record["error"] = "RequestError: the server refused the request"
        records.append(record)
    return records, truth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_records", type=int, default=5000)
    parser.add_argument("--num_workers", type=int, default=2, help="math grading processes")
    parser.add_argument("--keep", default=None, help="write the files here and keep them")
    args = parser.parse_args(argv)

    if args.keep:
        return _bench(args, Path(args.keep))
    with tempfile.TemporaryDirectory(prefix="bench_label_") as folder:
        return _bench(args, Path(folder))


def _bench(args: argparse.Namespace, folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    records, truth = make_records(args.num_records)
    input_path, output_path = folder / "llm_debate_infer.jsonl", folder / "llm_debate_labeled.jsonl"
    input_path.write_text("".join(json.dumps(r) + "\n" for r in records))  # a fixture file, not a results file
    output_path.unlink(missing_ok=True)
    size_mb = input_path.stat().st_size / 1e6

    command = [sys.executable, str(ROOT / "label.py"), "--input", str(input_path), "--dataset_name", "GSM8K",
               "--judge", "rule", "--all_rounds", "--num_workers", str(args.num_workers), "--no_progress",
               "--output", str(output_path)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        print(done.stdout + done.stderr, file=sys.stderr)
        return 1

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # label.py and its grading workers
    cpu_s = usage.ru_utime + usage.ru_stime
    labeled = [json.loads(line) for line in output_path.read_text().splitlines()]
    solutions = [(r["id"], s) for r in labeled for s in r["solutions"]]
    wrong = [(qid, s["agent"], s["round"]) for qid, s in solutions
             if s["is_correct"] != truth[(qid, s["agent"], s["round"])]]
    symbolic = sum(s["judge_detail"].split(":")[0] in ("symbolic_equal", "not_equal", "parse_error", "timeout")
                   for _, s in solutions)
    print(f"{args.num_records} records ({size_mb:.0f} MB), {len(solutions)} solutions ({symbolic} reached the "
          f"symbolic check) labelled in {elapsed:.1f}s wall (whole command, {args.num_workers} grading workers): "
          f"{args.num_records / elapsed * 60:,.0f} records/min, {len(solutions) / elapsed:,.0f} solutions/s; "
          f"{cpu_s:.1f}s CPU in all processes; labels disagreeing with the known truth: {len(wrong)}; "
          f"target >= 5,000 records/min: {'met' if elapsed <= 60 * args.num_records / 5000 else 'MISSED'}")
    if wrong:
        print(f"first disagreements: {wrong[:5]}", file=sys.stderr)
    return 0 if not wrong else 1


if __name__ == "__main__":
    sys.exit(main())
