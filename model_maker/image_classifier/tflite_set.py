"""Write a folder of TFLite variants of one classifier, with labels.txt and manifest.json.

The folder is the ``TFLiteModel`` artifact, laid out as for detectors
(:mod:`model_maker.core.tflite_manifest`)::

    <dir>/<variant>.tflite   float32, float16, dynamic_range, ptq_int8, qat_int8:
                             input ``images`` [1, S, S, 3] raw pixels (uint8 for the
                             int8 variants unless convert.int8_input_type is float32),
                             one output ``probabilities`` [1, C] (softmax inside)
    <dir>/labels.txt         line k = name of model class k
    <dir>/manifest.json      {"task": "image_classification", "variants": [...], ...};
                             each entry says ``"softmax": true``

Every file carries TFLite metadata (labels packed inside, normalisation
mean 0 / std 1 because the model normalises itself) unless
``convert.metadata.enabled`` is false, so MediaPipe Tasks' ``ImageClassifier``
loads it as it is.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from model_maker.core.convert_options import INT8_VARIANTS, ConvertOptions
from model_maker.core.data import fileio
from model_maker.core.divergence import check_finite_weights
from model_maker.core.errors import UsageError
from model_maker.core.layer_errors import calibrate_set
from model_maker.core.options import IMAGE_CLASSIFICATION
from model_maker.core.quantization import quantization_config_for_variant
from model_maker.core.settings import to_dict
from model_maker.core.tflite_manifest import write_tflite_set_files
from model_maker.image_classifier.dataloader import DataLoader, InputOptions
from model_maker.image_classifier.export import (
    build_serving_function,
    export_tflite,
    pin_pixel_range,
)
from model_maker.image_classifier.model_io import load_trained_model
from model_maker.image_classifier.qat_trainer import load_qat_model

LOG = logging.getLogger("qatflow")


def representative_images(
    examples_uri: str, image_size: int, count: int, split: str = "train"
) -> np.ndarray:
    """Up to ``count`` images ``[N, S, S, 3]`` float32 0..255 of ``split`` as evaluation
    prepares them (whole image resized, no augmentation), in record order."""
    loader = DataLoader.from_examples(examples_uri, split)
    batches = loader.gen_tf_dataset(InputOptions(image_size=image_size, batch_size=min(count, 32)))
    images: list[np.ndarray] = []
    for batch, _ in batches:
        images.extend(batch.numpy())
        if len(images) >= count:
            break
    return np.stack(images[:count]).astype(np.float32)


def export_tflite_set(
    output_dir: str,
    float_model: Any,
    *,
    labels: list[str],
    convert: ConvertOptions = ConvertOptions(),
    qat_model: Any = None,
    representative_data: Any = None,
) -> dict[str, Any]:
    """Convert every variant of ``convert`` into ``output_dir``; return the manifest.

    Args:
      output_dir: folder (created) for the files.
      float_model: the trained float classifier (logits output).
      labels: class names in the order of the model's outputs.
      convert: variants, int8 input type, calibration samples, metadata.
      qat_model: the fake-quant model (needed for ``qat_int8``).
      representative_data: ``[N, S, S, 3]`` pixels for the int8 variants.
    """
    fileio.makedirs(output_dir)
    entries = []
    info = convert.metadata if convert.metadata.enabled else None
    calibrated = calibrate_set(
        lambda: build_serving_function(float_model),
        float_model,
        convert,
        representative_data,
        representative_transform=pin_pixel_range,
    )
    calibrated.write_layer_errors(output_dir)
    for variant in convert.variants:
        if variant == "qat_int8" and qat_model is None:
            raise UsageError("variant qat_int8 needs the QAT model (enable qat, or drop qat_int8)")
        if variant in INT8_VARIANTS and representative_data is None:
            raise UsageError(f"variant {variant} needs representative data")
        config = quantization_config_for_variant(
            variant,
            representative_data,
            quantization_steps=convert.representative_samples,
            inference_input_type=convert.int8_input_type,
        )
        source = qat_model if variant == "qat_int8" else float_model
        entry = export_tflite(
            source,
            os.path.join(output_dir, f"{variant}.tflite"),
            config,
            labels=labels,
            metadata=info,
            variant=variant,
            converted=calibrated.flatbuffer(variant),
        )
        entry.update(calibrated.manifest_fields(variant))
        if info is None:
            entry["metadata"] = {"present": False, "reason": "convert.metadata.enabled is false"}
        entries.append(entry)
    written = [e["variant"] for e in entries if e["metadata"].get("present")]
    manifest = write_tflite_set_files(
        output_dir,
        entries,
        label_map={i + 1: name for i, name in enumerate(labels)},
        num_classes=len(labels),
        metadata=(
            f"TFLite metadata (labels packed inside; MediaPipe Tasks ImageClassifier ready) in: "
            f"{', '.join(written)}"
            if written
            else "no TFLite metadata in these files; class names are in labels.txt"
        ),
        task=IMAGE_CLASSIFICATION,
        extra={"convert": to_dict(convert)},
    )
    return manifest


def convert_trained_model(
    model_dir: str,
    output_dir: str,
    convert: ConvertOptions = ConvertOptions(),
    *,
    qat_model_dir: str | None = None,
    examples_uri: str | None = None,
    representative_split: str = "train",
) -> dict[str, Any]:
    """The TFLiteConverter's work for a classifier: Model folders in, TFLite set out.

    Args:
      model_dir: the Trainer's Model artifact (``keras/config.json`` + weights).
      output_dir: the TFLite artifact folder.
      convert: variants and conversion settings.
      qat_model_dir: the QATTrainer's Model artifact (for ``qat_int8``).
      examples_uri: the Examples artifact (calibration images of the int8 variants).
      representative_split: split the calibration images come from.

    Returns:
      The manifest written to ``output_dir/manifest.json``.
    """
    float_model, config = load_trained_model(model_dir)
    needs_data = bool(set(INT8_VARIANTS) & set(convert.variants))
    if needs_data and not examples_uri:
        raise UsageError("int8 variants need the Examples artifact (representative data)")
    representative = (
        representative_images(
            examples_uri, config.image_size, convert.representative_samples, representative_split
        )
        if needs_data
        else None
    )
    check_finite_weights(float_model, f"the float model in {model_dir}")
    qat_model = None
    if "qat_int8" in convert.variants:
        if not qat_model_dir:
            raise UsageError("variant qat_int8 needs the QAT model (enable qat, or drop qat_int8)")
        qat_model, _ = load_qat_model(qat_model_dir)
        check_finite_weights(qat_model, f"the QAT model in {qat_model_dir}")
    return export_tflite_set(
        output_dir,
        float_model,
        labels=config.labels,
        convert=convert,
        qat_model=qat_model,
        representative_data=representative,
    )
