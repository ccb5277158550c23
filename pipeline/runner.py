"""Run stages in order under one run folder: each stage's commands, log, timing and resolved settings are
recorded in `stages/<stage>.json`; a stage whose record says done (and whose outputs exist) is skipped, so a
killed pipeline resumes at the stage it was in (whose own CLI resumes inside it)."""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipeline.config import PipelineError
from pipeline.stages import Stage

# Only these names are copied from the environment into a stage record: keys and tokens never are.
_RECORDED_ENV = ("OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "HF_HUB_OFFLINE", "VLLM_CPU_KVCACHE_SPACE")


class StageFailed(RuntimeError):
    pass


def _die_with_parent() -> None:
    """Child processes die with the pipeline, even on kill -9: an orphaned trainer would write on after it."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: Ctrl-C still reaches the whole process group


def record_path(run_dir: Path, stage: Stage) -> Path:
    return run_dir / "stages" / (stage.name.replace("/", "__") + ".json")


def read_record(run_dir: Path, stage: Stage) -> dict[str, Any] | None:
    path = record_path(run_dir, stage)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None  # torn by a kill while it was written: the stage runs again


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _settings(stage: Stage) -> Any:
    return json.loads(json.dumps(stage.settings, default=str, sort_keys=True))


def is_done(run_dir: Path, stage: Stage) -> bool:
    record = read_record(run_dir, stage)
    if not record or record.get("status") != "done":
        return False
    before, now = record.get("settings") or {}, _settings(stage)
    if before != now:
        changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        raise PipelineError(f"stage {stage.name} finished in {run_dir} with other settings (changed: "
                            f"{', '.join(changed)}); use another --run_dir, or delete {record_path(run_dir, stage)} "
                            "and the stage's outputs to redo it")
    return all(p.exists() for p in stage.outputs)


class Runner:
    def __init__(self, run_dir: Path, stages: Sequence[Stage], root: Path, verbose: bool = False,
                 in_process: dict[str, Callable[[Stage], None]] | None = None):
        self.run_dir = run_dir
        self.stages = list(stages)
        self.root = root
        self.verbose = verbose
        self.in_process = in_process or {}

    def check_selection(self, selected: Sequence[Stage]) -> None:
        """A selected stage needs the stages it reads to be done already or selected too."""
        chosen = {s.name for s in selected}
        by_name = {s.name: s for s in self.stages}
        for stage in selected:
            for need in stage.needs:
                if need not in chosen and not is_done(self.run_dir, by_name[need]):
                    raise PipelineError(f"stage {stage.name} needs {need}, which has not finished in {self.run_dir}; "
                                        f"add --stages {by_name[need].kind}")

    def run(self, selected: Sequence[Stage]) -> list[dict[str, Any]]:
        self.check_selection(selected)
        summaries, ran = [], False
        for index, stage in enumerate(selected, 1):
            prefix = f"[{index}/{len(selected)}] {stage.name}"
            # The report reads every evaluation, so it is rebuilt whenever a stage before it ran.
            if is_done(self.run_dir, stage) and not (stage.kind == "report" and ran):
                record = read_record(self.run_dir, stage)
                print(f"{prefix}: done earlier ({record.get('seconds', 0):.0f} s), skipped", flush=True)
                summaries.append(record)
                continue
            print(f"{prefix}: running (log: {self._log_path(stage)})", flush=True)
            record = self.run_stage(stage)
            ran = True
            print(f"{prefix}: done in {record['seconds']:.1f} s", flush=True)
            summaries.append(record)
        return summaries

    def _log_path(self, stage: Stage) -> Path:
        return self.run_dir / "logs" / (stage.name.replace("/", "__") + ".log")

    def run_stage(self, stage: Stage) -> dict[str, Any]:
        commands = [list(c) for c in stage.commands]
        if stage.resume_args is not None and commands:
            commands[-1] += stage.resume_args()
        record = {"name": stage.name, "kind": stage.kind, "dataset": stage.dataset, "status": "running",
                  "commands": [shlex.join(c) for c in commands], "settings": _settings(stage),
                  "env": {**{k: os.environ[k] for k in _RECORDED_ENV if k in os.environ}, **stage.env},
                  "outputs": [str(p) for p in stage.outputs], "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
        previous = read_record(self.run_dir, stage)
        if previous and previous.get("status") == "running":
            record["resumed_after"] = previous.get("started")
        _write_json(record_path(self.run_dir, stage), record)
        start = time.perf_counter()
        if stage.kind in self.in_process:
            self.in_process[stage.kind](stage)
        for command in commands:
            self._run_command(stage, command)
        missing = [str(p) for p in stage.outputs if not p.exists()]
        if missing:
            raise StageFailed(f"stage {stage.name} finished without writing {missing[0]}; see {self._log_path(stage)}")
        record.update(status="done", seconds=round(time.perf_counter() - start, 1),
                      finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
        _write_json(record_path(self.run_dir, stage), record)
        return record

    def _run_command(self, stage: Stage, command: list[str]) -> None:
        log_path = self._log_path(stage)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        # Unbuffered, so the log shows a long stage's progress as it happens, not when it ends.
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **stage.env, "PYTHONPATH": os.pathsep.join(
            p for p in (str(self.root), os.environ.get("PYTHONPATH", "")) if p)}
        with log_path.open("a", encoding="utf-8") as log:
            log.write(f"\n$ {shlex.join(command)}\n")
            log.flush()
            process = subprocess.Popen(command, cwd=self.root, env=env, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True, errors="replace",
                                       preexec_fn=_die_with_parent if sys.platform == "linux" else None)
            tail: list[str] = []
            try:
                for line in process.stdout:
                    log.write(line)
                    if self.verbose:
                        sys.stdout.write(line)
                    tail = (tail + [line])[-15:]
                code = process.wait()
            except BaseException:
                process.kill()
                process.wait()
                raise
        if code != 0:
            shown = "".join("    " + line for line in tail).rstrip()
            raise StageFailed(f"stage {stage.name} failed (exit {code}): {shlex.join(command[:4])} ...\n{shown}\n"
                              f"full log: {log_path}; fix it and rerun the same command to resume")
