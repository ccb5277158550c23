"""Distilling multi-agent reasoning into one student: SFT data builders (R-SFT, DA) and SFT training.

`python -m distill.build_data --strategy rsft|da` turns labeled records into conversational prompt-completion
rows; `python -m distill.sft` fine-tunes a student on them with TRL's SFTTrainer.
"""
