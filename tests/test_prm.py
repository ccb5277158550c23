"""The process reward model: data and labels, training on the tiny model, scoring, NaN monitor, evaluation."""
from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

MARKER = "#"  # a step carrying it is wrong: what the synthetic PRM has to learn


def synthetic_record(qid: str, rng: random.Random, num_solutions: int = 4, correct: list[bool] | None = None) -> dict:
    """One Arith-like question; its incorrect solutions carry MARKER in every step."""
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    verdicts = correct if correct is not None else [i % 2 == 0 for i in range(num_solutions)]
    solutions = []
    for number, ok in enumerate(verdicts, start=1):
        answer = a + b if ok else a + b + rng.randint(1, 3)
        steps = [f"We add {a} and {b}.", f"{a} + {b} = {answer}.", f"The answer is {answer}."]
        if not ok:
            steps = [f"{step} {MARKER}" for step in steps]
        solutions.append({"id": number, "text": "\n\n".join(steps), "steps": steps, "is_correct": ok,
                          "answer": str(answer), "agent": number - 1, "role": "solver", "round": 0,
                          "method": "self_consistency"})
    return {"id": qid, "query": f"What is {a} + {b}?", "gt": str(a + b), "source": "Arith",
            "solutions": solutions, "labels": [s["is_correct"] for s in solutions]}


def write_synthetic(path: Path, num_questions: int, seed: int) -> Path:
    rng = random.Random(seed)
    lines = [json.dumps(synthetic_record(f"s{seed}-{i}", rng)) for i in range(num_questions)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_records(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def train_args(model: str, data: Path, out: Path, *extra: str) -> list[str]:
    return ["--model_name_or_path", model, "--train_data_path", str(data), "--output_dir", str(out),
            "--report_to", "none", "--save_strategy", "no", "--logging_steps", "50",
            "--disable_tqdm", "True", *extra]


# ---- training on the tiny model ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tiny_model_path, tmp_path_factory):
    """A PRM fully fine-tuned on the learnable synthetic set, and its held-out file."""
    from prm.finetune2 import main

    folder = tmp_path_factory.mktemp("prm_trained")
    train = write_synthetic(folder / "train.jsonl", 24, seed=0)
    test = write_synthetic(folder / "test.jsonl", 8, seed=1)
    out = folder / "prm"
    rc = main(train_args(tiny_model_path, train, out, "--eval_data_path", str(test), "--max_steps", "10",
                         "--per_device_train_batch_size", "8", "--learning_rate", "5e-3", "--seed", "0"))
    assert rc == 0
    return out, test


@pytest.mark.slow  # ~30 s on 2 busy cores: full fine-tuning of the tiny model, 10 steps
def test_learnable_marker_gives_high_heldout_step_auroc(trained):
    import prm
    from prm.examples import read_labeled
    from prm.metrics import auroc

    out, test = trained
    model = prm.load(out, device="cpu", dtype=torch.float32)
    scores, labels = [], []
    for question in read_labeled(test):
        for solution in question.solutions:
            step_scores = model.score(solution.question, solution.steps)
            assert len(step_scores) == len(solution.steps)
            scores += step_scores
            labels += [int(solution.is_correct)] * len(step_scores)
    assert auroc(scores, labels) > 0.9
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 10


def test_score_and_score_many_agree_in_order(trained):
    import prm

    out, _ = trained
    model = prm.load(out, device="cpu", dtype=torch.float32)
    items = [("What is 1 + 2?", ["We add 1 and 2.", "1 + 2 = 3.", "The answer is 3."]),
             ("What is 4 + 4?", [f"4 + 4 = 9. {MARKER}"]),
             ("What is 1 + 2?", ["A much longer first step that says a lot about adding one and two.", "3"]),
             ("What is 5 + 1?", [])]
    batched = model.score_many(items, batch_size=3)
    one_by_one = [model.score(query, steps) for query, steps in items]
    assert [len(s) for s in batched] == [3, 1, 2, 0]
    for got, want in zip(batched, one_by_one):
        assert got == pytest.approx(want, abs=1e-5)
    assert batched[0][0] > 0.5 > batched[1][0]


def test_saved_folder_loads_in_default_dtype(trained):
    import prm
    from prm.loading import default_dtype

    out, _ = trained
    model = prm.load(out, device="cpu")
    assert next(model.backbone.parameters()).dtype == default_dtype("cpu")
    assert model.head.weight.dtype == torch.float32  # the head stays fp32 over a bf16 backbone
    assert all(0.0 <= p <= 1.0 for p in model.score("What is 2 + 2?", ["2 + 2 = 4."]))


def test_lora_trains_saves_merged_and_checkpoint_adapter_loads(tiny_model_path, tmp_path):
    import prm
    from prm.finetune2 import main
    from prm.model import PRMConfig

    data = write_synthetic(tmp_path / "train.jsonl", 4, seed=2)
    out = tmp_path / "lora"
    rc = main(train_args(tiny_model_path, data, out, "--use_lora", "True", "--max_steps", "2",
                         "--per_device_train_batch_size", "4", "--save_strategy", "steps", "--save_steps", "2"))
    assert rc == 0
    assert PRMConfig.read(out).backbone == "full"  # merged: loading needs no peft
    assert PRMConfig.read(out / "checkpoint-2").backbone == "lora"
    final = prm.load(out, device="cpu", dtype=torch.float32).score("What is 1 + 1?", ["1 + 1 = 2."])
    from_adapter = prm.load(out / "checkpoint-2", device="cpu", dtype=torch.float32).score(
        "What is 1 + 1?", ["1 + 1 = 2."])
    assert final == pytest.approx(from_adapter, abs=1e-4)


@pytest.mark.parametrize("kind", ["full", "lora"])
def test_checkpoint_state_round_trips_into_a_fresh_model(tiny_model_path, tmp_path, kind):
    """What resume relies on: a checkpoint's trained weights load back into a freshly built PRM."""
    from prm.loading import build_prm

    trained = build_prm(tiny_model_path, use_lora=kind == "lora", seed=1)
    with torch.no_grad():
        for param in trained.parameters():
            if param.requires_grad:
                param.add_(0.01 * torch.randn_like(param))
    trained.save_pretrained(tmp_path, merge_lora=False)
    fresh = build_prm(tiny_model_path, use_lora=kind == "lora", seed=2)
    fresh.load_trainable_state(tmp_path)
    want, got = trained.state_dict(), fresh.state_dict()
    assert want.keys() == got.keys()
    assert all(torch.equal(want[name], got[name]) for name in want)


# ---- arguments --------------------------------------------------------------------------------------

def test_warmup_ratio_maps_to_fractional_warmup_steps(tmp_path):
    from prm.finetune2 import UsageError, parse_args

    _, training = parse_args(["--output_dir", str(tmp_path), "--warmup_ratio", "0.1", "--report_to", "none"])
    assert training.warmup_steps == pytest.approx(0.1)
    assert training.get_warmup_steps(200) == 20
    _, training = parse_args(["--output_dir", str(tmp_path), "--warmup_ratio", "0.0", "--report_to", "none"])
    assert training.get_warmup_steps(200) == 0
    with pytest.raises(UsageError, match="not both"):
        parse_args(["--output_dir", str(tmp_path), "--warmup_ratio", "0.1", "--warmup_steps", "5"])
    with pytest.raises(UsageError, match=r"\[0, 1\)"):
        parse_args(["--output_dir", str(tmp_path), "--warmup_ratio", "1.5"])


def test_bf16_without_gpu_trains_on_cpu_and_unused_columns_are_kept(tmp_path):
    from prm.finetune2 import parse_args

    prm_args, training = parse_args(["--output_dir", str(tmp_path), "--bf16", "True", "--fix_llm", "True",
                                     "--report_to", "none"])
    assert training.bf16 and prm_args.fix_llm and prm_args.require_mixed and prm_args.enable_nan_monitoring
    if not torch.cuda.is_available():
        assert training.use_cpu
    assert training.remove_unused_columns is False


@pytest.mark.parametrize("flags,message", [
    (["--report_to", "wandb"], "wandb package"),
    (["--deepspeed", "configs/missing.json"], "no such file"),
])
def test_optional_integrations_fail_in_one_line_when_missing(tmp_path, flags, message):
    import importlib.util

    from prm.finetune2 import UsageError, parse_args

    if flags[0] == "--report_to" and importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    with pytest.raises(UsageError, match=message):
        parse_args(["--output_dir", str(tmp_path), *flags])


# ---- labels -----------------------------------------------------------------------------------------

def _solution(steps, ok=True, text=None):
    from prm.examples import Solution

    return Solution(question_id="q", solution_id="1", question="Q?", text=text or "\n\n".join(steps),
                    steps=steps, is_correct=ok)


def test_label_modes():
    from prm.examples import steps_and_labels

    three = _solution(["a", "b", "c"], ok=False)
    assert steps_and_labels(three, "outcome") == (["a", "b", "c"], [0, 0, 0])
    assert steps_and_labels(three, "last") == (["a", "b", "c"], [None, None, 0])
    assert steps_and_labels(_solution(["a", "b"], ok=True, text="a\n\nb"), "solution") == (["a\n\nb"], [1])
    with pytest.raises(ValueError, match="label mode"):
        steps_and_labels(three, "steps")


@pytest.mark.parametrize("mode,expected", [("outcome", 3), ("last", 1), ("solution", 1)])
def test_labels_sit_only_on_separator_tokens(tiny_model_path, mode, expected):
    from prm.examples import Question, encode_questions
    from prm.loading import load_tokenizer
    from prm.model import IGNORE_INDEX
    from prm.template import Template

    template = Template(load_tokenizer(tiny_model_path))
    question = Question(id="q", source=None, solutions=[_solution(["x = 1 + 2", "x = 3", "answer 3"], ok=True)])
    dataset = encode_questions([question], template, mode, max_length=None)
    example = dataset[0]
    labelled = [i for i, label in enumerate(example["labels"]) if label != IGNORE_INDEX]
    assert len(labelled) == expected
    sep = template.separator_ids
    for position in labelled:
        assert example["input_ids"][position - len(sep) + 1:position + 1] == sep
    assert example["example_id"] == "q/1"


def test_truncation_cuts_the_question_from_the_left_and_counts_what_does_not_fit(tiny_model_path):
    from prm.examples import Question, encode_questions
    from prm.loading import load_tokenizer
    from prm.template import Template

    template = Template(load_tokenizer(tiny_model_path))
    long_question = "context " * 200 + "What is 1 + 2?"
    short = _solution(["1 + 2 = 3", "answer 3"])
    short.question = long_question
    encoded = template.encode(long_question, short.steps, max_length=40)
    assert len(encoded.input_ids) == 40 and encoded.prompt_tokens_cut > 0 and encoded.steps_cut == 0
    assert len(encoded.step_positions) == 2
    too_long = _solution(["word " * 100, "answer 3"])
    dataset = encode_questions([Question(id="q", source=None, solutions=[short, too_long])], template, "outcome", 40)
    assert len(dataset) == 1
    assert dataset.summary.did_not_fit == 1 and dataset.summary.prompt_truncated == 1


def test_require_mixed_keeps_mixed_questions_and_counts_the_rest(tmp_path, tiny_model_path, capsys):
    from prm.examples import read_labeled, select_questions
    from prm.finetune2 import main

    rng = random.Random(0)
    unread = synthetic_record("unread", rng, correct=[True, False])
    for solution in unread["solutions"]:
        solution["is_correct"] = None
    half_unread = synthetic_record("half", rng, correct=[True, False, True])
    half_unread["solutions"][1]["is_correct"] = None  # mixed no more once the null is skipped
    records = [synthetic_record("mixed", rng), synthetic_record("right", rng, correct=[True, True]),
               synthetic_record("wrong", rng, correct=[False]), unread, half_unread]
    path = write_records(tmp_path / "labeled.jsonl", records)
    selection = select_questions(read_labeled(path), require_mixed=True)
    assert [q.id for q in selection.questions] == ["mixed"]
    assert (selection.dropped_not_mixed, selection.dropped_no_judged, selection.solutions_unjudged) == (3, 1, 3)
    assert len(select_questions(read_labeled(path), require_mixed=False).questions) == 4

    nothing_mixed = write_records(tmp_path / "none.jsonl", records[1:3])
    rc = main(train_args(tiny_model_path, nothing_mixed, tmp_path / "out"))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "no question has both correct and incorrect solutions" in err[0]


# ---- bad input --------------------------------------------------------------------------------------

@pytest.mark.parametrize("record,message", [
    ({"id": "1", "query": "q", "gt": "1", "method": "cot", "trajectory": []}, "'solutions'"),
    ({"id": "1", "gt": "1", "solutions": []}, "'query'"),
    ({"id": "1", "query": "q", "solutions": [{"id": 1, "text": "t"}]}, "'is_correct'"),
    ({"id": "1", "query": "q", "solutions": [{"id": 1, "text": "t", "is_correct": "yes"}]}, "is_correct"),
    ({"id": "1", "query": "q", "solutions": [{"id": 1, "is_correct": True}]}, "'text'"),
    ({"id": "1", "query": "q", "solutions": [{"id": 1, "steps": [1, 2], "is_correct": True}]}, "steps"),
    ("not json", "malformed JSON"),
])
def test_bad_input_is_one_line_naming_file_line_and_field(tmp_path, tiny_model_path, capsys, record, message):
    from prm.evaluate import main as evaluate_main
    from prm.finetune2 import main

    good = json.dumps(synthetic_record("ok", random.Random(0)))
    bad = record if isinstance(record, str) else json.dumps(record)
    path = tmp_path / "bad.jsonl"
    path.write_text(f"{good}\n{bad}\n", encoding="utf-8")
    assert main(train_args(tiny_model_path, path, tmp_path / "out")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{path}:2" in err[0] and message in err[0]
    assert not (tmp_path / "out").exists()  # nothing written: it failed before training
    assert evaluate_main(["--prm", str(tmp_path), "--data", str(path)]) == 2
    assert f"{path}:2" in capsys.readouterr().err


def test_not_a_prm_folder_is_a_clear_error(tmp_path, capsys):
    from prm.evaluate import main as evaluate_main

    data = write_synthetic(tmp_path / "d.jsonl", 1, seed=0)
    assert evaluate_main(["--prm", str(tmp_path), "--data", str(data)]) == 2
    assert "prm_config.json" in capsys.readouterr().err


# ---- NaN monitor ------------------------------------------------------------------------------------

def _nan_trainer_class(bad_steps):
    """A PRMTrainer whose loss is NaN on the given optimizer steps (1-based), as if a batch diverged."""
    from prm.trainer import PRMTrainer

    class NanTrainer(PRMTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            if model.training and self.state.global_step + 1 in bad_steps:
                self.probe.losses[-1] = math.nan
                return loss * math.nan
            return loss

    return NanTrainer


def test_nan_step_is_skipped_and_its_batch_saved(tiny_model_path, tmp_path, monkeypatch):
    from transformers import TrainerCallback

    import prm.finetune2 as finetune2

    heads = {}

    class HeadWatch(TrainerCallback):
        def on_step_begin(self, args, state, control, model=None, **kwargs):
            heads[("begin", state.global_step + 1)] = model.head.weight.detach().clone()

        def on_step_end(self, args, state, control, model=None, **kwargs):
            heads[("end", state.global_step)] = model.head.weight.detach().clone()

    base = _nan_trainer_class({2})

    class Watched(base):
        def __init__(self, *args, **kwargs):
            kwargs["callbacks"] = [*kwargs.get("callbacks", []), HeadWatch()]
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(finetune2, "PRMTrainer", Watched)
    data = write_synthetic(tmp_path / "train.jsonl", 4, seed=3)
    out = tmp_path / "out"
    rc = finetune2.main(train_args(tiny_model_path, data, out, "--max_steps", "4", "--per_device_train_batch_size",
                                   "4", "--learning_rate", "1e-2"))
    assert rc == 0
    debug = json.loads((out / "nan_debug" / "step-2.json").read_text())
    assert len(debug["example_ids"]) == 4 and all("/" in i for i in debug["example_ids"])
    assert sorted(p.name for p in (out / "nan_debug").iterdir()) == ["step-2.json"]
    assert torch.equal(heads[("begin", 2)], heads[("end", 2)])  # the bad step changed nothing
    assert not torch.equal(heads[("begin", 3)], heads[("end", 3)])  # the next one trained again
    assert all(torch.isfinite(weight).all() for weight in heads.values())


def test_nan_monitor_stops_after_k_bad_steps_in_a_row(tiny_model_path, tmp_path, monkeypatch, capsys):
    import prm.finetune2 as finetune2

    monkeypatch.setattr(finetune2, "PRMTrainer", _nan_trainer_class(set(range(1, 100))))
    data = write_synthetic(tmp_path / "train.jsonl", 4, seed=3)
    out = tmp_path / "out"
    rc = finetune2.main(train_args(tiny_model_path, data, out, "--max_steps", "20", "--per_device_train_batch_size",
                                   "2", "--nan_patience", "3"))
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert rc == 1 and len(errors) == 1 and "3 steps in a row" in errors[0]
    assert sorted(p.name for p in (out / "nan_debug").iterdir()) == ["step-1.json", "step-2.json", "step-3.json"]


# ---- metrics and prm.evaluate -------------------------------------------------------------------------

def test_auroc_by_ranks_matches_pair_counting():
    from prm.metrics import auroc

    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=60).astype(float)  # many ties
    labels = rng.integers(0, 2, size=60)
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairs = [(p > n) + 0.5 * (p == n) for p in pos for n in neg]
    assert auroc(scores, labels) == pytest.approx(np.mean(pairs))
    assert auroc([0.1, 0.9], [0, 1]) == 1.0
    assert math.isnan(auroc([0.3, 0.4], [1, 1]))
    assert auroc([0.1, math.nan, 0.9], [0, 0, 1]) == 1.0


class _StubPRM:
    """Scores a step 0.9, or 0.2 when it carries MARKER; a step containing 'mid' scores 0.6."""

    class prm_config:  # noqa: N801 - mimics the attribute of a PRM
        label_mode = "outcome"

    def score_many(self, items, batch_size=16, progress=False):
        return [[0.2 if MARKER in s else 0.6 if "mid" in s else 0.9 for s in steps] for _, steps in items]


def test_evaluate_gives_known_numbers_on_a_hand_made_file(tmp_path, monkeypatch, capsys):
    import prm.evaluate as evaluate

    def solution(number, steps, ok, answer):
        return {"id": number, "text": "\n\n".join(steps), "steps": steps, "is_correct": ok, "answer": answer}

    records = [
        # q1: vote picks the wrong "5" (two votes); the PRM picks the right one.
        {"id": "q1", "query": "1+3?", "source": "Arith", "solutions": [
            solution(1, [f"a {MARKER}"], False, "5"), solution(2, [f"b {MARKER}"], False, "5"),
            solution(3, ["c", "d"], True, "4")]},
        # q2: all right; one unjudged solution is skipped.
        {"id": "q2", "query": "2+2?", "source": "Arith", "solutions": [
            solution(1, ["e"], True, "4"), solution(2, ["f"], None, "4")]},
        # q3: the PRM prefers a wrong solution (no marker, but a 'mid' step would lose on min, not mean).
        {"id": "q3", "query": "3+3?", "source": "Arith", "solutions": [
            solution(1, ["g", "mid"], True, "6"), solution(2, ["h"], False, "7"), solution(3, ["mid"], True, "6.0")]},
    ]
    data = write_records(tmp_path / "labeled.jsonl", records)
    monkeypatch.setattr(evaluate, "load", lambda *args, **kwargs: _StubPRM())
    out = tmp_path / "report.json"
    assert evaluate.main(["--prm", "stub", "--data", str(data), "--output", str(out), "--no_progress"]) == 0
    report = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert "best-of-N" in printed and "majority_vote" in printed and "1 solutions with is_correct null" in printed
    assert (report["questions"], report["solutions"], report["mixed_questions"]) == (3, 7, 2)
    # steps: correct c d e g mid mid (0.9 0.9 0.9 0.9 0.6 0.6), wrong a b h (0.2 0.2 0.9)
    # AUROC = P(correct > wrong) + ties/2 = (4*(2+0.5) + 2*2) / 18
    assert report["step"]["auroc"] == pytest.approx((4 * 2.5 + 2 * 2) / 18)
    best = report["best_of_n"]
    assert best["prm_min"]["mean"] == pytest.approx(2 / 3)  # q1 right, q2 right, q3 picks h (0.9 > 0.6)
    assert best["prm_mean"]["mean"] == pytest.approx(2 / 3)
    assert best["majority_vote"]["mean"] == pytest.approx(2 / 3)  # q1 wrong ("5" twice), q3 "6" = "6.0"
    assert best["random"]["mean"] == pytest.approx((1 / 3 + 1 + 2 / 3) / 3)
    assert best["oracle"]["mean"] == 1.0
    assert best["prm_min_minus_vote"]["mean"] == pytest.approx(0.0)
    assert report["best_of_n_mixed"]["oracle"]["n"] == 2
    assert report["unjudged_solutions_skipped"] == 1
