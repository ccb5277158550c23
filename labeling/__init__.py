"""Labelling teacher trajectories: which turns are solutions, their steps, and a judge's verdict on each."""
