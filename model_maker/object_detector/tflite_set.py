"""Write a folder of TFLite variants of one detector, with labels.txt and manifest.json.

The folder layout is the ``TFLiteModel`` artifact's (components/artifacts.py)::

    <dir>/<variant>.tflite         float32, float16, dynamic_range, ptq_int8, qat_int8
    <dir>/<variant>.anchors.npy    raw variants (with_nms false) only
    <dir>/labels.txt               line k = name of model class k-1 (label_map id k)
    <dir>/manifest.json            one entry per variant (file, bytes, input with
                                   quantization, outputs, with_nms, postprocess, ...)

Every file with the NMS op inside carries TFLite model metadata written by
:mod:`model_maker.core.tflite_metadata` (labels packed inside, normalisation,
output semantics), so MediaPipe Tasks' ``ObjectDetector`` and the TFLite Task
Library load it as it is; ``convert.metadata.enabled: false`` turns it off.
Raw variants (``with_nms: false``) carry none. ``labels.txt`` ships beside
the files as well.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from model_maker.core.convert_options import ConvertOptions
from model_maker.core.data import fileio
from model_maker.core.errors import UsageError
from model_maker.core.layer_errors import calibrate_set
from model_maker.core.quantization import INT8_VARIANTS, quantization_config_for_variant
from model_maker.core.settings import replace, to_dict
from model_maker.core.tflite_manifest import (  # noqa: F401 - names of the layout, for readers
    LABELS_FILE,
    MANIFEST_FILE,
    labels_text,
    write_tflite_set_files,
)
from model_maker.core.tflite_metadata import (
    METADATA_VERSION,
    detector_metadata,
    write_metadata,
)
from model_maker.object_detector.anchors import Anchors
from model_maker.object_detector.dataloader import (
    InputOptions,
    make_dataset,
    read_label_map,
    split_files,
)
from model_maker.object_detector.export import (
    ANCHORS_SUFFIX,
    build_serving_function,
    expected_outputs,
    export_tflite,
    pin_pixel_range,
)
from model_maker.object_detector.model_config import get_model_config
from model_maker.object_detector.model_io import load_trained_model
from model_maker.object_detector.options import TFLiteSetOptions

LOG = logging.getLogger("qatflow")


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
    # deferred: TensorFlow takes seconds to import; only this path needs it
    import tensorflow as tf

    if "qat_int8" in options.convert.variants and qat_model is None:
        raise UsageError("variant qat_int8 needs the QAT model (enable qat, or drop qat_int8)")
    if set(INT8_VARIANTS) & set(options.convert.variants) and representative_data is None:
        raise UsageError("int8 variants need representative data (the Examples train split)")
    tf.io.gfile.makedirs(output_dir)
    entries = []
    convert = options.convert
    calibrated = calibrate_set(
        lambda: build_serving_function(
            float_model,
            anchors,
            num_classes=num_classes,
            nms=options.postprocess,
            with_nms=convert.with_nms,
        ),
        float_model,
        convert,
        representative_data,
        allow_custom_ops=convert.with_nms,
        representative_transform=pin_pixel_range,
    )
    calibrated.write_layer_errors(output_dir)
    for variant in convert.variants:
        is_int8 = variant in INT8_VARIANTS
        config = quantization_config_for_variant(
            variant,
            representative_data if is_int8 else None,
            quantization_steps=convert.representative_samples,
            inference_input_type=convert.int8_input_type,
        )
        file_name = f"{variant}.tflite"
        result = export_tflite(
            qat_model if variant == "qat_int8" else float_model,
            os.path.join(output_dir, file_name),
            config,
            anchors=anchors,
            num_classes=num_classes,
            nms=options.postprocess,
            with_nms=convert.with_nms,
            anchors_filepath=os.path.join(output_dir, variant + ANCHORS_SUFFIX),
            converted=calibrated.flatbuffer(variant),
        )
        entry: dict[str, Any] = {
            "variant": variant,
            "file": file_name,
            "bytes": result.num_bytes,
            "source_model": "qat" if variant == "qat_int8" else "float",
            "input": {**result.description.inputs[0].as_dict(), "mean": 0.0, "std": 1.0},
            "outputs": list(expected_outputs(convert.with_nms)),
            "output_details": [o.as_dict() for o in result.description.outputs],
            "with_nms": convert.with_nms,
            "postprocess": to_dict(options.postprocess),
            "quantization": result.quantization,
        }
        entry.update(calibrated.manifest_fields(variant))
        if result.anchors_path:
            entry["anchors_file"] = os.path.basename(result.anchors_path)
        entry["metadata"] = _write_metadata(
            os.path.join(output_dir, file_name), variant, convert, num_classes, label_map
        )
        entry["bytes"] += entry["metadata"].get("bytes_added", 0)
        entries.append(entry)
    manifest = write_tflite_set_files(
        output_dir,
        entries,
        label_map=label_map,
        num_classes=num_classes,
        metadata=metadata_summary(entries),
    )
    LOG.info(
        "TFLite set in %s: %s",
        output_dir,
        ", ".join(f"{e['variant']} {e['bytes'] / 1e6:.2f} MB" for e in entries),
    )
    return manifest


def _write_metadata(
    path: str,
    variant: str,
    convert: ConvertOptions,
    num_classes: int,
    label_map: Mapping[int, str],
) -> dict[str, Any]:
    """Write TFLite metadata (labels packed inside) into the file at ``path``; say what was done."""
    options = convert.metadata
    if not options.enabled:
        return {"present": False, "reason": "convert.metadata.enabled is false"}
    if not convert.with_nms:
        return {
            "present": False,
            "reason": "raw outputs (with_nms false): MediaPipe's detector needs the NMS op inside",
        }
    info = replace(options, name=options.name or f"qatflow {variant}")
    labels = labels_text(label_map, num_classes).splitlines()
    before = fileio.read_bytes(path)
    after = write_metadata(before, detector_metadata(info, num_classes=num_classes), labels)
    fileio.write_bytes(path, after)
    return {"present": True, "version": METADATA_VERSION, "bytes_added": len(after) - len(before)}


def metadata_summary(entries: Sequence[Mapping[str, Any]]) -> str:
    """The manifest's one-line note on TFLite metadata."""
    with_metadata = [e["variant"] for e in entries if (e.get("metadata") or {}).get("present")]
    if not with_metadata:
        return "no TFLite metadata in these files; class names are in labels.txt"
    return (
        f"TFLite metadata v{METADATA_VERSION} (labels packed inside; MediaPipe Tasks / Task "
        f"Library ready) in: {', '.join(with_metadata)}"
    )


def representative_images(
    examples_uri: str, image_size: int, count: int, split: str = "train"
) -> Any:
    """Up to ``count`` images of ``split`` as the eval pipeline prepares them.

    A ``tf.data.Dataset`` of float32 ``[image_size, image_size, 3]`` pixels
    0..255 (resized keeping the aspect ratio, padded bottom/right), in record order.
    """
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
    float_model, trained = load_trained_model(model_dir)
    arch = dict(trained.model_config)
    name = arch.pop("model_name")
    arch.pop("backbone_name", None)
    anchors = Anchors.from_config(get_model_config(name, **arch))
    label_map = dict(trained.label_map)
    if not label_map and examples_uri:
        label_map = read_label_map(examples_uri)
    needs_data = bool(set(INT8_VARIANTS) & set(options.convert.variants))
    if needs_data and not examples_uri:
        raise UsageError("int8 variants need the Examples artifact (representative data)")
    representative = (
        representative_images(
            examples_uri,
            trained.image_size,
            options.convert.representative_samples,
            representative_split,
        )
        if needs_data
        else None
    )
    qat_model = None
    if "qat_int8" in options.convert.variants:
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
