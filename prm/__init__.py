"""The process reward model: `prm.load(path)` gives a PRM whose `score(query, steps)` and `score_many(...)`
return each step's probability of being correct. Training: prm/finetune2.py; checking: python -m prm.evaluate."""
from prm.loading import load
from prm.model import PRM, PRMConfig, PRMLoadError
from prm.template import question_text

__all__ = ["PRM", "PRMConfig", "PRMLoadError", "load", "question_text"]
