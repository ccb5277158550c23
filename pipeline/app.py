"""Wiring of the pipeline command: config -> stages -> runner -> report."""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from pipeline.comparison import compare, write_report
from pipeline.config import PipelineError, load_config
from pipeline.runner import Runner, read_record
from pipeline.stages import KINDS, Stage, StageBuilder


def select(stages: list[Stage], spec: str) -> list[Stage]:
    if spec.strip() in ("", "all"):
        return stages
    kinds = [k.strip() for k in spec.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise PipelineError(f"--stages: unknown stage {unknown[0]!r} (one of: {', '.join(KINDS)}, all)")
    chosen = [s for s in stages if s.kind in kinds]
    if not chosen:
        raise PipelineError(f"--stages {spec}: this config has no such stage")
    return chosen


def _save_config(config_path: Path, run_dir: Path) -> None:
    """The config as run, beside the outputs. A run folder keeps the config it was started with; a different one
    given later is saved beside it with a time stamp (each stage's record holds the settings it ran with)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    saved = run_dir / "config.yaml"
    if saved.exists() and saved.read_bytes() != config_path.read_bytes():
        later = run_dir / f"config-{time.strftime('%Y%m%d-%H%M%S')}.yaml"
        print(f"note: {config_path} differs from the {saved} this run folder was started with (saved as {later.name}); "
              "stages whose settings changed will stop with an error")
        shutil.copyfile(config_path, later)
        return
    shutil.copyfile(config_path, saved)


def _check_resources(resources, config_path) -> None:
    """A recipe states what it assumes (`resources: {gpus: 8, gpu_memory_gb: 80}`); say so when it is not here."""
    if not resources:
        return
    if not isinstance(resources, dict):
        raise PipelineError(f"{config_path}: resources must be a mapping such as {{gpus: 8, gpu_memory_gb: 80}}")
    print("this recipe assumes: " + ", ".join(f"{k}={v}" for k, v in resources.items()), flush=True)
    wanted = resources.get("gpus")
    if isinstance(wanted, int) and wanted > 0:
        import torch

        have = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if have < wanted:
            print(f"warning: {wanted} GPUs assumed, {have} visible; stages may fail or run out of memory", flush=True)


def run_pipeline(args: argparse.Namespace, root: Path) -> int:
    config = load_config(args.config)
    run_dir = Path(args.run_dir or Path("runs") / config.name).resolve()
    builder = StageBuilder(config, run_dir, root)
    stages = builder.build()
    selected = select(stages, args.stages)
    _check_resources(config.raw.get("resources"), args.config)
    if args.dry_run:
        for stage in selected:
            print(f"# {stage.name}")
            for command in stage.commands:
                print("  " + " ".join(command))
        return 0
    _save_config(Path(args.config), run_dir)

    def report(stage: Stage) -> None:
        per_dataset = {ds.name: compare(builder.eval_rows(ds), args.grade_timeout) for ds in config.datasets}
        records = [r for s in stages if s.kind != "report" and (r := read_record(run_dir, s))]
        write_report(run_dir / "report", per_dataset, records, f"AgentArk pipeline: {config.name}")

    start = time.perf_counter()
    summaries = Runner(run_dir, stages, root, verbose=args.verbose, in_process={"report": report}).run(selected)
    (run_dir / "pipeline.json").write_text(json.dumps(
        {"config": str(Path(args.config).resolve()), "run_dir": str(run_dir), "stages_run": args.stages,
         "wall_s": round(time.perf_counter() - start, 1),
         "stages": [{k: s.get(k) for k in ("name", "status", "seconds")} for s in summaries]}, indent=2) + "\n")
    if any(s.kind == "report" for s in selected):
        print(f"report: {run_dir / 'report' / 'report.md'}")
    return 0
