"""Evaluation plugins, installed as `curate.evals`."""
