"""Evaluation: retrieval, zero-shot classification and reports."""
