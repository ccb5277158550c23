"""One command from teacher to distilled student, with the comparison the paper is about.

    python -m scripts.pipeline --config configs/pipeline/demo.yaml            # CPU, default model, Arith
    python -m scripts.pipeline --config configs/pipeline/qwen3_math.yaml      # a GPU recipe
    python -m scripts.pipeline --config ... --stages label,prm,pad            # a subset; finished stages are skipped
    python -m scripts.pipeline --config ... --run_dir runs/demo-1             # where every stage writes

Stages: teacher inference on the train split (each method) -> label -> PRM -> rsft / da / pad -> evaluation
of the base student, each teacher method and each student on the test split -> report (Markdown + PNG).
Each stage writes under the run folder and records its command, settings and timing in stages/<stage>.json;
rerun the same command after a crash or kill and it resumes where it stopped.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def build_parser() -> argparse.ArgumentParser:
    from pipeline.stages import KINDS

    parser = argparse.ArgumentParser(prog="python -m scripts.pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/pipeline/demo.yaml", help="the pipeline YAML")
    parser.add_argument("--run_dir", default=None, help="run folder (default: runs/<config name>)")
    parser.add_argument("--stages", default="all",
                        help=f"comma-separated stage kinds to run ({', '.join(KINDS)}) or 'all'; the stages a "
                             "selected one reads must have finished")
    parser.add_argument("--dry_run", action="store_true", help="print the stages and their commands, run nothing")
    parser.add_argument("--verbose", action="store_true", help="show each stage's output (it always goes to logs/)")
    parser.add_argument("--grade_timeout", type=float, default=5.0, help="report: seconds per symbolic math check")
    return parser


def main(argv: list[str] | None = None) -> int:
    from pipeline.app import run_pipeline
    from pipeline.config import PipelineError
    from pipeline.runner import StageFailed

    args = build_parser().parse_args(argv)
    try:
        return run_pipeline(args, ROOT)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except StageFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: finished stages are kept; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
