"""The trained Keras float detector behind the same ``detect`` interface as TFLite files.

:class:`KerasDetector` rebuilds the model saved by the Trainer
(:func:`model_maker.object_detector.model_io.load_trained_model`), runs it on
the same resize-and-pad input as :class:`~model_maker.core.litert_detector.TFLiteDetector`,
and post-processes with :func:`~model_maker.core.postprocess.postprocess_global`
(the TF mirror of the TFLite op), with the converter's defaults (25 detections,
score threshold 1e-8, IoU 0.5). So the Evaluator compares the float model and
its TFLite variants on identical terms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from model_maker.core.detection_postprocess import NMSOptions
from model_maker.core.litert_detector import (
    Detections,
    Latency,
    measure_latency,
    resize_and_pad,
    to_original_pixels,
)
from model_maker.object_detector.anchors import Anchors
from model_maker.object_detector.model_config import get_model_config


class KerasDetector:
    """A trained EfficientDet-Lite (``config.json`` + ``weights.h5`` folder) as a detector.

    Args:
      model_dir: folder written by ``save_trained_model`` or a Trainer Model artifact.
      nms: detections kept after NMS and the thresholds (those of the TFLite op).
    """

    def __init__(self, model_dir: str, *, nms: NMSOptions = NMSOptions()) -> None:
        import tensorflow as tf  # deferred: Beam pickles the factory, workers load TF

        from model_maker.core.postprocess import postprocess_global  # deferred: imports TF
        from model_maker.object_detector.model_io import load_trained_model  # deferred: TF

        model, config = load_trained_model(model_dir)
        arch = dict(config.model_config)
        name = arch.pop("model_name")
        arch.pop("backbone_name", None)
        model_config = get_model_config(name, **arch)
        anchors = tf.constant(Anchors.from_config(model_config).boxes_yxyx)
        size = int(model_config.image_size)
        self.input_height = self.input_width = size
        self.num_threads = 0  # TensorFlow's default thread pools

        @tf.function(reduce_retracing=True, autograph=False)
        def run(images: Any):
            class_logits, box_encodings = model(images, training=False)
            return postprocess_global(
                class_logits,
                box_encodings,
                anchors,
                size,
                nms,
            )

        self._run = run

    def detect_normalized(self, pixels: np.ndarray) -> Detections:
        """Detections of a ``[H, W, 3]`` model-size input, boxes normalised to it."""
        boxes, classes, scores, num = (t.numpy() for t in self._run(pixels[None]))
        n = int(num[0])
        return Detections(
            boxes[0, :n].astype(np.float32),
            classes[0, :n].astype(np.int32),
            scores[0, :n].astype(np.float32),
        )

    def detect(self, image: np.ndarray) -> Detections:
        """Detections of an RGB ``uint8`` image ``[h, w, 3]``, boxes in its pixels."""
        image = np.asarray(image)
        pixels, scale = resize_and_pad(image[..., :3], self.input_height, self.input_width)
        found = self.detect_normalized(pixels)
        return to_original_pixels(
            found, (self.input_height, self.input_width), scale, image.shape[:2]
        )

    def latency(self, runs: int = 20, warmup: int = 2) -> Latency:
        """Forward + post-processing latency on a mid-grey input (TF default threads)."""
        grey = np.full((self.input_height, self.input_width, 3), 128.0, np.float32)
        return measure_latency(lambda: self.detect_normalized(grey), runs, warmup, 0)


@dataclass(frozen=True)
class KerasDetectorFactory:
    """Picklable recipe for a :class:`KerasDetector` (loaded once per Beam worker).

    Attributes:
      model_dir: the trained model folder.
      nms: detections kept and the thresholds.
    """

    model_dir: str
    nms: NMSOptions = NMSOptions()

    def __call__(self) -> KerasDetector:
        return KerasDetector(self.model_dir, nms=self.nms)
