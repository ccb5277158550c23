"""The pipeline as a list of stages, each one or more commands of the project's own CLIs.

Order per dataset: teacher inference on the train split for each method -> label -> PRM -> rsft, da, pad
-> evaluation on the test split (base student, single agent, each teacher method, each student) -> report.
Stages only build commands; pipeline.runner runs, times, records and skips them.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import DEFAULT_MODEL, PipelineConfig, PipelineError, Split, TrainStep

KINDS = ("teacher", "label", "prm", "rsft", "da", "pad", "eval", "report")
PY = sys.executable

# Paths and names the pipeline sets: a config that sets them too would split the run folder.
_OWNED = {
    "inference": {"method_name", "method_config_name", "test_dataset_name", "data_path", "split", "max_samples",
                  "output_path", "result_dir", "model_name", "num_shards", "shard_id", "no_progress"},
    "label": {"input", "dataset_name", "output", "num_shards", "shard_id", "start", "end", "no_progress"},
    "prm": {"model_name_or_path", "train_data_path", "output_dir", "resume_from_checkpoint"},
    "build_data": {"strategy", "input", "out", "prm", "dataset_name"},
    "sft": {"model_name_or_path", "train_data", "output_dir", "resume_from_checkpoint"},
    "grpo": {"pretrain", "reward_pretrain", "prompt_data", "save_path", "dataset_name"},
}


@dataclass
class Stage:
    name: str  # unique, e.g. "teacher/Arith/self_consistency"
    kind: str
    dataset: str | None
    commands: list[list[str]]
    outputs: list[Path]  # what must exist once the stage is done
    settings: dict[str, Any] = field(default_factory=dict)  # what the commands were built from (resolved config)
    needs: list[str] = field(default_factory=list)  # stages whose outputs this one reads
    env: dict[str, str] = field(default_factory=dict)
    resume_args: Callable[[], list[str]] | None = None  # appended to the last command when the stage starts


@dataclass
class EvalRow:
    """One row of the comparison: who answers the test split, with which method, from which file."""

    dataset: str
    row: str
    role: str  # base, single_agent, teacher, student
    method: str
    model: str
    path: Path


def cli_flags(flags: dict[str, Any], hf_style: bool, owner: str, where: str) -> list[str]:
    """`{key: value}` as command-line flags. argparse CLIs take a bare `--flag` for true and nothing for false;
    HfArgumentParser CLIs (prm, sft, grpo) take `--flag True/False`."""
    out: list[str] = []
    for key, value in flags.items():
        if key in _OWNED[owner]:
            raise PipelineError(f"{where}.{key}: set by the pipeline (the run folder decides it); remove it")
        flag = f"--{key}"
        if isinstance(value, bool):
            if hf_style:
                out += [flag, str(value)]
            elif value:
                out.append(flag)
        elif value is None:
            continue
        elif isinstance(value, list):
            out += [flag, *map(str, value)]
        else:
            out += [flag, str(value)]
    return out


def resolve_model(model: str) -> str:
    if model != DEFAULT_MODEL:
        return model
    from engine.default_model import ensure_default_model

    return str(ensure_default_model())


def _split_flags(split: Split) -> list[str]:
    out = ["--split", str(split.split)] if split.split else []
    if split.max_samples:
        out += ["--max_samples", str(split.max_samples)]
    if split.data_path:
        out += ["--data_path", str(split.data_path)]
    return out


def _launch(step: TrainStep, module: str) -> list[str]:
    return [*(step.launcher or [PY]), "-m", module]


def _complete_checkpoint(folder: Path) -> bool:
    return any((c / "trainer_state.json").is_file() for c in folder.glob("checkpoint-*"))


class StageBuilder:
    def __init__(self, config: PipelineConfig, run_dir: Path, root: Path):
        self.config = config
        self.run_dir = run_dir
        self.root = root
        self.teacher_model = resolve_model(config.teacher.model)
        self.student_model = resolve_model(config.student.model)
        self.prm_model = resolve_model(config.prm_model) if config.prm_model else self.teacher_model
        where = str(config.path)
        self.teacher_engine = cli_flags(config.teacher.engine, False, "inference", f"{where}: teacher.engine")
        self.student_engine = cli_flags(config.student.engine, False, "inference", f"{where}: student.engine")

    # -- paths ---------------------------------------------------------------------------------------------
    def teacher_file(self, dataset: str, method: str) -> Path:
        return self.run_dir / "teacher" / dataset / f"{method}_infer.jsonl"

    def labels_file(self, dataset: str) -> Path:
        return self.run_dir / "labels" / dataset / "labeled.jsonl"

    def prm_dir(self, dataset: str) -> Path:
        return self.run_dir / "prm" / dataset

    def student_dir(self, dataset: str, strategy: str) -> Path:
        return self.run_dir / "students" / dataset / strategy

    def eval_file(self, dataset: str, row: str, method: str) -> Path:
        return self.run_dir / "eval" / dataset / row / f"{method}_infer.jsonl"

    # -- stages --------------------------------------------------------------------------------------------
    def _inference(self, method: str, config_name: str, dataset: str, split: Split, model: str, engine: list[str],
                   output: Path) -> list[str]:
        return [PY, str(self.root / "inference.py"), "--method_name", method, "--method_config_name", config_name,
                "--test_dataset_name", dataset, *_split_flags(split), "--model_name", model,
                "--output_path", str(output), "--no_progress", *engine]

    def teacher_stages(self, ds) -> list[Stage]:
        stages = []
        for method, config_name in self.config.methods.items():
            out = self.teacher_file(ds.name, method)
            cmd = self._inference(method, config_name, ds.name, ds.train, self.teacher_model, self.teacher_engine, out)
            stages.append(Stage(f"teacher/{ds.name}/{method}", "teacher", ds.name, [cmd], [out],
                                {"model": self.teacher_model, "method": method, "config": config_name,
                                 "split": vars(ds.train), "engine": self.config.teacher.engine}))
        return stages

    def label_stage(self, ds) -> Stage:
        inputs = [str(self.teacher_file(ds.name, m)) for m in self.config.methods]
        out = self.labels_file(ds.name)
        flags = cli_flags(self.config.judge, False, "label", f"{self.config.path}: judge")
        cmd = [PY, str(self.root / "label.py"), "--input", *inputs, "--dataset_name", ds.name, "--output", str(out),
               "--no_progress", *flags]
        return Stage(f"label/{ds.name}", "label", ds.name, [cmd], [out], {"judge": self.config.judge},
                     needs=[f"teacher/{ds.name}/{m}" for m in self.config.methods])

    def prm_stage(self, ds) -> Stage:
        step = self.config.prm
        out = self.prm_dir(ds.name)
        cmd = [*_launch(step, "prm.finetune2"), "--model_name_or_path", self.prm_model,
               "--train_data_path", str(self.labels_file(ds.name)), "--output_dir", str(out),
               *cli_flags(step.flags, True, "prm", f"{self.config.path}: prm.flags")]

        def resume() -> list[str]:  # decided when the stage starts: a killed run continues from its checkpoint
            return ["--resume_from_checkpoint", "last"] if _complete_checkpoint(out) else []

        return Stage(f"prm/{ds.name}", "prm", ds.name, [cmd], [out / "prm_config.json"],
                     {"model": self.prm_model, "flags": step.flags, "launcher": step.launcher},
                     needs=[f"label/{ds.name}"], resume_args=resume)

    def sft_stage(self, ds, strategy: str) -> Stage:
        step = self.config.strategies[strategy]
        where = f"{self.config.path}: strategies.{strategy}"
        data = self.run_dir / "sft_data" / ds.name / f"{strategy}.jsonl"
        out = self.student_dir(ds.name, strategy)
        build = [PY, "-m", "distill.build_data", "--strategy", strategy, "--input", str(self.labels_file(ds.name)),
                 "--out", str(data), "--dataset_name", ds.name,
                 *cli_flags(step.data, False, "build_data", where + ".data")]
        needs = [f"label/{ds.name}"]
        if step.use_prm:
            build += ["--prm", str(self.prm_dir(ds.name))]
            needs.append(f"prm/{ds.name}")
        train = [*_launch(step, "distill.sft"), "--model_name_or_path", self.student_model, "--train_data", str(data),
                 "--output_dir", str(out), "--resume_from_checkpoint",
                 *cli_flags(step.flags, True, "sft", where + ".flags")]
        return Stage(f"{strategy}/{ds.name}", strategy, ds.name, [build, train], [data, out / "config.json"],
                     {"student": self.student_model, "data": step.data, "flags": step.flags, "use_prm": step.use_prm,
                      "launcher": step.launcher}, needs=needs)

    def pad_stage(self, ds) -> Stage:
        step = self.config.strategies["pad"]
        out = self.student_dir(ds.name, "pad")
        uses_prm = str(step.flags.get("reward_mode", "PRMVR")) != "VR"
        cmd = [*_launch(step, "distill.grpo"), "--pretrain", self.student_model,
               "--prompt_data", str(self.labels_file(ds.name)), "--save_path", str(out), "--dataset_name", ds.name]
        needs = [f"label/{ds.name}"]
        if uses_prm:
            cmd += ["--reward_pretrain", str(self.prm_dir(ds.name))]
            needs.append(f"prm/{ds.name}")
        cmd += cli_flags(step.flags, True, "grpo", f"{self.config.path}: strategies.pad.flags")
        return Stage(f"pad/{ds.name}", "pad", ds.name, [cmd], [out / "config.json"],
                     {"student": self.student_model, "flags": step.flags, "launcher": step.launcher}, needs=needs)

    def eval_rows(self, ds) -> list[EvalRow]:
        rows = [EvalRow(ds.name, "base", "base", "cot", self.student_model, self.eval_file(ds.name, "base", "cot"))]
        if self.teacher_model != self.student_model:
            rows.append(EvalRow(ds.name, "single_agent", "single_agent", "cot", self.teacher_model,
                                self.eval_file(ds.name, "single_agent", "cot")))
        for method in self.config.methods:
            if method == "cot" and self.teacher_model == self.student_model:
                continue  # the base student's row is that run
            rows.append(EvalRow(ds.name, f"teacher-{method}", "teacher", method, self.teacher_model,
                                self.eval_file(ds.name, f"teacher-{method}", method)))
        for strategy in self.config.strategies:
            model = str(self.student_dir(ds.name, strategy))
            rows.append(EvalRow(ds.name, f"student-{strategy}", "student", "cot", model,
                                self.eval_file(ds.name, f"student-{strategy}", "cot")))
        return rows

    def eval_stages(self, ds) -> list[Stage]:
        stages = []
        for row in self.eval_rows(ds):
            engine = self.teacher_engine if row.role in ("teacher", "single_agent") else self.student_engine
            config_name = self.config.methods.get(row.method, "config_main") if row.role == "teacher" else "config_main"
            cmd = self._inference(row.method, config_name, ds.name, ds.test, row.model, engine, row.path)
            needs = [f"{row.row.removeprefix('student-')}/{ds.name}"] if row.role == "student" else []
            stages.append(Stage(f"eval/{ds.name}/{row.row}", "eval", ds.name, [cmd], [row.path],
                                {"model": row.model, "method": row.method, "config": config_name,
                                 "split": vars(ds.test), "engine": self.config.teacher.engine
                                 if row.role in ("teacher", "single_agent") else self.config.student.engine},
                                needs=needs))
        return stages

    def build(self) -> list[Stage]:
        stages: list[Stage] = []
        for ds in self.config.datasets:
            needs_labels = bool(self.config.strategies) or self.config.prm is not None
            if needs_labels:
                stages += self.teacher_stages(ds)
                stages.append(self.label_stage(ds))
            if self.config.prm is not None:
                stages.append(self.prm_stage(ds))
            for strategy in ("rsft", "da"):
                if strategy in self.config.strategies:
                    stages.append(self.sft_stage(ds, strategy))
            if "pad" in self.config.strategies:
                stages.append(self.pad_stage(ds))
            stages += self.eval_stages(ds)
        report_dir = self.run_dir / "report"
        stages.append(Stage("report", "report", None, [], [report_dir / "report.md"], {},
                            needs=[s.name for s in stages if s.kind == "eval"]))
        for stage in stages:
            stage.env = dict(self.config.env)
        return stages

