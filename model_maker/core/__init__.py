"""Shared pieces of the ML library: hparams, errors, schedules, QAT, conversion, evaluation."""
