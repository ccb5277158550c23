"""A trajectory viewer: one self-contained HTML page to read multi-agent runs question by question.

    python -m eval.viewer results/GSM8K/<model>/llm_debate_infer.jsonl [--labeled results/GSM8K/labeled.jsonl] \\
        [--prm outputs/prm] --out reports/debate.html

The page needs no server and no network: the records are embedded as JSON and drawn by a small script
(only the question in view is drawn, the list grows as it is scrolled, so 10,000 records stay fast). Every
text from a record reaches the page through `textContent`, never as markup, and the page's Content
Security Policy runs only its own script: a model's output holding HTML or `<script>` shows as text.

Correctness comes from label.py's verdicts where `--labeled` has the turn, else from the graders every
other tool uses: the final answer as `eval.math_eval` / `eval.medmcqa_eval` score it (short answers: token
F1 against the references at the rule judge's threshold) and each solution turn as label.py's rule judge
does. A dataset the registry does not know (and no `--dataset_name`) leaves correctness unknown.
"""
from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import json
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from data.errors import DataError
from eval.common import EvalError, InferenceRecord, cost_summary, finite_or_none, run_cli

ASSETS_DIR = Path(__file__).resolve().parent / "viewer_assets"
# Turn fields the grid shows in their own places; any other field of a turn is listed under it as "extra".
TURN_FIELDS = frozenset({"agent", "role", "round", "messages", "text", "answer", "prompt_tokens",
                         "completion_tokens", "finish_reason"})
# Roles that decide for the group rather than vote in it: left out of votes, agreement and disagreement.
DECIDING_ROLES = frozenset({"aggregator", "judge"})
MAX_EXTRA_CHARS = 300  # an extra turn field (a verifier's name, a ranking) is a note, not a second text


def _where_error(error: DataError) -> EvalError:
    return EvalError(str(error))


# ---------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------

def read_inference_files(paths: Sequence[str | Path]) -> list[list[InferenceRecord]]:
    """The records of each inference file (with file:line); anything that is not inference output fails here."""
    from data.records import read_records_with_lines

    runs = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise EvalError(f"{path}: no such file")
        try:
            rows = read_records_with_lines(path)
        except DataError as error:
            raise _where_error(error) from None
        if not rows:
            raise EvalError(f"{path}: no records")
        records = []
        for data, where in rows:
            line = int(where.rsplit(":", 1)[1])
            record = InferenceRecord(data, path, line)
            if "solutions" in data and "trajectory" not in data:
                raise EvalError(f"{where}: a labeled record; pass the *_infer.jsonl file as input and this "
                                "file as --labeled")
            if not isinstance(data.get("query"), str):
                raise EvalError(f"{where}: not an inference record (no string 'query')")
            turns = data.get("trajectory", [])
            if not isinstance(turns, list):
                raise EvalError(f"{where}: field 'trajectory' must be a list of turns")
            for number, turn in enumerate(turns):
                if not isinstance(turn, dict):
                    raise EvalError(f"{where}: trajectory turn {number} is not an object")
            records.append(record)
        runs.append(records)
    return runs


def _label_key(method: Any, agent: Any, role: Any, round_number: Any, text: Any) -> tuple:
    return (method, agent, role, round_number, text)


def read_labels(path: str | Path) -> dict[str, dict[tuple, dict[str, Any]]]:
    """Labeled solutions by question id, keyed by (method, agent, role, round, text) to find their turn."""
    from data.records import read_records_with_lines

    path = Path(path)
    if not path.is_file():
        raise EvalError(f"--labeled {path}: no such file")
    try:
        rows = read_records_with_lines(path)
    except DataError as error:
        raise _where_error(error) from None
    labels: dict[str, dict[tuple, dict[str, Any]]] = {}
    for record, where in rows:
        solutions = record.get("solutions")
        if not isinstance(solutions, list):
            raise EvalError(f"{where}: not a labeled record (no list 'solutions'); --labeled takes label.py's output")
        keyed = labels.setdefault(record["id"], {})
        for number, solution in enumerate(solutions):
            if not isinstance(solution, dict) or not isinstance(solution.get("text"), str):
                raise EvalError(f"{where}: solution {number} has no string 'text'")
            keyed[_label_key(solution.get("method"), solution.get("agent"), solution.get("role"),
                             solution.get("round"), solution["text"])] = solution
    return labels


def task_type_of(record: dict[str, Any], dataset_name: str | None) -> str | None:
    """The task type of `--dataset_name`, else of the record's `source` when the registry knows it."""
    from data.registry import REGISTRY, get_dataset_spec

    if dataset_name:
        return get_dataset_spec(dataset_name).task_type
    source = record.get("source")
    if not isinstance(source, str):
        return None
    spec = next((s for name, s in REGISTRY.items() if name.lower() == source.lower()), None)
    return spec.task_type if spec else None


# ---------------------------------------------------------------------------------------------------
# Building the page's data
# ---------------------------------------------------------------------------------------------------

def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _extra_fields(turn: dict[str, Any]) -> dict[str, str]:
    extra = {}
    for name, value in turn.items():
        if name in TURN_FIELDS:
            continue
        text = value if isinstance(value, str) else json.dumps(finite_or_none(value), ensure_ascii=False)
        extra[name] = text if len(text) <= MAX_EXTRA_CHARS else text[:MAX_EXTRA_CHARS] + " …"
    return extra


def _page_turn(turn: dict[str, Any], solution: bool, task_type: str | None, choices: Any) -> dict[str, Any]:
    """One turn as the page shows it; a solution turn without `answer` gets the answer eval would extract."""
    from eval.grading import extract_answer

    text = turn.get("text") if isinstance(turn.get("text"), str) else ""
    answer = turn.get("answer")
    extracted = False
    if (answer is None or not str(answer).strip()) and solution and task_type and text:
        answer = extract_answer(text, task_type, choices=choices if isinstance(choices, list) else None)
        extracted = answer is not None
    page = {"agent": turn.get("agent"), "role": str(turn.get("role", "?")), "round": _int_or_none(turn.get("round")),
            "text": text, "answer": None if answer is None else str(answer), "solution": solution,
            "correct": None, "judge": None, "prompt_tokens": _int_or_none(turn.get("prompt_tokens")),
            "completion_tokens": _int_or_none(turn.get("completion_tokens")),
            "finish_reason": turn.get("finish_reason") if isinstance(turn.get("finish_reason"), str) else None}
    if extracted:
        page["answer_extracted"] = True
    extra = _extra_fields(turn)
    if extra:
        page["extra"] = extra
    return page


def _tokens(record: InferenceRecord) -> dict[str, float]:
    cost = cost_summary([record])  # one record: the per-question figures are this record's own
    return {"prompt": cost["prompt_tokens_per_question"], "completion": cost["completion_tokens_per_question"],
            "calls": cost["llm_calls_per_question"]}


def build_questions(runs: Sequence[Sequence[InferenceRecord]], labels: dict[str, dict[tuple, dict[str, Any]]],
                    dataset_name: str | None = None) -> list[dict[str, Any]]:
    """One page entry per record (a question in one run): its turns, answers, tokens and labels (no grading)."""
    from labeling.solutions import is_solution_turn

    questions = []
    for run_index, records in enumerate(runs):
        for record in records:
            data = record.data
            method = str(data.get("method", "?"))
            task_type = task_type_of(data, dataset_name)
            labeled = labels.get(data["id"], {})
            turns = []
            for turn in data.get("trajectory") or []:
                solution = is_solution_turn(turn, method)
                page = _page_turn(turn, solution, task_type, data.get("choices"))
                label = labeled.get(_label_key(method, turn.get("agent"), turn.get("role"), turn.get("round"),
                                               turn.get("text"))) if solution else None
                if label is not None:
                    page["correct"] = label.get("is_correct")
                    page["judge"] = f"label ({label.get('judge') or 'label.py'})"
                    if label.get("judge_detail"):
                        page["judge_detail"] = str(label["judge_detail"])
                    if isinstance(label.get("steps"), list):
                        page["steps"] = [str(step) for step in label["steps"]]
                turns.append(page)
            question = {
                "run": run_index, "id": data["id"], "query": data["query"], "gt": finite_or_none(data.get("gt")),
                "source": str(data.get("source") or "?"), "method": method, "model": str(data.get("model") or "?"),
                "task_type": task_type, "answer": None if data.get("answer") is None else str(data["answer"]),
                "response": data.get("response") if isinstance(data.get("response"), str) else None,
                "correct": None, "error": str(data["error"]) if data.get("error") else None,
                "tokens": _tokens(record), "latency_s": finite_or_none(data.get("latency_s")),
                "where": record.where, "turns": turns,
            }
            for name in ("choices", "context", "info"):
                if data.get(name) is not None:
                    question[name] = finite_or_none(data[name])
            questions.append(question)
    return questions


def grade_questions(questions: list[dict[str, Any]], runs: Sequence[Sequence[InferenceRecord]],
                    num_workers: int | None = None) -> None:
    """Fill in `correct`: final answers as the eval CLIs score them, unlabeled solution turns by the rule judge."""
    from eval.grading import token_f1
    from eval.math_eval import score_math_records
    from eval.medmcqa_eval import score_choice_records
    from eval.short_answer_eval import references_of
    from labeling.judge import JudgeItem
    from labeling.rule_judge import DEFAULT_F1_THRESHOLD, RuleJudge

    records = [record for run in runs for record in run]
    by_type: dict[str, list[int]] = defaultdict(list)
    for index, question in enumerate(questions):
        if question["task_type"]:
            by_type[question["task_type"]].append(index)
    for task_type, indices in by_type.items():
        chosen = [records[i] for i in indices]
        if task_type == "math":
            # Graded once per distinct (answer, reference): symbolic checks cost ~0.1 s each, and the answers
            # of a large run repeat. The representative is graded exactly as eval.math_eval grades it.
            groups: dict[str, list[int]] = {}
            for position, record in enumerate(chosen):
                groups.setdefault(_math_grade_key(record), []).append(position)
            rows = score_math_records([chosen[group[0]] for group in groups.values()], num_workers=num_workers)
            verdicts = [None] * len(chosen)
            for row, group in zip(rows, groups.values()):
                for position in group:
                    verdicts[position] = (row["correct"], row["reason"])
        elif task_type == "multiple_choice":
            verdicts = [(row["correct"], row["reason"]) for row in score_choice_records(chosen)]
        else:
            from eval.common import prediction_of
            from eval.grading import extract_short_answer

            verdicts = []
            for record in chosen:
                if record.failed:
                    verdicts.append((False, "inference_error"))
                    continue
                f1 = token_f1(prediction_of(record, extract_short_answer) or "", references_of(record))
                verdicts.append((f1 >= DEFAULT_F1_THRESHOLD, f"token_f1={f1:.3f}"))
        for index, (correct, reason) in zip(indices, verdicts):
            questions[index]["correct"] = bool(correct)
            questions[index]["grade"] = reason

    items, owners = [], []
    for question in questions:
        if not question["task_type"]:
            continue
        gt = question["gt"] if isinstance(question["gt"], list) else str(question["gt"])
        for turn in question["turns"]:
            if turn["solution"] and turn["judge"] is None:
                items.append(JudgeItem(query=question["query"], gt=gt, candidate=turn["text"], answer=turn["answer"],
                                       task_type=question["task_type"], choices=question.get("choices")))
                owners.append(turn)
    if items:
        for turn, verdict in zip(owners, RuleJudge(num_workers=num_workers).judge_many_sync(items)):
            turn["correct"] = verdict.is_correct
            turn["judge"] = "rule"
            if verdict.detail:
                turn["judge_detail"] = verdict.detail


def _math_grade_key(record: InferenceRecord) -> str:
    """Records with equal keys get equal grades from eval.math_eval (same committed answer or response, same gt)."""
    data = record.data
    answer = data.get("answer")
    committed = str(answer) if answer is not None and str(answer).strip() else None
    return json.dumps([bool(record.failed), committed, None if committed else data.get("response"), data.get("gt")],
                      ensure_ascii=False, default=str)


@functools.lru_cache(maxsize=200_000)
def _answer_key(answer: str | None, task_type: str | None) -> str | None:
    """eval.grading's vote key (cached: a debate repeats answers across agents and rounds)."""
    from eval.grading import answer_key

    if answer is None:
        return None
    return answer_key(answer, task_type or "short_answer")


def add_dynamics(question: dict[str, Any]) -> None:
    """Per-question facts the filters and the summary read: votes, agreement per round, changes of mind, switches."""
    task_type = question["task_type"]
    by_agent: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for turn in question["turns"]:
        if turn["solution"]:
            by_agent[(turn["agent"], turn["role"])].append(turn)
    voters = {agent: turns for agent, turns in by_agent.items() if agent[1] not in DECIDING_ROLES}
    last_answers = [turns[-1]["answer"] for turns in voters.values()]
    keys = [_answer_key(a, task_type) for a in last_answers]
    counts = Counter(k for k in keys if k is not None)
    shown = {}
    for key, answer in zip(keys, last_answers):
        if key is not None:
            shown.setdefault(key, answer)  # what the first agent with that answer wrote
    question["votes"] = [[shown[key], count] for key, count in counts.most_common()]
    question["disagree"] = len(counts) > 1 or (len(counts) == 1 and None in keys and len(keys) > 1)

    changed = False
    wrong_to_right = right_to_wrong = transitions = 0
    for turns in by_agent.values():
        answers = [k for k in (_answer_key(t["answer"], task_type) for t in turns) if k is not None]
        changed = changed or any(a != b for a, b in zip(answers, answers[1:]))
        known = [t["correct"] for t in turns if t["correct"] is not None]
        for before, after in zip(known, known[1:]):
            transitions += 1
            wrong_to_right += (not before) and after
            right_to_wrong += before and not after
    question["changed"] = changed
    question["switches"] = {"wrong_to_right": wrong_to_right, "right_to_wrong": right_to_wrong,
                            "transitions": transitions}

    rounds: dict[int, dict[tuple, str | None]] = defaultdict(dict)
    for agent, turns in voters.items():
        for turn in turns:
            if turn["round"] is not None:
                rounds[turn["round"]][agent] = _answer_key(turn["answer"], task_type)  # its last turn that round
    agreement = []
    for round_number in sorted(rounds):
        round_keys = list(rounds[round_number].values())
        if len(round_keys) < 2:
            continue
        tally = Counter(k for k in round_keys if k is not None)
        majority = max(tally.values()) if tally else 0
        agreement.append({"round": round_number, "agents": len(round_keys), "majority": majority,
                          "unanimous": majority == len(round_keys)})
    question["agreement"] = agreement
    question["truncated"] = any(t["finish_reason"] == "length" for t in question["turns"])


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize_runs(questions: Sequence[dict[str, Any]], runs: Sequence[Sequence[InferenceRecord]],
                   inputs: Sequence[str]) -> list[dict[str, Any]]:
    """The summary table: one row per input file."""
    rows = []
    for run_index, records in enumerate(runs):
        mine = [q for q in questions if q["run"] == run_index]
        graded = [q for q in mine if q["correct"] is not None]
        per_round: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for question in mine:
            for entry in question["agreement"]:
                per_round[entry["round"]].append(entry)
        agreement = [{"round": r, "questions": len(entries),
                      "majority_share": _mean([e["majority"] / e["agents"] for e in entries]),
                      "unanimous": _mean([float(e["unanimous"]) for e in entries])}
                     for r, entries in sorted(per_round.items())]
        cost = cost_summary(records)
        first = mine[0]
        rows.append({
            "file": inputs[run_index], "method": first["method"], "model": first["model"],
            "sources": sorted({q["source"] for q in mine}), "questions": len(mine),
            "failed": sum(1 for q in mine if q["error"]), "graded": len(graded),
            "accuracy": _mean([float(q["correct"]) for q in graded]),
            "agreement": agreement,
            "wrong_to_right": sum(q["switches"]["wrong_to_right"] for q in mine),
            "right_to_wrong": sum(q["switches"]["right_to_wrong"] for q in mine),
            "transitions": sum(q["switches"]["transitions"] for q in mine),
            "changed": sum(1 for q in mine if q["changed"]),
            "disagree": sum(1 for q in mine if q["disagree"]),
            "truncated": sum(1 for q in mine if q["truncated"]),
            "tokens_per_question": cost["prompt_tokens_per_question"] + cost["completion_tokens_per_question"],
            "completion_tokens_per_question": cost["completion_tokens_per_question"],
            "calls_per_question": cost["llm_calls_per_question"],
        })
    return rows


def score_with_prm(questions: Sequence[dict[str, Any]], prm_path: str, batch_size: int = 16,
                   device: str | None = None, progress: bool = True) -> int:
    """Per-step PRM scores on every solution turn (steps from the labels, else `split_steps`); returns the count."""
    import prm
    from data.steps import split_steps

    try:
        model = prm.load(prm_path, device=device)
    except prm.PRMLoadError as error:
        raise EvalError(f"--prm {error}") from None
    items, owners = [], []
    for question in questions:
        asked = prm.question_text(question)
        for turn in question["turns"]:
            if not turn["solution"] or not turn["text"].strip():
                continue
            turn.setdefault("steps", split_steps(turn["text"]))
            if turn["steps"]:
                items.append((asked, turn["steps"]))
                owners.append(turn)
    scores = model.score_many(items, batch_size=batch_size, progress=progress) if items else []
    for turn, step_scores in zip(owners, scores):
        turn["prm"] = finite_or_none([float(s) for s in step_scores])  # NaN (a step cut by max_length) -> null
    return len(owners)


def build_payload(inputs: Sequence[str], labeled: str | None = None, prm_path: str | None = None,
                  dataset_name: str | None = None, prm_batch_size: int = 16, prm_device: str | None = None,
                  num_workers: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Everything the page shows, as plain JSON-able data."""
    runs = read_inference_files(inputs)
    labels = read_labels(labeled) if labeled else {}
    questions = build_questions(runs, labels, dataset_name)
    grade_questions(questions, runs, num_workers=num_workers)
    for question in questions:
        add_dynamics(question)
    if prm_path:
        score_with_prm(questions, prm_path, batch_size=prm_batch_size, device=prm_device, progress=progress)
    labeled_turns = sum(1 for q in questions for t in q["turns"] if t["judge"] and t["judge"].startswith("label"))
    return {
        "meta": {"inputs": [str(p) for p in inputs], "labeled": labeled, "prm": prm_path,
                 "labeled_turns": labeled_turns,
                 "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")},
        "summary": summarize_runs(questions, runs, [str(p) for p in inputs]),
        "questions": questions,
    }


# ---------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------

def embed_json(data: Any) -> str:
    """JSON text safe inside a <script> element: no '<', '>' or '&' at all (so no `</script>` or `<!--`).

    Those characters only occur inside JSON strings, where their \\u escapes mean the same to JSON.parse.
    """
    text = json.dumps(finite_or_none(data), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _csp_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode("ascii") + "'"


def render_html(payload: dict[str, Any], title: str = "AgentArk trajectories") -> str:
    """The whole page: style, data and script inline; the CSP allows exactly this script and style, no network."""
    import html

    style = (ASSETS_DIR / "viewer.css").read_text(encoding="utf-8")
    script = (ASSETS_DIR / "viewer.js").read_text(encoding="utf-8")
    template = (ASSETS_DIR / "viewer.html").read_text(encoding="utf-8")
    csp = (f"default-src 'none'; script-src {_csp_hash(script)}; style-src {_csp_hash(style)}; "
           "img-src data:; base-uri 'none'; form-action 'none'")
    page = (template.replace("{{csp}}", csp).replace("{{title}}", html.escape(title).replace("{", "&#123;"))
            .replace("{{style}}", style).replace("{{script}}", script))
    return page.replace("{{data}}", embed_json(payload))  # last: nothing is substituted inside the data


def write_page(path: str | Path, text: str) -> None:
    from data.atomic import atomic_write_text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, [text])


# ---------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.viewer", description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+",
                        help="inference files, results/<dataset>/<model>/<method>_infer.jsonl (several: one page)")
    parser.add_argument("--labeled", default=None,
                        help="label.py's output for these questions: its verdicts and steps replace rule grading")
    parser.add_argument("--prm", default=None, help="a PRM folder (prm/finetune2.py): colours each step by its score")
    parser.add_argument("--out", default="reports/trajectories.html",
                        help="the HTML file to write (default: reports/trajectories.html)")
    parser.add_argument("--dataset_name", default=None,
                        help="grade every record as this registered dataset (default: each record's 'source')")
    parser.add_argument("--title", default=None, help="page title (default: the first input's method and model)")
    parser.add_argument("--prm_batch_size", type=int, default=16, help="solutions per PRM forward pass")
    parser.add_argument("--prm_device", default=None, help="device for the PRM (default: GPU when there is one)")
    parser.add_argument("--num_workers", type=int, default=None,
                        help="processes for symbolic math checks (default: every core)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar while the PRM scores")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.prm_batch_size < 1:
        raise EvalError(f"--prm_batch_size must be >= 1, got {args.prm_batch_size}")
    if args.num_workers is not None and args.num_workers < 1:
        raise EvalError(f"--num_workers must be >= 1, got {args.num_workers}")
    if args.dataset_name:
        task_type_of({}, args.dataset_name)  # an unknown name fails before reading
    if args.prm and not Path(args.prm).is_dir():  # before grading, which takes a while on a large run
        raise EvalError(f"--prm {args.prm}: no such PRM folder")
    start = time.perf_counter()
    payload = build_payload(args.inputs, labeled=args.labeled, prm_path=args.prm, dataset_name=args.dataset_name,
                            prm_batch_size=args.prm_batch_size, prm_device=args.prm_device,
                            num_workers=args.num_workers, progress=not args.no_progress)
    first = payload["summary"][0]
    title = args.title or f"{first['method']} · {first['model']} — AgentArk trajectories"
    text = render_html(payload, title=title)
    write_page(args.out, text)
    for row in payload["summary"]:
        accuracy = "n/a" if row["accuracy"] is None else f"{row['accuracy']:.3f} ({row['graded']} graded)"
        print(f"{row['method']} · {row['model']}: {row['questions']} questions, accuracy {accuracy}")
    print(f"wrote {args.out} ({len(text) / 1e6:.1f} MB, {len(payload['questions'])} records, "
          f"{time.perf_counter() - start:.1f}s)")
    return 0


if __name__ == "__main__":
    run_cli(main)
