"""TFLite model metadata, written and read by qatflow itself (no tflite-support needed).

The TFLite model metadata is a FlatBuffer of the public schema
``metadata_schema.fbs`` (root table ``ModelMetadata``, file identifier
``M001``) stored in one buffer of the model, named by the model's
``metadata`` entry ``TFLITE_METADATA``. Files the metadata names (the label
file) are packed after the model as an uncompressed zip archive: the model
flatbuffer followed by the zip, whose offsets count from the start of the
file (what appending with Python's ``zipfile`` in mode ``"a"`` produces).
MediaPipe Tasks, the TFLite Task Library and Android Studio's model binding
read this layout; MediaPipe refuses compressed entries.

This module writes that metadata with hand-written table builders on the
``flatbuffers`` package (slots in the order of the schema's fields; a union
takes two slots, its type first) and rewrites the model flatbuffer with the
LiteRT schema's object API, which keeps every tensor, operator, signature and
the converter's own metadata entries; every buffer's data is placed 16-byte
aligned (the schema's ``force_align: 16``; TF 2.21's converter only aligns to
4). The same bytes in give the same bytes out (the zip entry carries a fixed
timestamp).

What MediaPipe Tasks 0.10.14 reads (checked against the real runtime by
``tests/model_maker/core/test_tflite_metadata_mediapipe.py``):

* input: ``uint8`` or ``float32`` ``[1, H, W, 3]``. A float32 input needs
  ``NormalizationOptions``: the runtime feeds ``(pixel - mean) / std`` (one
  mean/std for all channels). A uint8 input gets the raw pixels 0..255 and the
  normalisation is not applied. qatflow models normalise inside the graph, so
  both take raw pixels: mean 0, std 1.
* detector with NMS (``ObjectDetector``): exactly 4 outputs whose metadata is
  named ``location``, ``category``, ``score``, ``number of detections`` (in
  the order of the model's outputs; the runtime finds each one by name),
  ``location`` with ``BoundingBoxProperties`` (type BOUNDARIES, coordinates
  RATIO, ``index`` = where left, top, right, bottom sit in each box: [1, 0, 3,
  2] for a y-first model), and the label file as ``TENSOR_VALUE_LABELS`` of
  ``category`` (the number of labels is the number of classes it reports).
* classifier (``ImageClassifier``): one output of scores, the label file as
  ``TENSOR_AXIS_LABELS``.

Usage::

    spec = detector_metadata(ModelInfo("pets", version="3"), num_classes=2)
    with_md = write_metadata(model_bytes, spec, ["cat", "dog"])
    read_metadata(with_md).labels  # ("cat", "dog")
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import flatbuffers
import numpy as np
from flatbuffers.table import Table

from model_maker.core.convert_options import ModelInfo
from model_maker.core.errors import DataError, UsageError

#: Version of the metadata layout qatflow writes (recorded in manifests; bumped when the
#: content written for a task changes).
METADATA_VERSION = "1"
#: Name of the model ``metadata`` entry that points at the metadata buffer.
METADATA_NAME = "TFLITE_METADATA"
#: FlatBuffer file identifiers: metadata and TFLite model.
METADATA_FILE_IDENTIFIER = b"M001"
TFLITE_FILE_IDENTIFIER = b"TFL3"
#: Name of the packed label file.
LABELS_FILE = "labels.txt"

#: Metadata names of a detector's outputs, in the order MediaPipe maps them.
DETECTOR_OUTPUT_NAMES = ("location", "category", "score", "number of detections")
#: Default signature output of the model behind each detector metadata name (qatflow export).
DETECTOR_SIGNATURE_OUTPUTS: Mapping[str, str] = {
    "location": "boxes",
    "category": "classes",
    "score": "scores",
    "number of detections": "num_detections",
}
#: Box layouts -> BoundingBoxProperties.index (positions of left, top, right, bottom).
BOX_ORDERS: Mapping[str, tuple[int, int, int, int]] = {
    "yxyx": (1, 0, 3, 2),  # ymin, xmin, ymax, xmax (TFLite_Detection_PostProcess)
    "xyxy": (0, 1, 2, 3),
}
DETECTION_GROUP = "detection_result"

_INPUT_DESCRIPTION = "Input image to be processed: RGB pixels."
_DETECTOR_DESCRIPTION = (
    "Identifies which of a known set of objects are present in an image and where "
    "(boxes with class and score, after non-maximum suppression)."
)
_CLASSIFIER_DESCRIPTION = "Identifies which of a known set of categories an image shows."
_LABELS_DESCRIPTION = "Labels for categories that the model can recognize (line k = class k)."
_OUTPUT_DESCRIPTIONS = {
    "location": "The locations of the detected boxes (normalised to the input image).",
    "category": "The categories of the detected boxes (0-based index into the labels).",
    "score": "The scores of the detected boxes.",
    "number of detections": "The number of the detected boxes.",
}
_CLASSIFIER_OUTPUT_DESCRIPTION = "Score of each label, in the order of the label file."

# --- schema enums (metadata_schema.fbs) -------------------------------------------------

_ASSOCIATED_FILE_TYPES = {"TENSOR_AXIS_LABELS": 2, "TENSOR_VALUE_LABELS": 3}
_COLOR_SPACES = {"RGB": 1, "GRAYSCALE": 2}
_CONTENT_FEATURE, _CONTENT_IMAGE, _CONTENT_BOX = 1, 2, 3  # ContentProperties union
_PROCESS_NORMALIZATION, _PROCESS_SCORE_THRESHOLD = 1, 3  # ProcessUnitOptions union
_BOX_BOUNDARIES = 1  # BoundingBoxType
_COORDINATES_RATIO = 0  # CoordinateType

# TFLite TensorType values (schema.fbs).
_TFLITE_TYPES = {0: "float32", 3: "uint8", 9: "int8", 2: "int32", 4: "int64", 7: "int16"}

# Kinds of output tensors (what the reader reports and the writer accepts).
BOXES, CATEGORIES, SCORES, COUNT, PROBABILITIES = (
    "boxes",
    "categories",
    "scores",
    "count",
    "probabilities",
)


# --- public specs -----------------------------------------------------------------------


@dataclass(frozen=True)
class ImageInput:
    """The image input: colour space and normalisation ``(pixel - mean) / std``.

    Attributes:
      mean: 1 or 3 values (one for all channels, or R, G, B).
      std: as many values as ``mean``, none zero.
      color_space: "RGB" (MediaPipe reads only RGB) or "GRAYSCALE".
      name: metadata name of the tensor.
      description: human-readable description.
    """

    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    color_space: str = "RGB"
    name: str = "image"
    description: str = _INPUT_DESCRIPTION

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", _floats("normalisation mean", self.mean))
        object.__setattr__(self, "std", _floats("normalisation std", self.std))
        if len(self.mean) not in (1, 3) or len(self.mean) != len(self.std):
            raise UsageError(
                "normalisation needs 1 or 3 mean values and as many std values, "
                f"got mean {list(self.mean)} and std {list(self.std)}"
            )
        if any(s == 0.0 for s in self.std):
            raise UsageError(f"normalisation std must not be 0, got {list(self.std)}")
        if self.color_space not in _COLOR_SPACES:
            raise UsageError(
                f"color_space {self.color_space!r} is not one of {', '.join(_COLOR_SPACES)}"
            )

    def stats(self, dtype: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(min, max) per channel of the values the input tensor receives."""
        if dtype == "uint8":
            return (0.0,), (255.0,)
        lows = tuple((0.0 - m) / s for m, s in zip(self.mean, self.std, strict=True))
        highs = tuple((255.0 - m) / s for m, s in zip(self.mean, self.std, strict=True))
        return lows, highs


@dataclass(frozen=True)
class OutputTensor:
    """One output of the model and what it means.

    Attributes:
      name: metadata name (``location``, ``category``, ... for detectors).
      kind: one of boxes, categories, scores, count, probabilities.
      model_output: the model's output it describes: signature output name
        (or tensor name; None for the only output of a one-output model).
      description: human-readable description.
      box_index: boxes only: positions of left, top, right, bottom in a box.
      labels: the label file is attached (categories: as tensor value labels;
        probabilities: as tensor axis labels).
      value_range: dimension range of the content (min, max), or None.
      score_threshold: scores only: recommended threshold (ScoreThresholdingOptions).
    """

    name: str
    kind: str
    model_output: str | None
    description: str = ""
    box_index: tuple[int, ...] | None = None
    labels: bool = False
    value_range: tuple[int, int] | None = None
    score_threshold: float | None = None


@dataclass(frozen=True)
class MetadataSpec:
    """Everything :func:`write_metadata` writes besides the labels.

    Build it with :func:`detector_metadata` or :func:`classifier_metadata`.

    Attributes:
      task: "object_detector" or "image_classifier".
      info: general fields.
      input: the image input.
      outputs: one entry per model output.
      num_classes: number of classes (= number of labels).
      labels_file: name of the packed label file.
    """

    task: str
    info: ModelInfo
    input: ImageInput
    outputs: tuple[OutputTensor, ...]
    num_classes: int
    labels_file: str = LABELS_FILE

    def __post_init__(self) -> None:
        object.__setattr__(self, "outputs", tuple(self.outputs))
        if self.task not in ("object_detector", "image_classifier"):
            raise UsageError(f"unknown metadata task {self.task!r}")
        if not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise UsageError(f"num_classes must be a positive integer, got {self.num_classes!r}")
        names = [o.name for o in self.outputs]
        if len(set(names)) != len(names):
            raise UsageError(f"output metadata names repeat: {names}")
        targets = [o.model_output for o in self.outputs]
        if len(set(targets)) != len(targets):
            raise UsageError(f"two output metadata entries describe the same output: {targets}")
        if not self.labels_file or "/" in self.labels_file or "\\" in self.labels_file:
            raise UsageError(f"labels_file must be a plain file name, got {self.labels_file!r}")


def detector_metadata(
    info: ModelInfo,
    *,
    num_classes: int,
    mean: Sequence[float] = (0.0,),
    std: Sequence[float] = (1.0,),
    box_order: str = "yxyx",
    outputs: Mapping[str, str] | None = None,
    score_threshold: float | None = None,
) -> MetadataSpec:
    """Metadata of a detector with NMS inside (4 outputs), as MediaPipe's ObjectDetector wants.

    Args:
      info: general fields (an empty description gets a default one).
      num_classes: classes of the model (the label file must have as many lines).
      mean: input normalisation mean (qatflow detectors take raw pixels: 0).
      std: input normalisation std (qatflow detectors: 1).
      box_order: "yxyx" (ymin, xmin, ymax, xmax: TFLite_Detection_PostProcess) or "xyxy".
      outputs: metadata name (location, category, score, number of detections) ->
        the model's signature output name; default :data:`DETECTOR_SIGNATURE_OUTPUTS`.
      score_threshold: recommended score threshold the runtime applies by default
        (None: none, every detection of the model is returned).

    Raises:
      UsageError: bad values.
    """
    if box_order not in BOX_ORDERS:
        raise UsageError(f"box_order {box_order!r} is not one of {', '.join(BOX_ORDERS)}")
    mapping = dict(DETECTOR_SIGNATURE_OUTPUTS if outputs is None else outputs)
    if sorted(mapping) != sorted(DETECTOR_OUTPUT_NAMES):
        raise UsageError(
            f"detector outputs must name exactly {list(DETECTOR_OUTPUT_NAMES)}, "
            f"got {sorted(mapping)}"
        )
    if score_threshold is not None and not (
        math.isfinite(score_threshold) and 0.0 <= score_threshold <= 1.0
    ):
        raise UsageError(f"score_threshold must be in [0, 1], got {score_threshold}")
    in_range = (2, 2)  # dimension 2 of [1, N, 4] / [1, N] holds the content
    tensors = (
        OutputTensor(
            "location", BOXES, mapping["location"], _OUTPUT_DESCRIPTIONS["location"],
            box_index=BOX_ORDERS[box_order], value_range=in_range,
        ),
        OutputTensor(
            "category", CATEGORIES, mapping["category"], _OUTPUT_DESCRIPTIONS["category"],
            labels=True, value_range=in_range,
        ),
        OutputTensor(
            "score", SCORES, mapping["score"], _OUTPUT_DESCRIPTIONS["score"],
            value_range=in_range, score_threshold=score_threshold,
        ),
        OutputTensor(
            "number of detections", COUNT, mapping["number of detections"],
            _OUTPUT_DESCRIPTIONS["number of detections"],
        ),
    )  # fmt: skip
    return MetadataSpec(
        task="object_detector",
        info=_with_default_description(info, _DETECTOR_DESCRIPTION),
        input=ImageInput(tuple(mean), tuple(std)),
        outputs=tensors,
        num_classes=num_classes,
    )


def classifier_metadata(
    info: ModelInfo,
    *,
    num_classes: int,
    mean: Sequence[float] = (0.0,),
    std: Sequence[float] = (1.0,),
    output: str | None = None,
    score_threshold: float | None = None,
) -> MetadataSpec:
    """Metadata of an image classifier (one output ``[1, num_classes]`` of scores).

    Args:
      info: general fields (an empty description gets a default one).
      num_classes: classes (the label file must have as many lines).
      mean: input normalisation mean (raw pixels in: 0; [-1, 1] in: 127.5).
      std: input normalisation std (raw pixels in: 1; [-1, 1] in: 127.5).
      output: the model's signature output name (None: the model's only output).
      score_threshold: recommended score threshold, or None.
    """
    if score_threshold is not None and not math.isfinite(score_threshold):
        raise UsageError(f"score_threshold must be finite, got {score_threshold}")
    tensor = OutputTensor(
        "score", PROBABILITIES, output, _CLASSIFIER_OUTPUT_DESCRIPTION, labels=True,
        score_threshold=score_threshold,
    )  # fmt: skip
    return MetadataSpec(
        task="image_classifier",
        info=_with_default_description(info, _CLASSIFIER_DESCRIPTION),
        input=ImageInput(tuple(mean), tuple(std)),
        outputs=(tensor,),
        num_classes=num_classes,
    )


# --- reading the TFLite model ---------------------------------------------------------


@dataclass(frozen=True)
class _Tensor:
    index: int
    name: str
    dtype: str
    shape: tuple[int, ...]
    scale: float
    zero_point: int


@dataclass(frozen=True)
class _ModelView:
    """What the writer checks: inputs/outputs of subgraph 0 and their signature names."""

    inputs: tuple[_Tensor, ...]
    outputs: tuple[_Tensor, ...]
    output_names: tuple[str | None, ...]  # signature name per subgraph output


def _schema() -> Any:
    # deferred: LiteRT's generated schema module is large; only model reads/writes need it
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def _check_tflite(model_bytes: bytes) -> None:
    if not isinstance(model_bytes, bytes | bytearray | memoryview):
        raise UsageError(f"model must be bytes, got {type(model_bytes).__name__}")
    if len(model_bytes) < 8 or bytes(model_bytes[4:8]) != TFLITE_FILE_IDENTIFIER:
        raise UsageError("not a TFLite model (file identifier TFL3 missing)")


def _model_view(model: Any) -> _ModelView:
    """Inputs, outputs and output signature names of subgraph 0 of a ``ModelT``."""
    if not model.subgraphs or len(model.subgraphs) != 1:
        count = len(model.subgraphs or [])
        raise UsageError(f"metadata needs a model with one subgraph, this one has {count}")
    graph = model.subgraphs[0]

    def tensor(index: int) -> _Tensor:
        t = graph.tensors[index]
        q = t.quantization
        scale = float(q.scale[0]) if q is not None and q.scale is not None and len(q.scale) else 0.0
        zero = (
            int(q.zeroPoint[0])
            if q is not None and q.zeroPoint is not None and len(q.zeroPoint)
            else 0
        )
        name = t.name.decode() if isinstance(t.name, bytes) else str(t.name or "")
        shape = tuple(int(d) for d in (t.shape if t.shape is not None else ()))
        return _Tensor(index, name, _TFLITE_TYPES.get(t.type, f"type{t.type}"), shape, scale, zero)

    signature_names: dict[int, str] = {}
    signatures = [s for s in (model.signatureDefs or []) if s.subgraphIndex == 0]
    signatures.sort(
        key=lambda s: (_text(s.signatureKey) != "serving_default", _text(s.signatureKey))
    )
    if signatures:
        for item in signatures[0].outputs or []:
            signature_names[int(item.tensorIndex)] = _text(item.name)
    inputs = tuple(tensor(int(i)) for i in (graph.inputs if graph.inputs is not None else []))
    outputs = tuple(tensor(int(i)) for i in (graph.outputs if graph.outputs is not None else []))
    return _ModelView(inputs, outputs, tuple(signature_names.get(t.index) for t in outputs))


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


# --- validation -------------------------------------------------------------------------


def _check_labels(labels: Sequence[str], num_classes: int) -> tuple[str, ...]:
    if isinstance(labels, str | bytes):
        raise UsageError("labels must be a sequence of class names, not one string")
    labels = tuple(labels)
    if len(labels) != num_classes:
        raise UsageError(
            f"{len(labels)} labels given for a model of {num_classes} classes "
            "(one label per class, class k = line k)"
        )
    for k, label in enumerate(labels):
        if not isinstance(label, str):
            raise UsageError(f"label {k} is not a string: {label!r}")
        if not label.strip() or label != label.strip():
            raise UsageError(f"label {k} ({label!r}) is empty or has surrounding blanks")
        if any(c in label for c in "\r\n"):
            raise UsageError(f"label {k} ({label!r}) contains a line break")
    repeated = sorted({x for x in labels if labels.count(x) > 1})
    if repeated:
        raise UsageError(f"labels repeat: {repeated}")
    return labels


def _resolve_outputs(spec: MetadataSpec, view: _ModelView) -> list[tuple[OutputTensor, _Tensor]]:
    """The spec's output entries in the order of the model's outputs."""
    if len(view.outputs) != len(spec.outputs):
        raise UsageError(
            f"{spec.task} metadata describes {len(spec.outputs)} outputs, the model has "
            f"{len(view.outputs)} ({_output_list(view)})"
            + ("; only models with NMS inside carry detector metadata"
               if spec.task == "object_detector" else "")
        )  # fmt: skip
    ordered: list[tuple[OutputTensor, _Tensor] | None] = [None] * len(view.outputs)
    for entry in spec.outputs:
        if entry.model_output is None:
            if len(view.outputs) != 1:
                raise UsageError(f"output {entry.name!r} must name the model output it describes")
            position = 0
        else:
            by_signature = [i for i, n in enumerate(view.output_names) if n == entry.model_output]
            by_tensor = [i for i, t in enumerate(view.outputs) if t.name == entry.model_output]
            found = by_signature or by_tensor
            if not found:
                raise UsageError(
                    f"the model has no output {entry.model_output!r} for metadata "
                    f"{entry.name!r} (outputs: {_output_list(view)})"
                )
            position = found[0]
        ordered[position] = (entry, view.outputs[position])
    return [x for x in ordered if x is not None]


def _output_list(view: _ModelView) -> str:
    return ", ".join(
        f"{n or t.name} {t.dtype}{list(t.shape)}"
        for n, t in zip(view.output_names, view.outputs, strict=True)
    )


def _check_model(spec: MetadataSpec, view: _ModelView) -> list[tuple[OutputTensor, _Tensor]]:
    if len(view.inputs) != 1:
        raise UsageError(f"metadata needs a model with one image input, it has {len(view.inputs)}")
    image = view.inputs[0]
    if len(image.shape) != 4 or image.shape[0] != 1 or image.shape[3] != 3:
        raise UsageError(f"the image input must be [1, H, W, 3], got {list(image.shape)}")
    if image.dtype not in ("uint8", "float32"):
        raise UsageError(
            f"the image input is {image.dtype}: MediaPipe Tasks and the Task Library read "
            "only uint8 or float32 image inputs"
        )
    if image.dtype == "uint8" and len(spec.input.mean) == 1 and image.scale > 0.0:
        # The runtime feeds raw pixels q; the model sees scale * (q - zero_point), which must
        # be the normalised value (q - mean) / std of the float model.
        mean, std = spec.input.mean[0], spec.input.std[0]
        if abs(image.scale * std - 1.0) > 1e-2 or abs(image.zero_point - mean) > 1.0:
            raise UsageError(
                f"uint8 input quantization (scale {image.scale:g}, zero point "
                f"{image.zero_point}) does not match the normalisation mean {mean:g} / "
                f"std {std:g}: expected scale {1.0 / std:g} and zero point {mean:g}"
            )
    pairs = _resolve_outputs(spec, view)
    for entry, tensor in pairs:
        where = f"output {entry.model_output or tensor.name!r} ({entry.name})"
        shape = tensor.shape
        if entry.kind == BOXES and (len(shape) != 3 or shape[-1] != 4):
            raise UsageError(f"{where} must be [1, N, 4] boxes, got {list(shape)}")
        if entry.kind in (CATEGORIES, SCORES) and len(shape) != 2:
            raise UsageError(f"{where} must be [1, N], got {list(shape)}")
        if entry.kind == COUNT and len(shape) != 1:
            raise UsageError(f"{where} must be [1], got {list(shape)}")
        if spec.task == "object_detector" and tensor.dtype != "float32":
            raise UsageError(f"{where} is {tensor.dtype}; detector outputs must be float32")
        if entry.kind == PROBABILITIES:
            if len(shape) != 2 or shape[-1] != spec.num_classes:
                raise UsageError(
                    f"{where} must be [1, {spec.num_classes}] (one score per class), "
                    f"got {list(shape)}"
                )
            if tensor.dtype not in ("float32", "uint8"):
                raise UsageError(f"{where} is {tensor.dtype}; scores must be float32 or uint8")
    return pairs


# --- writing the metadata flatbuffer -----------------------------------------------------


class _Writer:
    """Hand-written table builders of metadata_schema.fbs on ``flatbuffers.Builder``."""

    def __init__(self) -> None:
        self.b = flatbuffers.Builder(1024)

    # primitives
    def string(self, value: str | None) -> int | None:
        return None if not value else self.b.CreateString(value)

    def offsets(self, items: Sequence[int]) -> int:
        self.b.StartVector(4, len(items), 4)
        for item in reversed(items):
            self.b.PrependUOffsetTRelative(item)
        return self.b.EndVector()

    def floats(self, values: Sequence[float]) -> int:
        self.b.StartVector(4, len(values), 4)
        for value in reversed(values):
            self.b.PrependFloat32(float(value))
        return self.b.EndVector()

    def uints(self, values: Sequence[int]) -> int:
        self.b.StartVector(4, len(values), 4)
        for value in reversed(values):
            self.b.PrependUint32(int(value))
        return self.b.EndVector()

    def table(self, num_slots: int, fields: Sequence[tuple[int, str, Any]]) -> int:
        """A table: fields are (slot, kind, value), kind offset/uint8/int32/float32; None skips.

        Scalars equal to the schema default (0) are left out, as flatbuffers does.
        """
        b = self.b
        b.StartObject(num_slots)
        for slot, kind, value in fields:
            if value is None:
                continue
            if kind == "offset":
                b.PrependUOffsetTRelativeSlot(slot, value, 0)
            elif kind == "uint8":
                b.PrependUint8Slot(slot, value, 0)
            elif kind == "int32":
                b.PrependInt32Slot(slot, value, 0)
            elif kind == "float32":
                b.PrependFloat32Slot(slot, value, 0.0)
            else:  # pragma: no cover - programming error
                raise ValueError(kind)
        return b.EndObject()

    # tables of the schema (slot numbers = field order in metadata_schema.fbs)
    def associated_file(self, name: str, description: str, file_type: int) -> int:
        n, d = self.string(name), self.string(description)
        # AssociatedFile: name 0, description 1, type 2, locale 3, version 4
        return self.table(5, [(0, "offset", n), (1, "offset", d), (2, "uint8", file_type)])

    def content(self, kind: int, properties: int, value_range: tuple[int, int] | None) -> int:
        range_offset = None
        if value_range is not None:
            # ValueRange: min 0, max 1
            range_offset = self.table(
                2, [(0, "int32", value_range[0]), (1, "int32", value_range[1])]
            )
        # Content: content_properties_type 0, content_properties 1, range 2
        return self.table(
            3, [(0, "uint8", kind), (1, "offset", properties), (2, "offset", range_offset)]
        )

    def process_unit(self, kind: int, options: int) -> int:
        # ProcessUnit: options_type 0, options 1
        return self.table(2, [(0, "uint8", kind), (1, "offset", options)])

    def stats(self, low: Sequence[float], high: Sequence[float]) -> int:
        hi, lo = self.floats(high), self.floats(low)
        # Stats: max 0, min 1
        return self.table(2, [(0, "offset", hi), (1, "offset", lo)])

    def tensor(
        self,
        name: str,
        description: str,
        content: int | None,
        process_units: Sequence[int] = (),
        stats: int | None = None,
        files: Sequence[int] = (),
    ) -> int:
        n, d = self.string(name), self.string(description)
        units = self.offsets(process_units) if process_units else None
        file_vector = self.offsets(files) if files else None
        # TensorMetadata: name 0, description 1, dimension_names 2, content 3,
        # process_units 4, stats 5, associated_files 6
        return self.table(
            7,
            [
                (0, "offset", n),
                (1, "offset", d),
                (3, "offset", content),
                (4, "offset", units),
                (5, "offset", stats),
                (6, "offset", file_vector),
            ],
        )

    def finish(self, root: int) -> bytes:
        self.b.Finish(root, file_identifier=METADATA_FILE_IDENTIFIER)
        return bytes(self.b.Output())


def _input_tensor(w: _Writer, spec: ImageInput, dtype: str) -> int:
    # ImageProperties: color_space 0, default_size 1
    properties = w.table(2, [(0, "uint8", _COLOR_SPACES[spec.color_space])])
    content = w.content(_CONTENT_IMAGE, properties, None)
    mean, std = w.floats(spec.mean), w.floats(spec.std)
    # NormalizationOptions: mean 0, std 1
    normalization = w.table(2, [(0, "offset", mean), (1, "offset", std)])
    unit = w.process_unit(_PROCESS_NORMALIZATION, normalization)
    low, high = spec.stats(dtype)
    stats = w.stats(low, high)
    return w.tensor(spec.name, spec.description, content, [unit], stats)


def _output_tensor(w: _Writer, entry: OutputTensor, dtype: str, labels_file: str) -> int:
    if entry.kind == BOXES:
        index = w.uints(entry.box_index or (0, 1, 2, 3))
        # BoundingBoxProperties: index 0, type 1, coordinate_type 2
        properties = w.table(
            3,
            [(0, "offset", index), (1, "uint8", _BOX_BOUNDARIES), (2, "uint8", _COORDINATES_RATIO)],
        )
        content = w.content(_CONTENT_BOX, properties, entry.value_range)
    else:
        properties = w.table(0, [])  # FeatureProperties: no fields
        content = w.content(_CONTENT_FEATURE, properties, entry.value_range)
    files = []
    if entry.labels:
        file_type = _ASSOCIATED_FILE_TYPES[
            "TENSOR_VALUE_LABELS" if entry.kind == CATEGORIES else "TENSOR_AXIS_LABELS"
        ]
        files.append(w.associated_file(labels_file, _LABELS_DESCRIPTION, file_type))
    units = []
    if entry.score_threshold is not None:
        # ScoreThresholdingOptions: global_score_threshold 0
        options = w.table(1, [(0, "float32", float(entry.score_threshold))])
        units.append(w.process_unit(_PROCESS_SCORE_THRESHOLD, options))
    stats = None
    if entry.kind == PROBABILITIES:
        stats = w.stats((0.0,), (255.0,) if dtype == "uint8" else (1.0,))
    return w.tensor(entry.name, entry.description, content, units, stats, files)


def _min_parser_version(spec: MetadataSpec) -> str:
    # 1.0.0 unless a field added later is used: tensor groups arrived in 1.2.0.
    return "1.2.0" if spec.task == "object_detector" else "1.0.0"


def build_metadata_buffer(
    spec: MetadataSpec, input_dtype: str, outputs: Sequence[tuple[OutputTensor, str]]
) -> bytes:
    """The ``ModelMetadata`` flatbuffer (identifier M001).

    Args:
      spec: the metadata.
      input_dtype: dtype of the model's image input (uint8 or float32).
      outputs: (entry, dtype) in the order of the model's outputs.
    """
    w = _Writer()
    image = _input_tensor(w, spec.input, input_dtype)
    tensors = [_output_tensor(w, entry, dtype, spec.labels_file) for entry, dtype in outputs]
    groups = None
    if spec.task == "object_detector":
        members = [w.string(n) for n in DETECTOR_OUTPUT_NAMES[:3]]
        member_vector = w.offsets(members)
        group_name = w.string(DETECTION_GROUP)
        # TensorGroup: name 0, tensor_names 1
        group = w.table(2, [(0, "offset", group_name), (1, "offset", member_vector)])
        groups = w.offsets([group])
    inputs_vector = w.offsets([image])
    outputs_vector = w.offsets(tensors)
    # SubGraphMetadata: name 0, description 1, input_tensor_metadata 2,
    # output_tensor_metadata 3, associated_files 4, input_process_units 5,
    # output_process_units 6, input_tensor_groups 7, output_tensor_groups 8, custom_metadata 9
    subgraph = w.table(
        10, [(2, "offset", inputs_vector), (3, "offset", outputs_vector), (8, "offset", groups)]
    )
    subgraphs = w.offsets([subgraph])
    info = spec.info
    name, description = w.string(info.name), w.string(info.description)
    version, author, license_ = (
        w.string(info.version),
        w.string(info.author),
        w.string(info.license),
    )
    parser_version = w.string(_min_parser_version(spec))
    # ModelMetadata: name 0, description 1, version 2, subgraph_metadata 3, author 4,
    # license 5, associated_files 6, min_parser_version 7
    root = w.table(
        8,
        [
            (0, "offset", name),
            (1, "offset", description),
            (2, "offset", version),
            (3, "offset", subgraphs),
            (4, "offset", author),
            (5, "offset", license_),
            (7, "offset", parser_version),
        ],
    )
    return w.finish(root)


# --- writing into the model ---------------------------------------------------------------


def _aligned_buffer_type() -> Any:
    schema = _schema()

    class AlignedBufferT(schema.BufferT):
        """A BufferT that packs its data 16-byte aligned (``force_align: 16`` of schema.fbs)."""

        def Pack(self, builder: Any) -> int:  # noqa: N802 - flatbuffers object API
            data = None
            if self.data is not None:
                raw = _as_bytes(self.data)
                builder.StartVector(1, len(raw), 16)
                builder.head = builder.Head() - len(raw)
                builder.Bytes[builder.Head() : builder.Head() + len(raw)] = raw
                data = builder.EndVector(len(raw))
            schema.BufferStart(builder)
            if data is not None:
                schema.BufferAddData(builder, data)
            schema.BufferAddOffset(builder, self.offset)
            schema.BufferAddSize(builder, self.size)
            return schema.BufferEnd(builder)

    return AlignedBufferT


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, np.ndarray):
        return data.astype(np.uint8, copy=False).tobytes()
    return bytes(data)


def _zip_files(files: Mapping[str, bytes], prefix: bytes) -> bytes:
    """``prefix`` followed by an uncompressed zip of ``files`` (offsets from the file start)."""
    out = io.BytesIO()
    out.write(prefix)
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as archive:
        for name in sorted(files):
            entry = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_STORED
            entry.create_system = 3  # unix: the same bytes on every platform
            entry.external_attr = 0o644 << 16
            archive.writestr(entry, files[name])
    return out.getvalue()


def labels_file_text(labels: Sequence[str]) -> str:
    """The packed label file: one label per line (line k = class k), newline-terminated."""
    return "".join(f"{label}\n" for label in labels)


def write_metadata(model_bytes: bytes, spec: MetadataSpec, labels: Sequence[str]) -> bytes:
    """The model with ``spec``'s metadata and the label file packed inside.

    Existing qatflow/TFLite metadata (the ``TFLITE_METADATA`` entry and a packed
    zip) is replaced; every other part of the model is kept as it is.

    Args:
      model_bytes: a TFLite flatbuffer (one subgraph, one image input).
      spec: from :func:`detector_metadata` or :func:`classifier_metadata`.
      labels: class names, class k = ``labels[k]`` (as many as ``spec.num_classes``).

    Returns:
      The new model bytes (deterministic for the same arguments).

    Raises:
      UsageError: the model, spec and labels do not fit together (message says how).
    """
    _check_tflite(model_bytes)
    if not isinstance(spec, MetadataSpec):
        raise UsageError(f"spec must be a MetadataSpec, got {type(spec).__name__}")
    labels = _check_labels(labels, spec.num_classes)
    schema = _schema()
    buffer = bytes(model_bytes)
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(buffer, 0))
    for existing in model.buffers or []:
        if existing.offset and existing.offset > 1:
            raise UsageError(
                "the model keeps buffers outside its flatbuffer (over 2 GB); "
                "metadata cannot be written into it"
            )
    view = _model_view(model)
    pairs = _check_model(spec, view)
    metadata = build_metadata_buffer(
        spec, view.inputs[0].dtype, [(entry, tensor.dtype) for entry, tensor in pairs]
    )
    aligned = _aligned_buffer_type()
    model.buffers = [_rebuffer(b, aligned) for b in (model.buffers or [])]
    metadata_buffer = aligned()
    metadata_buffer.data = metadata
    entries = list(model.metadata or [])
    ours = [m for m in entries if _text(m.name) == METADATA_NAME]
    if ours:
        for m in ours:
            model.buffers[m.buffer] = metadata_buffer
    else:
        model.buffers.append(metadata_buffer)
        entry = schema.MetadataT()
        entry.name = METADATA_NAME
        entry.buffer = len(model.buffers) - 1
        entries.append(entry)
    model.metadata = entries
    builder = flatbuffers.Builder(len(buffer) + len(metadata) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_FILE_IDENTIFIER)
    packed = bytes(builder.Output())
    text = labels_file_text(labels).encode("utf-8")
    return _zip_files({spec.labels_file: text}, packed)


def _rebuffer(buffer: Any, aligned: type) -> Any:
    out = aligned()
    out.data, out.offset, out.size = buffer.data, buffer.offset, buffer.size
    return out


# --- reading -------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputMetadata:
    """The image input as the metadata describes it."""

    name: str
    description: str
    color_space: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    stats_min: tuple[float, ...]
    stats_max: tuple[float, ...]
    dtype: str


@dataclass(frozen=True)
class OutputMetadata:
    """One output as the metadata describes it.

    Attributes:
      name: metadata name (location, category, score, number of detections, ...).
      kind: boxes, categories, scores, count or probabilities (inferred).
      model_output: the model's signature output name of that position (or tensor name).
      position: index in the model's outputs.
      description: description.
      box_index: boxes: positions of left, top, right, bottom.
      box_type: boxes: BOUNDARIES / UPPER_LEFT / CENTER.
      coordinate_type: boxes: RATIO or PIXEL.
      label_file: name of the attached label file, or None.
      label_type: TENSOR_VALUE_LABELS or TENSOR_AXIS_LABELS, or None.
      value_range: content dimension range, or None.
      score_threshold: ScoreThresholdingOptions, or None.
    """

    name: str
    kind: str
    model_output: str
    position: int
    description: str = ""
    box_index: tuple[int, ...] | None = None
    box_type: str | None = None
    coordinate_type: str | None = None
    label_file: str | None = None
    label_type: str | None = None
    value_range: tuple[int, int] | None = None
    score_threshold: float | None = None


@dataclass(frozen=True)
class TFLiteMetadata:
    """What :func:`read_metadata` finds in a model.

    Attributes:
      info: name, description, version, author, license.
      min_parser_version: the metadata's minimum parser version.
      input: the image input.
      outputs: the outputs, in the model's output order.
      labels: the class names from the packed label file (None if no label file).
      associated_files: names of the files packed in the model.
      task: object_detector (outputs with boxes) or image_classifier.
      metadata_bytes: size of the metadata flatbuffer.
    """

    info: ModelInfo
    min_parser_version: str
    input: InputMetadata
    outputs: tuple[OutputMetadata, ...]
    labels: tuple[str, ...] | None
    associated_files: tuple[str, ...] = ()
    task: str = ""
    metadata_bytes: int = 0
    groups: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["labels"] = list(self.labels) if self.labels is not None else None
        return out

    def output(self, name: str) -> OutputMetadata:
        for entry in self.outputs:
            if entry.name == name:
                return entry
        raise KeyError(f"no output metadata {name!r} (have {[o.name for o in self.outputs]})")


class _Table:
    """Read access to one table of a flatbuffer, by slot number (field order of the schema)."""

    def __init__(self, data: bytearray, pos: int) -> None:
        self.tab = Table(data, pos)

    def _offset(self, slot: int) -> int:
        return self.tab.Offset(4 + 2 * slot)

    def string(self, slot: int) -> str | None:
        o = self._offset(slot)
        return self.tab.String(o + self.tab.Pos).decode("utf-8") if o else None

    def scalar(self, slot: int, flags: Any, default: Any) -> Any:
        o = self._offset(slot)
        return self.tab.Get(flags, o + self.tab.Pos) if o else default

    def table(self, slot: int) -> _Table | None:
        o = self._offset(slot)
        return _Table(self.tab.Bytes, self.tab.Indirect(o + self.tab.Pos)) if o else None

    def tables(self, slot: int) -> list[_Table]:
        o = self._offset(slot)
        if not o:
            return []
        start, n = self.tab.Vector(o), self.tab.VectorLen(o)
        return [_Table(self.tab.Bytes, self.tab.Indirect(start + 4 * i)) for i in range(n)]

    def numbers(self, slot: int, flags: Any) -> tuple[Any, ...] | None:
        o = self._offset(slot)
        if not o:
            return None
        start, n = self.tab.Vector(o), self.tab.VectorLen(o)
        return tuple(self.tab.Get(flags, start + flags.bytewidth * i) for i in range(n))

    def strings(self, slot: int) -> list[str]:
        o = self._offset(slot)
        if not o:
            return []
        start, n = self.tab.Vector(o), self.tab.VectorLen(o)
        return [self.tab.String(start + 4 * i).decode("utf-8") for i in range(n)]


def _metadata_buffer(model_bytes: bytes) -> tuple[bytes | None, Any]:
    """(metadata flatbuffer or None, the schema ``Model``)."""
    schema = _schema()
    model = schema.Model.GetRootAs(model_bytes, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if _text(entry.Name()) != METADATA_NAME:
            continue
        buffer = model.Buffers(entry.Buffer())
        if buffer.Offset() > 1:
            return bytes(model_bytes[buffer.Offset() : buffer.Offset() + buffer.Size()]), model
        return buffer.DataAsNumpy().tobytes() if buffer.DataLength() else b"", model
    return None, model


def has_metadata(model_bytes: bytes) -> bool:
    """Whether the model carries TFLite metadata (a ``TFLITE_METADATA`` entry)."""
    _check_tflite(model_bytes)
    return _metadata_buffer(bytes(model_bytes))[0] is not None


def packed_files(model_bytes: bytes) -> dict[str, bytes]:
    """The files packed after the model (name -> content); empty if none."""
    try:
        with zipfile.ZipFile(io.BytesIO(bytes(model_bytes))) as archive:
            return {name: archive.read(name) for name in archive.namelist()}
    except zipfile.BadZipFile:
        return {}


_FILE_TYPE_NAMES = {v: k for k, v in _ASSOCIATED_FILE_TYPES.items()}
_BOX_TYPES = {0: "UNKNOWN", 1: "BOUNDARIES", 2: "UPPER_LEFT", 3: "CENTER"}
_COORDINATE_TYPES = {0: "RATIO", 1: "PIXEL"}
_COLOR_NAMES = {0: "UNKNOWN", 1: "RGB", 2: "GRAYSCALE"}


def _model_io(model: Any) -> tuple[list[tuple[int, str, str]], list[tuple[int, str]]]:
    """[(tensor index, name, dtype)] of inputs and [(tensor index, signature name)] of outputs."""
    graph = model.Subgraphs(0)
    names: dict[int, str] = {}
    best = None
    for i in range(model.SignatureDefsLength()):
        sig = model.SignatureDefs(i)
        if sig.SubgraphIndex() != 0:
            continue
        key = _text(sig.SignatureKey())
        if best is None or key == "serving_default":
            best = sig
    if best is not None:
        for j in range(best.OutputsLength()):
            names[best.Outputs(j).TensorIndex()] = _text(best.Outputs(j).Name())
    inputs = []
    for j in range(graph.InputsLength()):
        t = graph.Tensors(graph.Inputs(j))
        inputs.append(
            (graph.Inputs(j), _text(t.Name()), _TFLITE_TYPES.get(t.Type(), f"type{t.Type()}"))
        )
    outputs = []
    for j in range(graph.OutputsLength()):
        index = graph.Outputs(j)
        outputs.append((index, names.get(index) or _text(graph.Tensors(index).Name())))
    return inputs, outputs


def read_metadata(model_bytes: bytes) -> TFLiteMetadata | None:
    """The metadata of a TFLite model, or None when it carries none.

    Raises:
      UsageError: not a TFLite model.
      DataError: the metadata is there but unreadable (wrong identifier, label file missing).
    """
    _check_tflite(model_bytes)
    data = bytes(model_bytes)
    raw, model = _metadata_buffer(data)
    if raw is None:
        return None
    if len(raw) < 8 or raw[4:8] != METADATA_FILE_IDENTIFIER:
        raise DataError("the model's TFLITE_METADATA buffer is not a metadata flatbuffer (M001)")
    n = flatbuffers.encode.Get(flatbuffers.packer.uoffset, raw, 0)
    root = _Table(bytearray(raw), n)
    n8 = flatbuffers.number_types.Uint8Flags
    info = ModelInfo(
        name=root.string(0) or "?",
        description=root.string(1) or "",
        version=root.string(2) or "",
        author=root.string(4) or "",
        license=root.string(5) or "",
    )
    subgraphs = root.tables(3)
    if not subgraphs:
        raise DataError("the model's metadata has no subgraph metadata")
    subgraph = subgraphs[0]
    model_inputs, model_outputs = _model_io(model)
    files = packed_files(data)

    inputs = subgraph.tables(2)
    input_md = (
        _read_input(inputs[0], model_inputs[0][2] if model_inputs else "") if inputs else None
    )
    outputs, labels = [], None
    for position, tensor in enumerate(subgraph.tables(3)):
        entry, label_file = _read_output(tensor, position, model_outputs, n8)
        outputs.append(entry)
        if label_file is not None and labels is None:
            if label_file not in files:
                raise DataError(f"the metadata names label file {label_file!r}, not packed")
            text = files[label_file].decode("utf-8")
            labels = tuple(line for line in text.split("\n"))
            if labels and labels[-1] == "":
                labels = labels[:-1]
    groups = tuple((g.string(0) or "", tuple(g.strings(1))) for g in subgraph.tables(8))
    if input_md is None:
        raise DataError("the model's metadata does not describe its input")
    task = "object_detector" if any(o.kind == BOXES for o in outputs) else "image_classifier"
    return TFLiteMetadata(
        info=info,
        min_parser_version=root.string(7) or "",
        input=input_md,
        outputs=tuple(outputs),
        labels=labels,
        associated_files=tuple(sorted(files)),
        task=task,
        metadata_bytes=len(raw),
        groups=groups,
    )


def read_labels(model_bytes: bytes) -> tuple[str, ...] | None:
    """The class names packed in a model's metadata, or None (no metadata / no label file)."""
    metadata = read_metadata(model_bytes)
    return metadata.labels if metadata is not None else None


def _read_input(tensor: _Table, dtype: str) -> InputMetadata:
    f32, n8 = flatbuffers.number_types.Float32Flags, flatbuffers.number_types.Uint8Flags
    color = "UNKNOWN"
    content = tensor.table(3)
    if content is not None and content.scalar(0, n8, 0) == _CONTENT_IMAGE:
        properties = content.table(1)
        color = _COLOR_NAMES.get(properties.scalar(0, n8, 0), "UNKNOWN") if properties else color
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    for unit in tensor.tables(4):
        if unit.scalar(0, n8, 0) == _PROCESS_NORMALIZATION:
            options = unit.table(1)
            if options is not None:
                mean = tuple(float(x) for x in options.numbers(0, f32) or ())
                std = tuple(float(x) for x in options.numbers(1, f32) or ())
    stats = tensor.table(5)
    high = tuple(float(x) for x in (stats.numbers(0, f32) or ())) if stats else ()
    low = tuple(float(x) for x in (stats.numbers(1, f32) or ())) if stats else ()
    return InputMetadata(
        name=tensor.string(0) or "",
        description=tensor.string(1) or "",
        color_space=color,
        mean=mean,
        std=std,
        stats_min=low,
        stats_max=high,
        dtype=dtype,
    )


def _read_output(
    tensor: _Table, position: int, model_outputs: list[tuple[int, str]], n8: Any
) -> tuple[OutputMetadata, str | None]:
    u32 = flatbuffers.number_types.Uint32Flags
    i32 = flatbuffers.number_types.Int32Flags
    f32 = flatbuffers.number_types.Float32Flags
    name = tensor.string(0) or ""
    content = tensor.table(3)
    kind, box_index, box_type, coordinates, value_range = SCORES, None, None, None, None
    content_type = content.scalar(0, n8, 0) if content is not None else 0
    if content is not None:
        r = content.table(2)
        if r is not None:
            value_range = (r.scalar(0, i32, 0), r.scalar(1, i32, 0))
    if content_type == _CONTENT_BOX:
        kind = BOXES
        properties = content.table(1)
        if properties is not None:
            index = properties.numbers(0, u32)
            box_index = tuple(int(i) for i in index) if index is not None else None
            box_type = _BOX_TYPES.get(properties.scalar(1, n8, 0), "UNKNOWN")
            coordinates = _COORDINATE_TYPES.get(properties.scalar(2, n8, 0), "RATIO")
    label_file = label_type = None
    for file in tensor.tables(6):
        file_type = _FILE_TYPE_NAMES.get(file.scalar(2, n8, 0))
        if file_type is not None and label_file is None:
            label_file, label_type = file.string(0), file_type
    if kind != BOXES:
        if label_type == "TENSOR_VALUE_LABELS":
            kind = CATEGORIES
        elif label_type == "TENSOR_AXIS_LABELS":
            kind = PROBABILITIES
        elif name == "number of detections":
            kind = COUNT
    threshold = None
    for unit in tensor.tables(4):
        if unit.scalar(0, n8, 0) == _PROCESS_SCORE_THRESHOLD:
            options = unit.table(1)
            threshold = float(options.scalar(0, f32, 0.0)) if options is not None else None
    model_output = model_outputs[position][1] if position < len(model_outputs) else ""
    entry = OutputMetadata(
        name=name,
        kind=kind,
        model_output=model_output,
        position=position,
        description=tensor.string(1) or "",
        box_index=box_index,
        box_type=box_type,
        coordinate_type=coordinates,
        label_file=label_file,
        label_type=label_type,
        value_range=value_range,
        score_threshold=threshold,
    )
    return entry, label_file


# --- helpers ----------------------------------------------------------------------------


def _floats(what: str, values: Any) -> tuple[float, ...]:
    if isinstance(values, int | float):
        values = (values,)
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{what} must be numbers, got {values!r}") from exc
    if not all(math.isfinite(v) for v in out):
        raise UsageError(f"{what} must be finite numbers, got {list(out)}")
    return out


def _with_default_description(info: ModelInfo, default: str) -> ModelInfo:
    if not isinstance(info, ModelInfo):
        raise UsageError(f"info must be a ModelInfo, got {type(info).__name__}")
    if not info.name.strip():
        raise UsageError("metadata needs a model name")
    return ModelInfo(
        name=info.name,
        description=info.description or default,
        version=info.version,
        author=info.author,
        license=info.license,
    )
