"""Evaluation: metrics and the paper's self-reconstruction protocol."""
