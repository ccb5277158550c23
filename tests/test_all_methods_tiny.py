"""Every registered method runs on the tiny model through the hf engine and the driver, on three task types."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from data.registry import get_dataset_spec, load_samples
from engine import EngineArgs
from engine.hf_backend import HFEngine
from methods import REGISTRY, get_method_class
from methods.runner import run_method

ROOT = Path(__file__).resolve().parents[1]
DATASETS = {"GSM8K": "gsm8k.jsonl", "MATH": "math.jsonl", "MedMCQA": "medmcqa.jsonl"}
TURN_FIELDS = {"agent", "role", "round", "messages", "text", "answer", "prompt_tokens", "completion_tokens"}


class ListStore:
    def __init__(self):
        self.records = []

    def append(self, record):
        self.records.append(record)


@pytest.mark.parametrize("method_name", sorted(REGISTRY))
def test_method_runs_on_tiny_model_for_each_task_type(method_name, tiny_model_path):
    async def run_all():
        engine = HFEngine(tiny_model_path, EngineArgs(model_max_tokens=8, model_temperature=0.7))
        results = {}
        async with engine:
            method_cls = get_method_class(method_name)
            for dataset, filename in DATASETS.items():
                spec = get_dataset_spec(dataset)
                samples = load_samples(dataset, data_path=str(ROOT / "data" / "samples" / filename), max_samples=2)
                method = method_cls(engine, method_cls.load_config(), task_type=spec.task_type, seed=0)
                store = ListStore()
                await run_method(method, engine, samples, store, progress=False)
                results[dataset] = store.records
        return results

    for dataset, records in asyncio.run(run_all()).items():
        assert len(records) == 2, dataset
        for record in records:
            assert "error" not in record, (dataset, record.get("error"))
            assert record["trajectory"], dataset
            for turn in record["trajectory"]:
                assert TURN_FIELDS <= set(turn)
                assert turn["prompt_tokens"] > 0 and turn["completion_tokens"] > 0
            stats = record["token_stats"][Path(tiny_model_path).name]
            assert stats["num_llm_calls"] == len(record["trajectory"])
            assert stats["prompt_tokens"] == sum(t["prompt_tokens"] for t in record["trajectory"])
