"""The pipeline's YAML: what teacher, which methods, datasets and splits, judge, PRM, student and strategies.

Every section but `datasets` and `student` may be left out. Flag maps (`engine`, `flags`, `data`, `train`)
are passed to the stage's own CLI as `--key value`, so every flag of inference.py, label.py, prm.finetune2,
distill.build_data, distill.sft and distill.grpo is reachable; the pipeline sets the paths itself.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STRATEGIES = ("rsft", "da", "pad")
DEFAULT_MODEL = "default"  # the embedded SmolLM2-135M-Instruct (engine.default_model)


class PipelineError(ValueError):
    """A bad config or flag: reported in one line naming the file and the field."""


@dataclass
class Split:
    split: str | None = None
    max_samples: int | None = None
    data_path: str | None = None


@dataclass
class DatasetSpec:
    name: str
    train: Split
    test: Split


@dataclass
class ModelRole:
    model: str
    engine: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainStep:
    """One training stage: the flags of its CLI and the command that launches python (accelerate, torchrun ...)."""

    flags: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)  # rsft/da only: distill.build_data flags
    launcher: list[str] = field(default_factory=list)
    use_prm: bool = False  # rsft/da: pick/order correct solutions by the PRM


@dataclass
class PipelineConfig:
    name: str
    path: Path
    teacher: ModelRole
    methods: dict[str, str]
    datasets: list[DatasetSpec]
    judge: dict[str, Any]
    student: ModelRole
    prm: TrainStep | None
    prm_model: str | None
    strategies: dict[str, TrainStep]
    env: dict[str, str]
    raw: dict[str, Any]


_TOP_KEYS = {"name", "teacher", "datasets", "judge", "prm", "student", "strategies", "env", "resources"}


def _where(path: Path, key: str) -> str:
    return f"{path}: {key}"


def _mapping(value: Any, path: Path, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PipelineError(f"{_where(path, key)} must be a mapping, got {type(value).__name__}")
    return dict(value)


def _check_keys(section: dict[str, Any], allowed: set[str], path: Path, key: str) -> None:
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise PipelineError(f"{_where(path, key)}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")


def _flags(value: Any, path: Path, key: str) -> dict[str, Any]:
    flags = _mapping(value, path, key)
    for name, item in flags.items():
        if not isinstance(name, str) or name.startswith("-"):
            raise PipelineError(f"{_where(path, key)}: flag names are written without dashes, got {name!r}")
        if isinstance(item, dict):
            raise PipelineError(f"{_where(path, f'{key}.{name}')}: a flag value cannot be a mapping")
    return flags


def _launcher(value: Any, path: Path, key: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise PipelineError(f"{_where(path, key)} must be a command string or a list of strings")


def _role(value: Any, path: Path, key: str, default_model: str | None, extra_keys: frozenset[str] = frozenset()
          ) -> ModelRole:
    section = _mapping(value, path, key)
    _check_keys(section, {"model", "engine"} | extra_keys, path, key)
    model = section.get("model", default_model)
    if not model:
        raise PipelineError(f"{_where(path, key + '.model')} is required")
    return ModelRole(model=str(model), engine=_flags(section.get("engine"), path, f"{key}.engine"))


def _split(value: Any, path: Path, key: str, default_split: str) -> Split:
    section = _mapping(value, path, key)
    _check_keys(section, {"split", "max_samples", "data_path"}, path, key)
    max_samples = section.get("max_samples")
    if max_samples is not None and (not isinstance(max_samples, int) or max_samples < 1):
        raise PipelineError(f"{_where(path, key + '.max_samples')} must be a positive integer, got {max_samples!r}")
    return Split(split=str(section.get("split", default_split)), max_samples=max_samples,
                 data_path=section.get("data_path"))


def _datasets(value: Any, path: Path) -> list[DatasetSpec]:
    if not isinstance(value, list) or not value:
        raise PipelineError(f"{_where(path, 'datasets')} must be a non-empty list of {{name, train, test}}")
    specs, seen = [], set()
    for index, item in enumerate(value):
        key = f"datasets[{index}]"
        section = _mapping(item, path, key)
        _check_keys(section, {"name", "train", "test"}, path, key)
        name = section.get("name")
        if not name:
            raise PipelineError(f"{_where(path, key + '.name')} is required")
        if name in seen:
            raise PipelineError(f"{_where(path, key + '.name')}: {name} is listed twice")
        seen.add(name)
        train = _split(section.get("train"), path, f"{key}.train", "train")
        test = _split(section.get("test"), path, f"{key}.test", "test")
        if (train.split, train.data_path) == (test.split, test.data_path):
            raise PipelineError(f"{_where(path, key)}: train and test read the same split ({train.split}); "
                                "labels would come from the questions the students are tested on")
        specs.append(DatasetSpec(name=str(name), train=train, test=test))
    return specs


def _train_step(value: Any, path: Path, key: str, with_data: bool) -> TrainStep:
    section = _mapping(value, path, key)
    allowed = {"flags", "launcher"} | ({"data", "use_prm"} if with_data else set())
    _check_keys(section, allowed, path, key)
    use_prm = section.get("use_prm", False)
    if not isinstance(use_prm, bool):
        raise PipelineError(f"{_where(path, key + '.use_prm')} must be true or false")
    return TrainStep(flags=_flags(section.get("flags"), path, f"{key}.flags"),
                     data=_flags(section.get("data"), path, f"{key}.data"),
                     launcher=_launcher(section.get("launcher"), path, f"{key}.launcher"), use_prm=use_prm)


def parse_config(raw: Any, path: Path) -> PipelineConfig:
    """Check every key (an unknown one is an error naming it) and fill the defaults."""
    if not isinstance(raw, dict):
        raise PipelineError(f"{path}: the config must be a YAML mapping")
    _check_keys(raw, _TOP_KEYS, path, "top level")
    teacher_section = _mapping(raw.get("teacher"), path, "teacher")
    teacher = _role(teacher_section, path, "teacher", DEFAULT_MODEL, frozenset({"methods"}))
    methods = teacher_section.get("methods", {"self_consistency": "config_main"})
    if isinstance(methods, list):
        methods = {m: "config_main" for m in methods}
    methods = _mapping(methods, path, "teacher.methods")
    from methods import REGISTRY

    for method, config_name in methods.items():
        if method not in REGISTRY:
            raise PipelineError(f"{_where(path, 'teacher.methods')}: unknown method {method!r} "
                                f"(one of: {', '.join(sorted(REGISTRY))})")
        methods[method] = str(config_name or "config_main")
    student = _role(raw.get("student"), path, "student", None)
    strategies_section = _mapping(raw.get("strategies"), path, "strategies")
    _check_keys(strategies_section, set(STRATEGIES), path, "strategies")
    strategies = {name: _train_step(strategies_section[name], path, f"strategies.{name}", name != "pad")
                  for name in STRATEGIES if name in strategies_section}
    prm_section = _mapping(raw.get("prm"), path, "prm")
    _check_keys(prm_section, {"model", "flags", "launcher"}, path, "prm")
    prm = None
    if "prm" in raw:
        prm = _train_step({k: v for k, v in prm_section.items() if k != "model"}, path, "prm", False)
    needs_prm = [f"strategies.{n}" for n, s in strategies.items()
                 if s.use_prm or (n == "pad" and str(s.flags.get("reward_mode", "PRMVR")) != "VR")]
    if needs_prm and prm is None:
        raise PipelineError(f"{_where(path, needs_prm[0])} uses a PRM but the config has no prm section "
                            "(add one, or set reward_mode: VR / use_prm: false)")
    env = _mapping(raw.get("env"), path, "env")
    judge = _flags(raw.get("judge"), path, "judge")
    name = str(raw.get("name") or path.stem)
    return PipelineConfig(name=name, path=path, teacher=teacher, methods=methods,
                          datasets=_datasets(raw.get("datasets"), path), judge=judge, student=student, prm=prm,
                          prm_model=prm_section.get("model"),
                          strategies=strategies, env={str(k): str(v) for k, v in env.items()}, raw=raw)


def load_config(path: str | Path) -> PipelineConfig:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"--config {path}: no such file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise PipelineError(f"{path}:{line} not valid YAML ({getattr(exc, 'problem', exc)})") from None
    return parse_config(raw, path)
