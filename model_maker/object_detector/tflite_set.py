"""Write a folder of TFLite variants of one detector, with labels.txt and manifest.json.

The folder layout is the ``TFLiteModel`` artifact's (components/artifacts.py)::

    <dir>/<variant>.tflite         float32, float16, dynamic_range, ptq_int8, qat_int8
    <dir>/<variant>.anchors.npy    raw variants (with_nms false) only
    <dir>/labels.txt               line k = name of model class k-1 (label_map id k)
    <dir>/manifest.json            one entry per variant (file, bytes, input with
                                   quantization, outputs, with_nms, postprocess, ...)

TFLite metadata (labels inside the model) is not written: no maintained
metadata writer installs beside TensorFlow 2.21 (``tflite-support`` needs
protobuf<4; mediapipe's writers miss a compiled module), so ``labels.txt``
ships beside the models instead.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from model_maker.core.errors import UsageError
from model_maker.core.quantization import VARIANTS, quantization_config_for_variant
from model_maker.object_detector.export import (
    ANCHORS_SUFFIX,
    expected_outputs,
    export_tflite,
)

LOG = logging.getLogger("qatflow")

MANIFEST_FILE = "manifest.json"
LABELS_FILE = "labels.txt"
INT8_VARIANTS = ("ptq_int8", "qat_int8")
METADATA_NOTE = (
    "no TFLite metadata: no maintained metadata writer installs with TensorFlow 2.21; "
    "class names are in labels.txt (line k = class id k-1)"
)


@dataclass(frozen=True)
class TFLiteSetOptions:
    """Which variants are written and how (ConvertConfig + model.tflite_max_detections).

    Attributes:
      variants: variant names, written in this order.
      int8_input_type: input type of ptq_int8 and qat_int8 (float32 or uint8).
      representative_samples: calibration images of the int8 variants.
      max_detections: N of the post-processing op.
      score_threshold: op score threshold.
      iou_threshold: op NMS IoU threshold.
      with_nms: post-processing op inside; False writes raw outputs + anchors.
    """

    variants: Sequence[str] = ("float32", "ptq_int8", "qat_int8")
    int8_input_type: str = "uint8"
    representative_samples: int = 100
    max_detections: int = 25
    score_threshold: float = 1e-8
    iou_threshold: float = 0.5
    with_nms: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "variants", tuple(self.variants))
        if not self.variants:
            raise UsageError(f"give at least one TFLite variant ({', '.join(VARIANTS)})")
        for variant in self.variants:
            if variant not in VARIANTS:
                raise UsageError(
                    f"unknown TFLite variant {variant!r} (known: {', '.join(VARIANTS)})"
                )
        if len(set(self.variants)) != len(self.variants):
            raise UsageError(f"TFLite variants repeat: {list(self.variants)}")
        if self.int8_input_type not in ("float32", "uint8"):
            raise UsageError(f"int8_input_type {self.int8_input_type!r} is not float32 or uint8")
        if self.representative_samples < 1:
            raise UsageError("representative_samples must be at least 1")


def labels_text(label_map: Mapping[int, str], num_classes: int) -> str:
    """``labels.txt``: one name per line for ids 1..num_classes (``class_<id>`` if unnamed)."""
    return "".join(f"{label_map.get(i, f'class_{i}')}\n" for i in range(1, num_classes + 1))


def _write_text(path: str, text: str) -> None:
    import tensorflow as tf

    with tf.io.gfile.GFile(path, "w") as fh:
        fh.write(text)


def export_tflite_set(
    output_dir: str,
    float_model: Any,
    *,
    anchors: Any,
    num_classes: int,
    label_map: Mapping[int, str],
    options: TFLiteSetOptions = TFLiteSetOptions(),
    qat_model: Any = None,
    representative_data: Any = None,
) -> dict[str, Any]:
    """Convert every variant of ``options`` into ``output_dir``; return the manifest.

    Args:
      output_dir: folder (created) for the files.
      float_model: the trained float Keras detector.
      anchors: the model's ``Anchors`` (or ``[A, 4]`` yc, xc, h, w normalised).
      num_classes: C.
      label_map: 1-based id -> class name (``label_map.json``).
      options: variants and conversion settings.
      qat_model: the QAT Keras model; required for ``qat_int8``.
      representative_data: calibration images (train split), required for the
        int8 variants; any form :class:`QuantizationConfig` accepts.

    Raises:
      UsageError: a variant needs a model or data that was not given.
    """
    import tensorflow as tf

    if "qat_int8" in options.variants and qat_model is None:
        raise UsageError("variant qat_int8 needs the QAT model (enable qat, or drop qat_int8)")
    if set(INT8_VARIANTS) & set(options.variants) and representative_data is None:
        raise UsageError("int8 variants need representative data (the Examples train split)")
    tf.io.gfile.makedirs(output_dir)
    entries = []
    for variant in options.variants:
        is_int8 = variant in INT8_VARIANTS
        config = quantization_config_for_variant(
            variant,
            representative_data if is_int8 else None,
            quantization_steps=options.representative_samples,
            inference_input_type=options.int8_input_type,
        )
        file_name = f"{variant}.tflite"
        result = export_tflite(
            qat_model if variant == "qat_int8" else float_model,
            os.path.join(output_dir, file_name),
            config,
            anchors=anchors,
            num_classes=num_classes,
            max_detections=options.max_detections,
            score_threshold=options.score_threshold,
            iou_threshold=options.iou_threshold,
            with_nms=options.with_nms,
            anchors_filepath=os.path.join(output_dir, variant + ANCHORS_SUFFIX),
        )
        entry: dict[str, Any] = {
            "variant": variant,
            "file": file_name,
            "bytes": result.num_bytes,
            "source_model": "qat" if variant == "qat_int8" else "float",
            "input": {**result.description.inputs[0].as_dict(), "mean": 0.0, "std": 1.0},
            "outputs": list(expected_outputs(options.with_nms)),
            "output_details": [o.as_dict() for o in result.description.outputs],
            "with_nms": options.with_nms,
            "postprocess": {
                "max_detections": options.max_detections,
                "score_threshold": options.score_threshold,
                "iou_threshold": options.iou_threshold,
            },
            "quantization": result.quantization,
        }
        if result.anchors_path:
            entry["anchors_file"] = os.path.basename(result.anchors_path)
        entries.append(entry)
    _write_text(os.path.join(output_dir, LABELS_FILE), labels_text(label_map, num_classes))
    manifest = {
        "variants": entries,
        "labels_file": LABELS_FILE,
        "num_classes": num_classes,
        "metadata": METADATA_NOTE,
    }
    _write_text(os.path.join(output_dir, MANIFEST_FILE), json.dumps(manifest, indent=2) + "\n")
    LOG.info(
        "TFLite set in %s: %s",
        output_dir,
        ", ".join(f"{e['variant']} {e['bytes'] / 1e6:.2f} MB" for e in entries),
    )
    return manifest


def representative_images(
    examples_uri: str, image_size: int, count: int, split: str = "train"
) -> Any:
    """Up to ``count`` images of ``split`` as the eval pipeline prepares them.

    A ``tf.data.Dataset`` of float32 ``[image_size, image_size, 3]`` pixels
    0..255 (resized keeping the aspect ratio, padded bottom/right), in record order.
    """
    from model_maker.object_detector.dataloader import InputOptions, make_dataset, split_files

    files = split_files(examples_uri, split)
    ds = make_dataset(files, InputOptions(image_size=image_size), batch_size=1, is_training=False)
    return ds.unbatch().map(lambda image, labels: image).take(count)


def _load_qat_model(model_dir: str) -> Any:
    # Imported here: TFMOT loads only when a QAT model is converted.
    from model_maker.object_detector.qat_model import load_qat_model

    loaded = load_qat_model(model_dir)
    return loaded[0] if isinstance(loaded, tuple) else loaded


def convert_trained_model(
    model_dir: str,
    output_dir: str,
    options: TFLiteSetOptions = TFLiteSetOptions(),
    *,
    qat_model_dir: str | None = None,
    examples_uri: str | None = None,
    representative_split: str = "train",
) -> dict[str, Any]:
    """The TFLiteConverter's work: trained Model folders in, TFLite set out.

    Args:
      model_dir: the Trainer's Model artifact (``keras/config.json`` + weights).
      output_dir: the TFLite artifact folder.
      options: variants and conversion settings.
      qat_model_dir: the QATTrainer's Model artifact (for ``qat_int8``).
      examples_uri: the Examples artifact (calibration images for the int8
        variants; ``label_map.json`` if the model config has no label map).
      representative_split: split the calibration images come from.

    Returns:
      The manifest written to ``output_dir/manifest.json``.
    """
    from model_maker.object_detector.anchors import Anchors
    from model_maker.object_detector.dataloader import read_label_map
    from model_maker.object_detector.model_config import get_model_config
    from model_maker.object_detector.model_io import load_trained_model

    float_model, trained = load_trained_model(model_dir)
    arch = dict(trained.model_config)
    name = arch.pop("model_name")
    arch.pop("backbone_name", None)
    anchors = Anchors.from_config(get_model_config(name, **arch))
    label_map = dict(trained.label_map)
    if not label_map and examples_uri:
        label_map = read_label_map(examples_uri)
    needs_data = bool(set(INT8_VARIANTS) & set(options.variants))
    if needs_data and not examples_uri:
        raise UsageError("int8 variants need the Examples artifact (representative data)")
    representative = (
        representative_images(
            examples_uri, trained.image_size, options.representative_samples, representative_split
        )
        if needs_data
        else None
    )
    qat_model = None
    if "qat_int8" in options.variants:
        if not qat_model_dir:
            raise UsageError("variant qat_int8 needs the QAT model (enable qat, or drop qat_int8)")
        qat_model = _load_qat_model(qat_model_dir)
    return export_tflite_set(
        output_dir,
        float_model,
        anchors=anchors,
        num_classes=trained.num_classes,
        label_map=label_map,
        options=options,
        qat_model=qat_model,
        representative_data=representative,
    )
