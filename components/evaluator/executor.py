"""Evaluator executor: one call into :func:`model_maker.core.evaluation.evaluate_variants`."""

from __future__ import annotations

import logging
import os
from typing import Any

from tfx.types import artifact_utils

from components.local_beam import LocalBeamExecutor

LOG = logging.getLogger("qatflow")

BLESSED_KEY = "blessed"
BLESSED_FILE = "BLESSED"
NOT_BLESSED_FILE = "NOT_BLESSED"


def _beam_options(beam_args: list[str]):
    from model_maker.core.evaluation import BeamOptions

    workers = 1
    for arg in beam_args:
        if arg.startswith("--direct_num_workers="):
            workers = int(arg.split("=", 1)[1]) or (os.cpu_count() or 1)
    return BeamOptions(num_workers=workers, beam_args=tuple(beam_args))


class Executor(LocalBeamExecutor):
    """Evaluates the TFLite variants (and the Keras model when given) on the eval split."""

    def Do(  # noqa: N802 - TFX executor API
        self,
        input_dict: dict[str, list[Any]],
        output_dict: dict[str, list[Any]],
        exec_properties: dict[str, Any],
    ) -> None:
        import tensorflow as tf

        from model_maker.core.evaluation import (
            BlessingRule,
            EvalSource,
            evaluate_variants,
            variants_from_manifest,
        )
        from model_maker.object_detector.dataloader import (
            annotations_path,
            read_label_map,
            split_files,
        )

        examples_uri = artifact_utils.get_single_uri(input_dict["examples"])
        tflite_uri = artifact_utils.get_single_uri(input_dict["tflite"])
        evaluation = artifact_utils.get_single_instance(output_dict["evaluation"])
        blessing = artifact_utils.get_single_instance(output_dict["blessing"])
        split = exec_properties.get("split") or "eval"

        variants = variants_from_manifest(tflite_uri)
        if input_dict.get("model"):
            from model_maker.core.evaluation import KERAS_FLOAT, Variant, read_manifest
            from model_maker.core.keras_detector import KerasDetectorFactory

            model_uri = artifact_utils.get_single_uri(input_dict["model"])
            # The float baseline, post-processed with the TFLite op's settings.
            post = next(
                (e["postprocess"] for e in read_manifest(tflite_uri) if e.get("postprocess")), {}
            )
            factory = KerasDetectorFactory(
                model_uri,
                max_detections=int(post.get("max_detections", 25)),
                score_threshold=float(post.get("score_threshold", 1e-8)),
                iou_threshold=float(post.get("iou_threshold", 0.5)),
            )
            variants.insert(0, Variant(KERAS_FLOAT, factory, model_uri))
        rule = BlessingRule(
            candidate=exec_properties.get("candidate") or "qat_int8",
            metric=exec_properties.get("metric") or "AP",
            max_drop=float(exec_properties.get("max_ap_drop", 1.0)),
            baseline=exec_properties.get("baseline") or "",
        )
        result = evaluate_variants(
            variants,
            EvalSource(record_files=tuple(split_files(examples_uri, split))),
            annotations_path(examples_uri, split),
            evaluation.uri,
            label_names=read_label_map(examples_uri),
            rule=rule,
            latency_runs=int(exec_properties.get("latency_runs", 20)),
            beam=_beam_options(list(self._beam_pipeline_args)),
            work_dir=evaluation.uri,
        )
        decision = result.decision
        blessing.set_int_custom_property(BLESSED_KEY, 1 if decision.blessed else 0)
        blessing.set_string_custom_property("candidate", decision.candidate)
        blessing.set_string_custom_property("reason", "; ".join(decision.reasons))
        tf.io.gfile.makedirs(blessing.uri)
        marker = BLESSED_FILE if decision.blessed else NOT_BLESSED_FILE
        with tf.io.gfile.GFile(os.path.join(blessing.uri, marker), "w") as fh:
            fh.write("\n".join(decision.reasons) + "\n")
        LOG.info(
            "%s %s: %s",
            decision.candidate,
            "blessed" if decision.blessed else "not blessed",
            "; ".join(decision.reasons),
        )
