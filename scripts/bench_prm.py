"""Benchmark the PRM on the default model (SmolLM2-135M-Instruct), on CPU.

    python scripts/bench_prm.py                      # both parts, each in its own process
    python scripts/bench_prm.py --part scoring       # score_many vs one-at-a-time, solutions/s
    python scripts/bench_prm.py --part training      # --fix_llm training at batch 64: s/step, peak RSS

Scoring uses an untrained head (throughput does not depend on the weights). Training runs the same
pieces as prm/finetune2.py (PRMTrainer, NaN monitor, bf16 autocast, gradient checkpointing flag) on
synthetic labeled records. Peak memory is the process's peak RSS (model load included).
"""
from __future__ import annotations

import argparse
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def synthetic_questions(num_questions: int, num_solutions: int, seed: int = 0):
    """Arith-like questions; solutions of 3-5 steps of ordinary length (~25 tokens each)."""
    from prm.examples import Question, Solution

    rng = random.Random(seed)
    questions = []
    for q in range(num_questions):
        a, b, c = (rng.randint(10, 99) for _ in range(3))
        query = f"Tom has {a} apples. He buys {b} more and gives {c} to his sister. How many apples does he have now?"
        question = Question(id=f"q{q}", source="Arith")
        for s in range(num_solutions):
            total = a + b - c + (0 if s % 2 == 0 else rng.randint(1, 5))
            steps = [f"Tom starts with {a} apples, and we need to track every change to that number.",
                     f"He buys {b} more apples, so he now has {a} + {b} = {a + b} apples in total."]
            steps += [f"Then he gives {c} apples to his sister, leaving {a + b} - {c} = {total} apples."]
            steps += [f"Let me double check: {a} plus {b} is {a + b}, minus {c} is {total}."] * rng.randint(0, 2)
            steps += [f"The answer is \\boxed{{{total}}}."]
            question.solutions.append(Solution(question_id=question.id, solution_id=str(s + 1), question=query,
                                               text="\n\n".join(steps), steps=steps, is_correct=s % 2 == 0))
        questions.append(question)
    return questions


def bench_scoring(model_path: str, num_solutions: int, batch_size: int, num_single: int) -> None:
    import torch

    import prm
    from prm.loading import build_prm

    with tempfile.TemporaryDirectory() as folder:
        build_prm(model_path, fix_llm=True).save_pretrained(folder)
        model = prm.load(folder, device="cpu")
        dtype = next(model.backbone.parameters()).dtype
        items = [(s.question, s.steps) for q in synthetic_questions(num_solutions // 4, 4) for s in q.solutions]
        tokens = sum(len(model.template.encode(query, steps).input_ids) for query, steps in items) / len(items)
        model.score_many(items[:batch_size], batch_size=batch_size)  # warm-up (allocations, kernels)
        start = time.perf_counter()
        for query, steps in items[:num_single]:
            model.score(query, steps)
        single = num_single / (time.perf_counter() - start)
        start = time.perf_counter()
        batched_scores = model.score_many(items, batch_size=batch_size)
        batched = len(items) / (time.perf_counter() - start)
        assert len(batched_scores) == len(items)
        print(f"scoring on CPU ({torch.get_num_threads()} threads, {dtype}, ~{tokens:.0f} tokens per solution):")
        print(f"  one at a time (score):          {single:7.2f} solutions/s  ({num_single} solutions)")
        print(f"  batched (score_many, batch {batch_size}): {batched:7.2f} solutions/s  ({len(items)} solutions)")
        print(f"  speed-up: {batched / single:.1f}x")


def bench_training(model_path: str, batch_size: int, num_steps: int) -> None:
    import torch
    from transformers import TrainerCallback, TrainingArguments

    from prm.callbacks import NanMonitor, StepProbe
    from prm.examples import PRMCollator, encode_questions
    from prm.loading import build_prm
    from prm.trainer import PRMTrainer

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []
            self.start = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter() - self.start)

    model = build_prm(model_path, fix_llm=True, max_length=2048, backbone_dtype=torch.bfloat16)
    questions = synthetic_questions(batch_size * num_steps // 4 + 1, 4)
    dataset = encode_questions(questions, model.template, "outcome", 2048)
    lengths = [len(e["input_ids"]) for e in dataset.examples]
    timer = StepTimer()
    probe = StepProbe()
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, max_steps=num_steps, per_device_train_batch_size=batch_size,
                                 learning_rate=1e-4, weight_decay=0.1, adam_beta2=0.95, bf16=True,
                                 use_cpu=not torch.cuda.is_available(), gradient_checkpointing=True,
                                 save_strategy="no", report_to="none", logging_steps=1, disable_tqdm=True,
                                 remove_unused_columns=False, dataloader_pin_memory=False)
        trainer = PRMTrainer(model=model, args=args, train_dataset=dataset, data_collator=PRMCollator(
            model.tokenizer.pad_token_id), callbacks=[NanMonitor(probe), timer], probe=probe)
        trainer.train()
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    steady = timer.times[1:] or timer.times
    print(f"training, --fix_llm, batch {batch_size}, bf16 autocast on CPU ({torch.get_num_threads()} threads), "
          f"~{statistics.mean(lengths):.0f} tokens per solution:")
    print(f"  seconds per step: {statistics.mean(steady):.2f} (mean of steps 2-{len(timer.times)}; "
          f"first step {timer.times[0]:.2f})")
    print(f"  peak RSS: {peak_mib:.0f} MiB (whole process, model load included)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("all", "scoring", "training"), default="all", help="what to measure")
    parser.add_argument("--model", default=None, help="base model (default: the embedded default model)")
    parser.add_argument("--num_solutions", type=int, default=128, help="solutions scored by score_many")
    parser.add_argument("--num_single", type=int, default=24, help="solutions scored one at a time")
    parser.add_argument("--score_batch_size", type=int, default=32, help="score_many batch size")
    parser.add_argument("--train_batch_size", type=int, default=64, help="training batch size (the seed's 64)")
    parser.add_argument("--train_steps", type=int, default=4, help="training steps to time")
    args = parser.parse_args()
    if args.part == "all":
        # One process per part, so each peak RSS is its own.
        passed = [a for i, a in enumerate(sys.argv[1:]) if a != "--part" and sys.argv[i] != "--part"
                  and not a.startswith("--part=")]
        for part in ("scoring", "training"):
            command = [sys.executable, __file__, *passed, "--part", part]
            if subprocess.run(command).returncode != 0:
                return 1
        return 0
    model_path = args.model
    if model_path is None:
        from engine.default_model import ensure_default_model

        model_path = str(ensure_default_model())
    if args.part == "scoring":
        bench_scoring(model_path, args.num_solutions, args.score_batch_size, args.num_single)
    else:
        bench_training(model_path, args.train_batch_size, args.train_steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
