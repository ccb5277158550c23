"""Build SFT data from labeled records: R-SFT (one best correct solution per question) or DA (several).

    python -m distill.build_data --strategy rsft --input results/Arith/labeled.jsonl --out data/sft/arith_rsft.jsonl
    python -m distill.build_data --strategy da --input results/Arith/labeled.jsonl --out data/sft/arith_da.jsonl \
        --max_per_question 4 --dedup_threshold 0.9 --include_corrections

Rows are TRL conversational prompt-completion examples; the prompt is what `cot` sends the student at
evaluation. Statistics are printed and written to `<out without .jsonl>.stats.json`.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from data.atomic import atomic_write_text
from distill.corrections import find_corrections, render_correction
from distill.examples import (
    CompletionCheck,
    check_completions,
    cot_messages,
    cot_system_prompt,
    example_row,
    verdict_reason,
)
from distill.labeled import BuildDataError, LabeledQuestion, LabeledSolution, read_labeled
from distill.selection import PRM_AGGREGATES, aggregate_step_scores, dedup_and_cap, pick_rsft, preference_key

logger = logging.getLogger(__name__)

STRATEGIES = ("rsft", "da")
METHOD_EXCLUDED = "method_excluded"
NOT_BEST = "not_best"  # R-SFT: correct, but another solution of the question was chosen
NO_CORRECT_SOLUTION = "no_correct_solution"


@dataclass
class BuildOptions:
    """What one build does (the CLI flags)."""

    strategy: str
    input: str
    out: str
    prm: str | None = None
    prm_aggregate: str = "min"
    prm_batch_size: int = 16
    max_per_question: int = 4
    dedup_threshold: float = 0.9
    include_corrections: bool = False
    dataset_name: str | None = None
    cot_config: str = "config_main"
    exclude_methods: Sequence[str] = ("cot",)


@dataclass
class BuildResult:
    rows: list[dict[str, Any]]
    stats: dict[str, Any]
    out: Path


@dataclass
class _Tally:
    solutions: int = 0
    dropped: Counter = field(default_factory=Counter)
    questions_without_example: Counter = field(default_factory=Counter)
    picked_by: Counter = field(default_factory=Counter)
    corrections: Counter = field(default_factory=Counter)
    correction_dropped: Counter = field(default_factory=Counter)


def check_options(opts: BuildOptions) -> None:
    if opts.strategy not in STRATEGIES:
        raise BuildDataError(f"--strategy {opts.strategy!r}: choose one of {', '.join(STRATEGIES)}")
    if opts.max_per_question < 1:
        raise BuildDataError(f"--max_per_question must be >= 1, got {opts.max_per_question}")
    if not 0.0 < opts.dedup_threshold <= 1.0:
        raise BuildDataError(f"--dedup_threshold must be in (0, 1], got {opts.dedup_threshold}")
    if opts.prm_aggregate not in PRM_AGGREGATES:
        raise BuildDataError(f"--prm_aggregate {opts.prm_aggregate!r}: choose one of {', '.join(PRM_AGGREGATES)}")
    if opts.include_corrections and opts.strategy != "da":
        raise BuildDataError("--include_corrections applies to --strategy da only")
    if not opts.out.endswith(".jsonl"):
        raise BuildDataError(f"--out {opts.out}: must end with .jsonl")
    if Path(opts.out).resolve() == Path(opts.input).resolve():
        raise BuildDataError(f"--out {opts.out} is the input")


def load_prm_scorer(path: str) -> Any:
    """The PRM at `path` (imported here: prm pulls in torch and a model only when asked for)."""
    try:
        import prm
    except ImportError as error:
        raise BuildDataError(f"--prm {path}: the prm package cannot be imported ({error})") from None
    try:
        return prm.load(path)
    except (OSError, ValueError) as error:
        raise BuildDataError(f"--prm {path}: {str(error).splitlines()[0] if str(error) else type(error).__name__}") \
            from None


def _prm_query(question: LabeledQuestion) -> str:
    try:
        from prm import question_text
    except ImportError:  # a scorer from elsewhere: the bare query
        return question.record["query"]
    return question_text(question.record)


def _prm_scores(scorer: Any, eligible: dict[str, list[LabeledSolution]], questions: dict[str, LabeledQuestion],
                how: str, batch_size: int) -> dict[str, dict[int, float]]:
    """Per question, each eligible solution's aggregated PRM score, keyed by position; scored in one batch."""
    from data.steps import split_steps

    owners = [(qid, s) for qid, solutions in eligible.items() for s in solutions]
    items = [(_prm_query(questions[qid]), list(s.steps) if s.steps else split_steps(s.text)) for qid, s in owners]
    try:
        step_scores = scorer.score_many(items, batch_size=batch_size) if items else []
    except TypeError:  # a scorer without the batch_size keyword
        step_scores = scorer.score_many(items)
    scores: dict[str, dict[int, float]] = {qid: {} for qid in eligible}
    for (qid, solution), steps in zip(owners, step_scores):
        scores[qid][solution.position] = aggregate_step_scores(steps, how)
    return scores


def _eligible_solutions(questions: Sequence[LabeledQuestion], judge: Any, tally: _Tally
                        ) -> tuple[dict[str, list[LabeledSolution]], dict[str, dict[int, str | None]]]:
    """Per question, the solutions that may be targets, and every solution's extracted answer by position."""
    candidates: list[tuple[LabeledQuestion, LabeledSolution]] = []
    for question in questions:
        for solution in question.solutions:
            tally.solutions += 1
            reason = verdict_reason(solution.is_correct, solution.truncated)
            if reason:
                tally.dropped[reason] += 1
            else:
                candidates.append((question, solution))
    reasons = check_completions([CompletionCheck(q, s.text, s.answer) for q, s in candidates], judge)
    eligible: dict[str, list[LabeledSolution]] = {q.id: [] for q in questions}
    for (question, solution), reason in zip(candidates, reasons):
        if reason:
            tally.dropped[reason] += 1
        else:
            eligible[question.id].append(solution)
    answers: dict[str, dict[int, str | None]] = {}
    for question in questions:
        answers[question.id] = {s.position: s.answer for s in question.solutions}
    return eligible, answers


def _solution_meta(question: LabeledQuestion, solution: LabeledSolution, **extra: Any) -> dict[str, Any]:
    return {"question_id": question.id, "kind": "solution", "solution_id": solution.id, "method": solution.method,
            "agent": solution.agent, "role": solution.role, "round": solution.round, **extra}


def _correction_rows(question: LabeledQuestion, eligible: Sequence[LabeledSolution], prompt: list[dict[str, str]],
                     opts: BuildOptions, judge: Any, tally: _Tally) -> list[dict[str, Any]]:
    pairs, none_because = find_corrections(question, {s.position for s in eligible})
    if none_because:
        tally.corrections[none_because] += 1
        return []
    texts = [render_correction(wrong, right) for wrong, right in pairs]
    reasons = check_completions([CompletionCheck(question, text, right.answer)
                                 for text, (_, right) in zip(texts, pairs)], judge)
    passing = [i for i, reason in enumerate(reasons) if reason is None]
    for reason in filter(None, reasons):
        tally.correction_dropped[reason] += 1
    kept, dropped = dedup_and_cap([texts[i] for i in passing], opts.dedup_threshold, len(passing))
    tally.correction_dropped.update(dropped.values())
    rows = []
    for index in (passing[k] for k in kept):
        wrong, right = pairs[index]
        meta = _solution_meta(question, right, kind="correction", wrong_solution_id=wrong.id,
                              wrong_round=wrong.round)
        rows.append(example_row(f"{question.id}/correction/{wrong.id}-{right.id}", prompt, texts[index], meta))
    tally.corrections["examples"] += len(rows)
    return rows


def _question_rows(question: LabeledQuestion, eligible: list[LabeledSolution], answers: dict[int, str | None],
                   scores: dict[int, float] | None, prompt: list[dict[str, str]], opts: BuildOptions,
                   tally: _Tally) -> list[dict[str, Any]]:
    if not eligible:
        return []
    if opts.strategy == "rsft":
        best, picked_by = pick_rsft(question, eligible, answers, scores)
        tally.picked_by[picked_by] += 1
        tally.dropped[NOT_BEST] += len(eligible) - 1
        extra = {"picked_by": picked_by} | ({"prm_score": scores[best.position]} if scores else {})
        return [example_row(f"{question.id}/{best.id}", prompt, best.text.strip(),
                            _solution_meta(question, best, **extra))]
    if scores is not None:
        ordered = sorted(eligible, key=lambda s: (-scores[s.position], preference_key(s)))
    else:
        ordered = sorted(eligible, key=preference_key)
    kept, dropped = dedup_and_cap([s.text.strip() for s in ordered], opts.dedup_threshold, opts.max_per_question)
    tally.dropped.update(dropped.values())
    rows = []
    for index in kept:
        solution = ordered[index]
        extra = {"prm_score": scores[solution.position]} if scores else {}
        rows.append(example_row(f"{question.id}/{solution.id}", prompt, solution.text.strip(),
                                _solution_meta(question, solution, **extra)))
    return rows


def build(opts: BuildOptions, load_prm: Callable[[str], Any] = load_prm_scorer) -> BuildResult:
    """Read, select, render and check; nothing is written here (see `write`)."""
    from labeling.rule_judge import RuleJudge

    started = time.perf_counter()
    check_options(opts)
    system_prompt = cot_system_prompt(opts.cot_config)
    questions = read_labeled(opts.input, opts.dataset_name)
    scorer = load_prm(opts.prm) if opts.prm else None
    tally = _Tally()
    excluded = set(opts.exclude_methods)
    kept_questions = []
    for question in questions:
        kept = [s for s in question.solutions if s.method not in excluded]
        tally.dropped[METHOD_EXCLUDED] += len(question.solutions) - len(kept)
        tally.solutions += len(question.solutions) - len(kept)
        kept_questions.append(replace(question, solutions=kept))
    judge = RuleJudge()
    eligible, answers = _eligible_solutions(kept_questions, judge, tally)
    by_id = {q.id: q for q in kept_questions}
    scores = _prm_scores(scorer, eligible, by_id, opts.prm_aggregate, opts.prm_batch_size) if scorer else None

    rows: list[dict[str, Any]] = []
    covered = 0
    for question in kept_questions:
        prompt = cot_messages(question, system_prompt)
        question_rows = _question_rows(question, eligible[question.id], answers[question.id],
                                       scores[question.id] if scores else None, prompt, opts, tally)
        if opts.include_corrections:
            question_rows += _correction_rows(question, eligible[question.id], prompt, opts, judge, tally)
        if question_rows:
            covered += 1
        elif not eligible[question.id]:
            tally.questions_without_example[NO_CORRECT_SOLUTION if question.solutions else "no_solutions"] += 1
        rows.extend(question_rows)
    stats = _stats(opts, questions, rows, covered, tally, time.perf_counter() - started)
    return BuildResult(rows=rows, stats=stats, out=Path(opts.out))


def _nonzero(counts: Counter) -> dict[str, int]:
    return {key: value for key, value in sorted(counts.items()) if value}


def _stats(opts: BuildOptions, questions: Sequence[LabeledQuestion], rows: Sequence[dict[str, Any]], covered: int,
           tally: _Tally, elapsed_s: float) -> dict[str, Any]:
    lengths = [len(row["completion"][0]["content"]) for row in rows]
    words = [len(row["completion"][0]["content"].split()) for row in rows]
    stats: dict[str, Any] = {
        "strategy": opts.strategy, "input": opts.input, "out": opts.out,
        "questions": len(questions), "questions_covered": covered, "examples": len(rows),
        "correction_examples": sum(row["meta"]["kind"] == "correction" for row in rows),
        "mean_completion_chars": round(sum(lengths) / len(lengths), 1) if rows else None,
        "mean_completion_words": round(sum(words) / len(words), 1) if rows else None,
        "solutions": tally.solutions,
        "solutions_dropped": _nonzero(tally.dropped),
        "questions_without_example": _nonzero(tally.questions_without_example),
        "options": {"prm": opts.prm, "prm_aggregate": opts.prm_aggregate if opts.prm else None,
                    "max_per_question": opts.max_per_question if opts.strategy == "da" else None,
                    "dedup_threshold": opts.dedup_threshold if opts.strategy == "da" else None,
                    "include_corrections": opts.include_corrections, "cot_config": opts.cot_config,
                    "exclude_methods": list(opts.exclude_methods), "dataset_name": opts.dataset_name},
        "elapsed_s": round(elapsed_s, 3),
    }
    if opts.strategy == "rsft":
        stats["picked_by"] = _nonzero(tally.picked_by)
    if opts.include_corrections:
        stats["corrections"] = {"examples": tally.corrections["examples"],
                                "questions_no_rounds_to_compare": tally.corrections["no_rounds_to_compare"],
                                "questions_no_wrong_to_right": tally.corrections["no_wrong_to_right"],
                                "dropped": _nonzero(tally.correction_dropped)}
    return stats


def stats_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name.removesuffix(".jsonl") + ".stats.json")


def write(result: BuildResult) -> None:
    """The rows, then the stats beside them; each file replaced in one step."""
    from data.records import write_records

    write_records(result.out, result.rows)
    atomic_write_text(stats_path(result.out), [json.dumps(result.stats, indent=2, ensure_ascii=False) + "\n"])


def format_stats(stats: dict[str, Any]) -> str:
    def counts(mapping: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in mapping.items() if v) or "none"

    lines = [f"{stats['strategy']}: {stats['examples']} examples from {stats['questions_covered']} of "
             f"{stats['questions']} questions ({stats['solutions']} solutions); mean completion "
             f"{stats['mean_completion_chars']} chars / {stats['mean_completion_words']} words",
             f"solutions dropped: {counts(stats['solutions_dropped'])}",
             f"questions without an example: {counts(stats['questions_without_example'])}"]
    if "picked_by" in stats:
        lines.append(f"picked by: {counts(stats['picked_by'])}")
    if "corrections" in stats:
        c = stats["corrections"]
        lines.append(f"corrections: {c['examples']} examples; questions with no rounds to compare "
                     f"{c['questions_no_rounds_to_compare']} (needs a method with rounds, labeled with label.py "
                     f"--all_rounds), no wrong-to-right move {c['questions_no_wrong_to_right']}; "
                     f"dropped: {counts(c['dropped'])}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m distill.build_data", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--strategy", choices=STRATEGIES, default="rsft",
                   help="rsft: one best correct solution per question; da: up to --max_per_question distinct ones")
    p.add_argument("--input", default="results/Arith/labeled.jsonl", help="labeled records written by label.py")
    p.add_argument("--out", default=None,
                   help="output JSONL (default: data/sft/<input stem>_<strategy>.jsonl); stats go beside it")
    p.add_argument("--prm", default=None,
                   help="a trained PRM (prm/finetune2.py output): pick (rsft) or order (da) correct solutions by "
                        "its score instead of aggregator/majority")
    p.add_argument("--prm_aggregate", choices=tuple(PRM_AGGREGATES), default="min",
                   help="how step scores make a solution's score")
    p.add_argument("--prm_batch_size", type=int, default=16, help="solutions per PRM forward pass")
    p.add_argument("--max_per_question", type=int, default=4, help="da: most distinct solutions kept per question")
    p.add_argument("--dedup_threshold", type=float, default=0.9,
                   help="da: drop a solution whose ROUGE-L F1 with one already kept is at least this")
    p.add_argument("--include_corrections", action="store_true",
                   help="da: add traces where an agent moved from a wrong answer to a right one in a later round "
                        "(needs labels made with label.py --all_rounds)")
    p.add_argument("--dataset_name", default=None,
                   help="dataset whose task prompt to use for every record (default: each record's 'source')")
    p.add_argument("--cot_config", default="config_main",
                   help="the cot config the student will be evaluated with (its system prompt, if any, is "
                        "part of the prompt); as inference.py --method_config_name")
    p.add_argument("--exclude_methods", default="cot",
                   help="comma-separated methods whose solutions never become targets ('' keeps all); the "
                        "single-agent cot is left out by default, this distils multi-agent reasoning")
    p.add_argument("--log_level", default="INFO", help="logging level")
    return p


def options_from_args(args: argparse.Namespace) -> BuildOptions:
    out = args.out or str(Path("data/sft") / f"{Path(args.input).stem}_{args.strategy}.jsonl")
    return BuildOptions(strategy=args.strategy, input=args.input, out=out, prm=args.prm,
                        prm_aggregate=args.prm_aggregate, prm_batch_size=args.prm_batch_size,
                        max_per_question=args.max_per_question, dedup_threshold=args.dedup_threshold,
                        include_corrections=args.include_corrections, dataset_name=args.dataset_name,
                        cot_config=args.cot_config,
                        exclude_methods=tuple(m.strip() for m in args.exclude_methods.split(",") if m.strip()))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result = build(options_from_args(args))
    except BuildDataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    write(result)
    print(format_stats(result.stats))
    print(f"wrote {result.out} and {stats_path(result.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
