"""Evaluator: every TFLite variant on the eval split, one comparison table, the blessing."""
