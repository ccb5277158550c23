"""A labelling run: read inference records, pick the solutions, judge them, write labeled records, report.

One labeled record per question id holds the solutions of every input file (any method, any model), as
design.md's labeled record and PRM training want. Records are written through `data.records.RecordStore`
(fsynced appends, resume by id, torn-tail repair), so a killed run resumes where it stopped. A record gets
an `error` (its solutions and labels are still valid) when it is incomplete: a judge verdict could not be
read, or an input's inference failed for that question; `--retry_errors` labels such questions again.
"""
from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import logging
import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from data.atomic import atomic_write_text
from data.errors import DataError
from data.steps import split_steps
from eval.grading import extract_answer
from labeling.judge import Judge, JudgeItem, Verdict
from labeling.rule_judge import DEFAULT_F1_THRESHOLD, RuleJudge
from labeling.solutions import select_solutions

logger = logging.getLogger(__name__)

JUDGE_CHOICES = ("rule", "llm", "both")
SAMPLE_FIELDS = ("choices", "context", "source")  # optional sample fields copied when present
CHUNK_QUESTIONS = 1000  # questions judged (rule) and written per batch: grading pools and progress per batch


class LabelError(ValueError):
    """Input or flags label.py cannot use: the message is one line naming the file and line, or the flag."""


def default_judge(task_type: str) -> str:
    """`rule` where the answer is verifiable (math, multiple choice), `llm` for free-form short answers."""
    return "llm" if task_type == "short_answer" else "rule"


@dataclass
class LabelOptions:
    """What one label.py run does (the CLI flags, minus the engine's)."""

    inputs: Sequence[str]
    dataset_name: str
    output: str | None = None
    judge: str | None = None  # None: default_judge(task type)
    all_rounds: bool = False
    keep_truncated: bool = False
    f1_threshold: float = DEFAULT_F1_THRESHOLD
    start: int = 0
    end: int | None = None
    num_shards: int = 1
    shard_id: int = 0
    retry_errors: bool = False
    progress: bool = True
    num_workers: int | None = None  # math grading processes (default: every core)
    grade_timeout_s: float = 5.0
    engine_flags: Sequence[str] = ()  # engine options given on the command line (dest names)


@dataclass
class Candidate:
    """One solution turn, read from an inference record, before judging."""

    text: str
    answer: str | None
    agent: int
    role: str
    round: int
    method: str
    model: str | None
    truncated: bool


@dataclass
class Question:
    """One question id across every input: the sample fields and all its candidate solutions."""

    id: str
    sample: dict[str, Any]  # query, gt and the optional sample fields
    where: str  # file:line of the first record, for messages
    candidates: list[Candidate] = field(default_factory=list)
    failed_in: list[str] = field(default_factory=list)  # file:line of records whose inference failed


@dataclass
class ReadSummary:
    files: list[str] = field(default_factory=list)
    records: int = 0
    failed_records: int = 0
    truncated_dropped: int = 0
    first_method: str = ""  # the first record's method: names the default output


# ---------------------------------------------------------------------------------------------------
# Reading the inputs
# ---------------------------------------------------------------------------------------------------

def expand_inputs(patterns: Sequence[str]) -> list[Path]:
    """The input files: paths as given, globs expanded (sorted); each file once, in the order given."""
    paths: list[Path] = []
    for pattern in patterns:
        if Path(pattern).is_file():
            matches = [pattern]
        elif glob.has_magic(pattern):
            matches = sorted(glob.glob(pattern))
            if not matches:
                raise LabelError(f"--input {pattern}: no file matches")
        else:
            raise LabelError(f"--input {pattern}: no such file")
        for match in matches:
            path = Path(match)
            if path.is_file() and path.resolve() not in {p.resolve() for p in paths}:
                paths.append(path)
    if not paths:
        raise LabelError("--input: no input files")
    return paths


def _records_with_lines(path: Path) -> Iterator[tuple[dict[str, Any], str]]:
    """(record, "file:line") for each record of an inference file; a torn last line is skipped."""
    from data.records import read_records_with_lines

    try:
        records = read_records_with_lines(path)
    except DataError as error:
        raise LabelError(str(error)) from None
    if not records:
        raise LabelError(f"--input {path}: no records")
    yield from records


def _check_record(record: dict[str, Any], where: str) -> None:
    for name, kind in (("query", str), ("method", str), ("trajectory", list)):
        if not isinstance(record.get(name), kind):
            raise LabelError(f"{where}: not an inference record (no {kind.__name__} {name!r}); "
                             "label.py reads the *_infer.jsonl files inference.py writes")
    gt = record.get("gt")
    if gt is None or (isinstance(gt, str) and not gt.strip()) or isinstance(gt, (dict, bool)) or gt == []:
        raise LabelError(f"{where}: record {record['id']!r} has no 'gt' (reference answer) to judge against")
    for number, turn in enumerate(record["trajectory"]):
        if not isinstance(turn, dict) or not isinstance(turn.get("role"), str):
            raise LabelError(f"{where}: trajectory turn {number} has no string 'role'")


def _check_solution_turn(turn: dict[str, Any], where: str, number: int) -> None:
    for name, kind in (("text", str), ("agent", int), ("round", int)):
        if not isinstance(turn.get(name), kind) or isinstance(turn.get(name), bool):
            raise LabelError(f"{where}: trajectory turn {number} ({turn['role']}) has no {kind.__name__} {name!r}")


def _task_type_of_source(source: Any) -> str | None:
    from data.registry import REGISTRY

    if not isinstance(source, str):
        return None
    spec = next((s for name, s in REGISTRY.items() if name.lower() == source.lower()), None)
    return spec.task_type if spec else None


def read_inputs(paths: Sequence[Path], dataset_name: str, task_type: str, all_rounds: bool = False,
                keep_truncated: bool = False) -> tuple[list[Question], ReadSummary]:
    """Every question of the inputs in first-seen order, with its candidate solutions; bad input fails here."""
    questions: dict[str, Question] = {}
    summary = ReadSummary(files=[str(p) for p in paths])
    source_types: dict[Any, str | None] = {}
    for path in paths:
        seen_here: dict[str, str] = {}
        for record, where in _records_with_lines(path):
            qid = record["id"]
            if qid in seen_here:
                raise LabelError(f"{where}: duplicate id {qid!r} (first at {seen_here[qid]})")
            seen_here[qid] = where
            _check_record(record, where)
            source = record.get("source")
            if source not in source_types:
                source_types[source] = _task_type_of_source(source)
            if source_types[source] not in (None, task_type):
                raise LabelError(f"{where}: a {source} record ({source_types[source]}) but --dataset_name "
                                 f"{dataset_name} is {task_type}")
            summary.records += 1
            summary.first_method = summary.first_method or record["method"]
            sample = {"query": record["query"], "gt": record["gt"]}
            sample.update({name: record[name] for name in SAMPLE_FIELDS if record.get(name) is not None})
            question = questions.get(qid)
            if question is None:
                question = questions[qid] = Question(id=qid, sample=sample, where=where)
            else:
                for name in ("query", "gt"):
                    if sample[name] != question.sample[name]:
                        raise LabelError(f"{where}: id {qid!r} has another {name!r} than at {question.where}")
            if record.get("error"):
                summary.failed_records += 1
                question.failed_in.append(where)
                continue
            selection = select_solutions(record, all_rounds=all_rounds, keep_truncated=keep_truncated)
            summary.truncated_dropped += selection.truncated_dropped
            choices = record.get("choices")
            for number, turn in enumerate(selection.turns):
                _check_solution_turn(turn, where, number)
                answer = turn.get("answer")
                if answer is None:
                    answer = extract_answer(turn["text"], task_type, choices=choices)
                question.candidates.append(Candidate(
                    text=turn["text"], answer=None if answer is None else str(answer), agent=turn["agent"],
                    role=turn["role"], round=turn["round"], method=record["method"], model=record.get("model"),
                    truncated=turn.get("finish_reason") == "length"))
    return list(questions.values()), summary


# ---------------------------------------------------------------------------------------------------
# Judging and writing
# ---------------------------------------------------------------------------------------------------

def judge_items(question: Question, task_type: str) -> list[JudgeItem]:
    sample = question.sample
    gt = sample["gt"] if isinstance(sample["gt"], list) else str(sample["gt"])
    return [JudgeItem(query=sample["query"], gt=gt, candidate=c.text, answer=c.answer, task_type=task_type,
                      choices=sample.get("choices"), context=sample.get("context"))
            for c in question.candidates]


def labeled_record(question: Question, verdicts: dict[str, list[Verdict]], primary: str) -> dict[str, Any]:
    """design.md's labeled record; with two judges each solution also keeps both `verdicts`."""
    solutions = []
    unread = 0
    for index, candidate in enumerate(question.candidates):
        verdict = verdicts[primary][index]
        solution: dict[str, Any] = {
            "id": index + 1, "text": candidate.text, "steps": split_steps(candidate.text),
            "is_correct": verdict.is_correct, "answer": candidate.answer, "agent": candidate.agent,
            "role": candidate.role, "round": candidate.round, "method": candidate.method, "model": candidate.model,
            "judge": verdict.judge, "judge_detail": verdict.detail,
        }
        if candidate.truncated:
            solution["truncated"] = True
        if len(verdicts) > 1:
            solution["verdicts"] = {name: {"is_correct": v[index].is_correct, "detail": v[index].detail}
                                    for name, v in verdicts.items()}
        unread += any(v[index].is_correct is None for v in verdicts.values())
        solutions.append(solution)
    record: dict[str, Any] = {"id": question.id, **question.sample, "solutions": solutions,
                              "labels": [s["is_correct"] for s in solutions]}
    problems = []
    if unread:
        problems.append(f"no judge verdict for {unread} of {len(solutions)} solutions (is_correct null)")
    if question.failed_in:
        problems.append(f"inference failed for this question at {', '.join(question.failed_in)}")
    if problems:
        record["error"] = "; ".join(problems) + "; rerun with --retry_errors to label it again"
    return record


@contextlib.asynccontextmanager
async def _opened(judge: Any):
    """Start and close a judge that holds an engine (an async context manager, or start()/close())."""
    if hasattr(judge, "__aenter__"):
        async with judge:
            yield judge
        return
    if hasattr(judge, "start"):
        await judge.start()
    try:
        yield judge
    finally:
        if hasattr(judge, "close"):
            await judge.close()


def _chunks(items: Sequence[Question], size: int) -> Iterator[Sequence[Question]]:
    for begin in range(0, len(items), size):
        yield items[begin:begin + size]


async def judge_and_write(todo: Sequence[Question], task_type: str, judges: dict[str, Judge], primary: str,
                          write: Callable[[dict[str, Any]], None], progress: bool = True) -> None:
    """Judge every solution of `todo` and write one record per question as soon as its verdicts are in.

    The rule judge grades a batch of questions at a time (one grading pool per batch); a writer thread
    appends the batch's records (an fsync each) while the next batch is graded. An LLM judge gets one
    request per question, all in flight at once, so the engine batches every call of the run.
    """
    bar = tqdm(total=len(todo), desc=f"label ({'+'.join(judges)})", unit="question", disable=not progress,
               dynamic_ncols=True)
    rule, llm = judges.get("rule"), judges.get("llm")
    try:
        if rule is not None and llm is None:
            await _rule_only(todo, task_type, rule, primary, write, bar)
            return
        rule_verdicts: dict[str, list[Verdict]] = {}
        if rule is not None:
            for chunk in _chunks(todo, CHUNK_QUESTIONS):
                rule_verdicts.update(await _judge_chunk(rule, chunk, task_type))
        assert llm is not None

        async def one(question: Question) -> None:
            verdicts = {"rule": rule_verdicts.pop(question.id)} if rule is not None else {}
            verdicts["llm"] = list(await llm.judge_many(judge_items(question, task_type)))
            if len(verdicts["llm"]) != len(question.candidates):
                raise RuntimeError(f"the llm judge returned {len(verdicts['llm'])} verdicts for "
                                   f"{len(question.candidates)} items")
            write(labeled_record(question, verdicts, primary))
            bar.update(1)

        tasks = [asyncio.create_task(one(question)) for question in todo]
        try:
            await asyncio.gather(*tasks)
        finally:  # one failure (the engine is gone) stops the rest; written records stay
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        bar.close()


async def _judge_chunk(judge: Judge, chunk: Sequence[Question], task_type: str) -> dict[str, list[Verdict]]:
    items = [item for question in chunk for item in judge_items(question, task_type)]
    verdicts = iter(await judge.judge_many(items))
    return {question.id: [next(verdicts) for _ in question.candidates] for question in chunk}


async def _rule_only(todo: Sequence[Question], task_type: str, rule: Judge, primary: str,
                     write: Callable[[dict[str, Any]], None], bar: tqdm) -> None:
    def write_all(records: list[dict[str, Any]]) -> None:
        for record in records:
            write(record)
            bar.update(1)

    pending: list[Future] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="label-writer") as writer:
        try:
            for chunk in _chunks(todo, CHUNK_QUESTIONS):
                verdicts = await _judge_chunk(rule, chunk, task_type)
                records = [labeled_record(q, {"rule": verdicts[q.id]}, primary) for q in chunk]
                pending.append(writer.submit(write_all, records))
                for future in [f for f in pending if f.done()]:
                    future.result()  # a failed write stops the run now
                    pending.remove(future)
            for future in pending:
                future.result()
        except BaseException:
            writer.shutdown(wait=True, cancel_futures=True)  # the batch being written finishes; no more start
            raise


# ---------------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------------

def _rate(counts: Counter) -> dict[str, Any]:
    judged = counts["correct"] + counts["incorrect"]
    return {"solutions": counts["correct"] + counts["incorrect"] + counts["unknown"], "correct": counts["correct"],
            "unknown": counts["unknown"], "accuracy": round(counts["correct"] / judged, 4) if judged else None}


def cohen_kappa(pairs: Sequence[tuple[bool, bool]]) -> float | None:
    """Cohen's kappa of two judges' true/false verdicts; None when chance agreement is 1 (undefined)."""
    if not pairs:
        return None
    observed = sum(a == b for a, b in pairs) / len(pairs)
    p_a = sum(a for a, _ in pairs) / len(pairs)
    p_b = sum(b for _, b in pairs) / len(pairs)
    chance = p_a * p_b + (1 - p_a) * (1 - p_b)
    if math.isclose(chance, 1.0):
        return None
    return round((observed - chance) / (1 - chance), 4)


def label_stats(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What a labeled file holds: accuracy overall and per method / agent / round, mixed questions, agreement."""
    total: Counter = Counter()
    by_method: dict[str, Counter] = defaultdict(Counter)
    by_agent: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    by_round: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    pairs: list[tuple[bool, bool]] = []
    mixed = all_correct = all_incorrect = incomplete = 0
    for record in records:
        labels = set()
        incomplete += "error" in record
        for solution in record.get("solutions", []):
            verdict = solution.get("is_correct")
            key = "unknown" if verdict is None else ("correct" if verdict else "incorrect")
            labels.add(key)
            method = str(solution.get("method"))
            for counter in (total, by_method[method], by_agent[method][f"{solution.get('agent')} "
                                                                       f"({solution.get('role')})"],
                            by_round[method][str(solution.get("round"))]):
                counter[key] += 1
            both = solution.get("verdicts") or {}
            if len(both) == 2:
                a, b = (v.get("is_correct") for v in both.values())
                if a is not None and b is not None:
                    pairs.append((bool(a), bool(b)))
        mixed += {"correct", "incorrect"} <= labels
        all_correct += labels == {"correct"}
        all_incorrect += labels == {"incorrect"}
    stats: dict[str, Any] = {
        "questions": len(records), **_rate(total),
        "questions_mixed": mixed, "questions_all_correct": all_correct, "questions_all_incorrect": all_incorrect,
        "questions_incomplete": incomplete,
        "by_method": {m: _rate(c) for m, c in sorted(by_method.items())},
        "by_agent": {m: {a: _rate(c) for a, c in sorted(agents.items())} for m, agents in sorted(by_agent.items())},
        "by_round": {m: {r: _rate(c) for r, c in sorted(rounds.items(), key=lambda kv: _int_key(kv[0]))}
                     for m, rounds in sorted(by_round.items())},
    }
    if pairs:
        agree = sum(a == b for a, b in pairs)
        stats["agreement"] = {"solutions": len(pairs), "agree": agree, "rate": round(agree / len(pairs), 4),
                              "cohen_kappa": cohen_kappa(pairs)}
    return stats


def _int_key(text: str) -> tuple[int, str]:
    return (int(text), "") if text.lstrip("-").isdigit() else (1 << 30, text)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def format_stats(stats: dict[str, Any]) -> str:
    """The printed summary of `label_stats`."""
    from eval.common import format_table

    lines = [f"questions: {stats['questions']}, solutions: {stats['solutions']}, correct: {stats['correct']} "
             f"({_pct(stats['accuracy'])})" + (f", no verdict: {stats['unknown']}" if stats["unknown"] else ""),
             f"questions with both correct and incorrect solutions (PRM training can use): {stats['questions_mixed']}"
             f" (all correct {stats['questions_all_correct']}, all incorrect {stats['questions_all_incorrect']})"]
    if stats["questions_incomplete"]:
        lines.append(f"incomplete records (an `error`; --retry_errors labels them again): "
                     f"{stats['questions_incomplete']}")
    rows = []
    for method, rate in stats["by_method"].items():
        rows.append([method, "all", "all", rate["solutions"], _pct(rate["accuracy"])])
        for agent, arate in stats["by_agent"][method].items():
            rows.append([method, agent, "", arate["solutions"], _pct(arate["accuracy"])])
        for round_, rrate in stats["by_round"][method].items():
            rows.append([method, "", round_, rrate["solutions"], _pct(rrate["accuracy"])])
    if rows:
        lines.append(format_table(["method", "agent (role)", "round", "solutions", "accuracy"], rows))
    if "agreement" in stats:
        agreement = stats["agreement"]
        kappa = "n/a" if agreement["cohen_kappa"] is None else f"{agreement['cohen_kappa']:.3f}"
        lines.append(f"rule vs llm judge: agreement {_pct(agreement['rate'])} on {agreement['solutions']} "
                     f"solutions, Cohen's kappa {kappa}")
    return "\n".join(lines)


def stats_path(output: str | Path) -> Path:
    """`x_labeled.jsonl` -> `x_labeled.stats.json` (beside it; never taken for a shard file)."""
    output = Path(output)
    return output.with_name(output.name.removesuffix(".jsonl") + ".stats.json")


# ---------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------

@dataclass
class LabelResult:
    output: Path
    stats: dict[str, Any]
    run: dict[str, Any]


def default_output(path: Path, method: str) -> Path:
    return path.parent / f"{method}_labeled.jsonl"


def _check_output(output: Path, inputs: Sequence[Path]) -> None:
    if any(output.resolve() == p.resolve() for p in inputs):
        raise LabelError(f"--output {output} is one of the inputs")
    if output.is_file():
        from data.records import read_records

        try:
            first = next(read_records(output), None)
        except DataError as error:
            raise LabelError(str(error)) from None
        if first is not None and "solutions" not in first:
            raise LabelError(f"--output {output} holds records that are not labeled records "
                             f"(no 'solutions'); choose another path")


def _warn_new_methods(existing: Sequence[dict[str, Any]], selected: Sequence[Question], done: set[str]) -> None:
    """Finished questions are never relabeled: say so when an input's method is new to the output."""
    if not existing:
        return
    in_output = {s.get("method") for r in existing for s in r.get("solutions", [])}
    new = sorted({c.method for q in selected if q.id in done for c in q.candidates} - in_output)
    if new:
        logger.warning("the output's finished questions hold no %s solutions; they are not labeled again "
                       "(write a new --output to label every input together)", ", ".join(new))


async def run_labeling(opts: LabelOptions, make_llm_judge: Callable[[], Any] | None = None) -> LabelResult:
    """One labelling run (see the module docstring); `make_llm_judge` builds the LLM judge when one is needed."""
    from data.records import RecordStore, read_records, shard_path
    from data.registry import get_dataset_spec

    started = time.perf_counter()
    try:
        spec = get_dataset_spec(opts.dataset_name)
    except DataError as error:
        raise LabelError(f"--dataset_name: {error}") from None
    judge = opts.judge or default_judge(spec.task_type)
    if judge not in JUDGE_CHOICES:
        raise LabelError(f"--judge {judge!r}: choose one of {', '.join(JUDGE_CHOICES)}")
    if not 0 <= opts.shard_id < opts.num_shards:
        raise LabelError(f"--shard_id {opts.shard_id} must be in [0, --num_shards {opts.num_shards})")
    if opts.start < 0 or (opts.end is not None and opts.end < opts.start):
        raise LabelError(f"--start {opts.start} / --end {opts.end}: need 0 <= start <= end")
    if judge == "rule" and opts.engine_flags:
        logger.warning("%s: engine flags do nothing with --judge rule",
                       ", ".join("--model" if f == "model_name" else f"--{f}" for f in opts.engine_flags))
    rule = RuleJudge(opts.f1_threshold, timeout_s=opts.grade_timeout_s, num_workers=opts.num_workers)
    inputs = expand_inputs(opts.inputs)
    if not opts.output and len(inputs) > 1:
        raise LabelError(f"--output is required with several inputs ({len(inputs)} files)")

    # Every input is read and checked before the output is touched: bad input leaves nothing behind.
    questions, read = read_inputs(inputs, spec.name, spec.task_type, opts.all_rounds, opts.keep_truncated)
    output = Path(opts.output) if opts.output else default_output(inputs[0], read.first_method)
    output = shard_path(output, opts.shard_id, opts.num_shards)
    _check_output(output, inputs)
    selected = questions[opts.start:opts.end][opts.shard_id::opts.num_shards]

    store = RecordStore(output)
    try:
        existing = store.load()
        dropped = store.drop_errors() if opts.retry_errors else 0
    except DataError as error:
        raise LabelError(str(error)) from None
    done = store.done_ids()
    _warn_new_methods(existing, selected, done)
    todo = [q for q in selected if q.id not in done and q.candidates]
    without_solutions = sum(1 for q in selected if not q.candidates)
    primary = default_judge(spec.task_type) if judge == "both" else judge
    logger.info("dataset=%s (%s) judge=%s inputs=%d records=%d (failed %d) questions=%d selected=%d "
                "(done %d, no solutions %d, to label %d) output=%s", spec.name, spec.task_type, judge, len(inputs),
                read.records, read.failed_records, len(questions), len(selected), len(selected) - len(todo) -
                without_solutions, without_solutions, len(todo), output)
    if dropped:
        logger.info("--retry_errors: dropped %d incomplete records to label again", dropped)

    judged_solutions = sum(len(q.candidates) for q in todo)
    if todo:
        judges: dict[str, Any] = {}
        if judge in ("rule", "both"):
            judges["rule"] = rule
        async with contextlib.AsyncExitStack() as stack:
            if judge in ("llm", "both"):
                if make_llm_judge is None:
                    raise LabelError(f"--judge {judge} needs a judge model (--model)")
                judges["llm"] = await stack.enter_async_context(_opened(make_llm_judge()))
            await judge_and_write(todo, spec.task_type, judges, primary, store.append, progress=opts.progress)
    elapsed = time.perf_counter() - started

    records = list(read_records(output)) if output.exists() else []
    stats = label_stats(records)
    run = {"inputs": [str(p) for p in inputs], "dataset": spec.name, "task_type": spec.task_type, "judge": judge,
           "primary_judge": primary, "all_rounds": opts.all_rounds, "keep_truncated": opts.keep_truncated,
           "f1_threshold": opts.f1_threshold if spec.task_type == "short_answer" else None,
           "records_read": read.records, "failed_records_skipped": read.failed_records,
           "truncated_solutions_dropped": read.truncated_dropped, "questions": len(questions),
           "questions_selected": len(selected), "questions_without_solutions": without_solutions,
           "questions_labeled_now": len(todo), "solutions_judged_now": judged_solutions,
           "elapsed_s": round(elapsed, 3)}
    if output.exists():
        atomic_write_text(stats_path(output), [json.dumps({"output": str(output), "labels": stats, "run": run},
                                                          indent=2, ensure_ascii=False) + "\n"])
    return LabelResult(output=output, stats=stats, run=run)


def format_run(result: LabelResult) -> str:
    run = result.run
    lines = [f"labeled {run['questions_labeled_now']} questions ({run['solutions_judged_now']} solutions) with the "
             f"{run['judge']} judge in {run['elapsed_s']:.1f}s -> {result.output}"]
    skipped = []
    if run["failed_records_skipped"]:
        skipped.append(f"{run['failed_records_skipped']} failed inference records")
    if run["truncated_solutions_dropped"]:
        skipped.append(f"{run['truncated_solutions_dropped']} truncated solutions (--keep_truncated keeps them)")
    if run["questions_without_solutions"]:
        skipped.append(f"{run['questions_without_solutions']} questions without a solution")
    if skipped:
        lines.append("skipped: " + ", ".join(skipped))
    lines.append(format_stats(result.stats))
    if result.output.exists():
        lines.append(f"stats: {stats_path(result.output)}")
    return "\n".join(lines)


__all__ = ["JUDGE_CHOICES", "Candidate", "LabelError", "LabelOptions", "LabelResult", "Question", "cohen_kappa",
           "default_judge", "expand_inputs", "format_run", "format_stats", "judge_and_write", "label_stats",
           "labeled_record", "read_inputs", "run_labeling", "stats_path"]
