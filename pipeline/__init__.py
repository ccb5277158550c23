"""One command from teacher to distilled student: `python -m scripts.pipeline --config configs/pipeline/demo.yaml`."""
