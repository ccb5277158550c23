"""Fine-tune a student on R-SFT / DA data with TRL's SFTTrainer.

    python -m distill.sft --model_name_or_path Qwen/Qwen3-0.6B --train_data data/sft/arith_da.jsonl \
        --output_dir outputs/sft_arith_da [--use_lora --merge_lora] [--num_train_epochs 2] [--learning_rate 1e-5] \
        [--bf16] [--deepspeed configs/ds_zero2.json] [--report_to wandb] [--resume_from_checkpoint]

Every SFTConfig / TrainingArguments flag works. Several GPUs: `accelerate launch -m distill.sft ...`.
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from distill.sft_config import DataArguments, ModelArguments, SFTArguments, SFTUsageError

logger = logging.getLogger(__name__)


def _bare_resume_flag(argv: list[str]) -> list[str]:
    """`--resume_from_checkpoint` alone means "the last checkpoint in output_dir" (the flag takes a value)."""
    out = []
    for index, arg in enumerate(argv):
        out.append(arg)
        if arg == "--resume_from_checkpoint" and (index + 1 == len(argv) or argv[index + 1].startswith("--")):
            out.append("True")
    return out


def parse_args(argv: Sequence[str] | None = None) -> tuple[ModelArguments, DataArguments, SFTArguments]:
    from transformers import HfArgumentParser

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser((ModelArguments, DataArguments, SFTArguments), prog="python -m distill.sft",
                              description=__doc__.split("\n\n")[0])
    return parser.parse_args_into_dataclasses(args=_bare_resume_flag(argv))


def main(argv: Sequence[str] | None = None) -> int:
    from distill.sft_training import run_sft

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        model_args, data_args, training_args = parse_args(argv)
        logger.info("model arguments: %s", model_args)
        logger.info("data arguments: %s", data_args)
        logger.info("training arguments: %s", training_args.to_json_string())
        output_dir = run_sft(model_args, data_args, training_args)
    except SFTUsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"student saved to {output_dir}; evaluate it with: python inference.py --method_name cot "
          f"--model_name {output_dir} ...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
