"""Pusher executor: the blessed candidate's bundle (:func:`model_maker.core.push.bundle_files`)
into one :func:`model_maker.core.push.push_files` call."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import tensorflow as tf
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from model_maker.core.push import bundle_files, push_files

LOG = logging.getLogger("qatflow")

PUSHED_KEY = "pushed"
PUSHED_DESTINATION_KEY = "pushed_destination"
PUSHED_VERSION_KEY = "pushed_version"


class Executor(base_executor.BaseExecutor):
    """Copies the candidate variant when the blessing says so; records where it went."""

    def Do(  # noqa: N802 - TFX executor API
        self,
        input_dict: dict[str, list[Any]],
        output_dict: dict[str, list[Any]],
        exec_properties: dict[str, Any],
    ) -> None:
        tflite_uri = artifact_utils.get_single_uri(input_dict["tflite"])
        evaluation_uri = artifact_utils.get_single_uri(input_dict["evaluation"])
        blessing = artifact_utils.get_single_instance(input_dict["blessing"])
        pushed = artifact_utils.get_single_instance(output_dict["pushed_model"])
        destination = exec_properties["destination"]
        candidate = blessing.get_string_custom_property("candidate")

        if not blessing.get_int_custom_property("blessed"):
            reason = blessing.get_string_custom_property("reason") or "no reason recorded"
            LOG.warning("not pushing %s: the model is not blessed (%s)", candidate, reason)
            pushed.set_int_custom_property(PUSHED_KEY, 0)
            pushed.set_string_custom_property("reason", f"not blessed: {reason}")
            return

        files = bundle_files(tflite_uri, evaluation_uri, candidate)
        result = push_files(files, destination, metadata={"variant": candidate})
        LOG.info("%s: %s", candidate, result.reason)
        # pushed=1: the files are at the destination (TFX's meaning); new_version
        # tells a fresh push from an idempotent rerun that found them there.
        pushed.set_int_custom_property(PUSHED_KEY, 1)
        pushed.set_int_custom_property("new_version", 1 if result.pushed else 0)
        pushed.set_string_custom_property(PUSHED_DESTINATION_KEY, result.path)
        pushed.set_string_custom_property(PUSHED_VERSION_KEY, f"v{result.version}")
        pushed.set_string_custom_property("fingerprint", result.fingerprint)
        pushed.set_string_custom_property("reason", result.reason)
        tf.io.gfile.makedirs(pushed.uri)
        with tf.io.gfile.GFile(os.path.join(pushed.uri, "push.json"), "w") as fh:
            fh.write(
                json.dumps(
                    {
                        "pushed": result.pushed,
                        "destination": result.path,
                        "version": result.version,
                        "reason": result.reason,
                    },
                    indent=2,
                )
            )
