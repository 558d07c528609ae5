"""Evaluation: exact and sampled game scores, and (later) text metrics and reports."""
