"""Executors for ``tests/components/test_kfp_entrypoint.py`` (tests only): each fails the
way its name says, with the message in the ``message`` execution property."""

from __future__ import annotations

from tfx.dsl.components.base import base_executor

from model_maker.core.errors import DataError, UsageError


class UsageErrorExecutor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties):  # noqa: N802 - TFX's interface
        raise UsageError("strategy 'gpus': no GPU found (TensorFlow sees none on this machine)")


class DataErrorExecutor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties):  # noqa: N802 - TFX's interface
        raise DataError("gs://bucket/annotations.json: annotation file not found")


class BugExecutor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties):  # noqa: N802 - TFX's interface
        raise ZeroDivisionError("a bug, not a setting")
