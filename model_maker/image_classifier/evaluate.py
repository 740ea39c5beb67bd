"""Classification metrics, and the evaluation of a TFLite classifier through LiteRT.

:func:`classification_metrics` is pure numpy (scores in, metrics out) so the
Keras path and the TFLite path compute the same numbers the same way:

* ``top1``: fraction of images whose highest score is the label (ties: the
  lowest class index wins, as ``argmax``);
* ``top<k>`` (only when there are at least ``k`` classes): fraction whose
  label is among the ``k`` highest scores, ranked by score then by class
  index, so exactly ``k`` classes are "in" even when scores tie (int8
  probabilities are multiples of 1/256 and tie often; counting every tied
  class as in would inflate top-5 of the quantized models);
* ``per_class_accuracy``: recall of each class (None for a class without images);
* ``confusion_matrix``: ``[C][C]`` counts, rows = true class, columns = predicted;
* ``macro_f1``: mean F1 over the classes present in the labels or the
  predictions (a class absent from both carries no information); F1 of a
  class is 0 when its precision + recall is 0;
* ``num_images``.

:func:`evaluate_tflite` runs a ``.tflite`` classifier (the
:mod:`~model_maker.image_classifier.export` layout: input ``images``, output
``probabilities``, looked up by signature name) over images prepared as the
dataloader's evaluation pipeline prepares them (bilinear resize to the
model's input size, clipped to 0..255) and quantized to the input's integer
type with its scale and zero point (round to nearest: for a uint8 input of
scale 1 / zero point 0 that is the rounded pixel).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np

from model_maker.core.data import fileio
from model_maker.core.errors import UsageError
from model_maker.core.litert_detector import Latency, measure_latency

#: Output the exported classifiers carry (softmax probabilities).
OUTPUT_NAME = "probabilities"


def classification_metrics(
    true_ids: Any, scores: Any, num_classes: int, k: int = 5
) -> dict[str, Any]:
    """Top-1, top-k, per-class accuracy, confusion matrix and macro-F1 (see the module doc).

    Args:
      true_ids: ``[N]`` 0-based true class indices.
      scores: ``[N, C]`` scores (logits or probabilities: only their order matters).
      num_classes: C.
      k: the top-k reported beside top-1 (key ``top<k>``), when C >= k.

    Returns:
      A JSON-ready dict: ``num_images``, ``top1``, ``top<k>`` (C >= k only),
      ``per_class_accuracy`` (C entries, None for classes without images),
      ``per_class_count`` (images per true class), ``per_class_f1``,
      ``confusion_matrix`` (rows = true class), ``macro_f1``.

    Raises:
      UsageError: no images, shapes that do not match, labels out of range.
    """
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 1:
        raise UsageError(f"num_classes must be a positive integer, got {num_classes!r}")
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise UsageError(f"k must be a positive integer, got {k!r}")
    num_classes, k = int(num_classes), int(k)
    true = np.asarray(true_ids).reshape(-1)
    scores = np.asarray(scores, np.float64)
    if true.size == 0:
        raise UsageError("classification_metrics: no images")
    if scores.ndim != 2 or scores.shape != (true.size, num_classes):
        raise UsageError(
            f"scores must be [N, C] = [{true.size}, {num_classes}], got {list(scores.shape)}"
        )
    if not np.issubdtype(true.dtype, np.integer):
        if not np.all(np.equal(np.mod(true, 1), 0)):
            raise UsageError("true_ids must be integer class indices")
    true = true.astype(np.int64)
    if true.min() < 0 or true.max() >= num_classes:
        raise UsageError(
            f"true class ids must be in 0..{num_classes - 1}, got {true.min()}..{true.max()}"
        )
    n = true.size
    predicted = np.argmax(scores, axis=1)
    out: dict[str, Any] = {"num_images": int(n), "top1": float(np.mean(predicted == true))}
    if num_classes >= k:
        # rank of the label = classes ranked before it (higher score, or equal score and lower id)
        label_scores = scores[np.arange(n), true][:, None]
        ids = np.arange(num_classes)[None, :]
        before = (scores > label_scores) | ((scores == label_scores) & (ids < true[:, None]))
        out[f"top{k}"] = float(np.mean(before.sum(axis=1) < k))
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (true, predicted), 1)
    hits = np.diag(confusion).astype(np.float64)
    per_true = confusion.sum(axis=1)
    per_predicted = confusion.sum(axis=0)
    accuracy = [float(hits[c] / per_true[c]) if per_true[c] else None for c in range(num_classes)]
    f1 = []
    for c in range(num_classes):
        precision = hits[c] / per_predicted[c] if per_predicted[c] else 0.0
        recall = hits[c] / per_true[c] if per_true[c] else 0.0
        total = precision + recall
        f1.append(float(2 * precision * recall / total) if total else 0.0)
    present = [c for c in range(num_classes) if per_true[c] or per_predicted[c]]
    out["per_class_accuracy"] = accuracy
    out["per_class_count"] = [int(x) for x in per_true]
    out["per_class_f1"] = f1
    out["confusion_matrix"] = confusion.tolist()
    out["macro_f1"] = float(np.mean([f1[c] for c in present]))
    return out


# --- TFLite -----------------------------------------------------------------------------


def _model_bytes(tflite_path_or_bytes: Any) -> bytes:
    if isinstance(tflite_path_or_bytes, bytes | bytearray | memoryview):
        return bytes(tflite_path_or_bytes)
    return fileio.read_bytes(tflite_path_or_bytes)


def _numpy(value: Any) -> np.ndarray:
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value)


def _batches(data: Any) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(images [B, H, W, 3], labels [B])`` from a dataset, an ``(images, labels)`` pair
    of arrays, or an iterable of ``(image(s), label(s))`` pairs."""
    if isinstance(data, tuple) and len(data) == 2 and not hasattr(data, "element_spec"):
        pairs: Any = [data]
    else:
        pairs = data
    for item in pairs:
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise UsageError("each element must be an (images, labels) pair")
        images, labels = _numpy(item[0]), _numpy(item[1]).reshape(-1)
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[-1] != 3:
            raise UsageError(f"images must be [H, W, 3] or [B, H, W, 3], got {list(images.shape)}")
        if images.shape[0] != labels.size:
            raise UsageError(f"{images.shape[0]} images but {labels.size} labels in one element")
        yield images, labels


def prepare_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``[H, W, 3]`` float32 pixels 0..255 at the model's size: the evaluation pipeline's
    bilinear resize (aspect ratio not kept) and clip, done only when the size differs."""
    image = np.asarray(image, np.float32)
    if image.shape[:2] != (height, width):
        # deferred: TensorFlow takes seconds to import; only images of another size need it
        import tensorflow as tf

        image = tf.image.resize(image, [height, width], method="bilinear").numpy()
    return np.clip(image, 0.0, 255.0)


def quantize_input(image: np.ndarray, dtype: str, scale: float, zero_point: int) -> np.ndarray:
    """Pixels as the input tensor takes them: float32 as is; integer types rounded to the
    nearest step of ``scale`` from ``zero_point`` and clipped to the type's range."""
    if dtype == "float32":
        return image.astype(np.float32)
    info = np.iinfo(np.dtype(dtype))
    scale = scale or 1.0
    q = np.rint(image / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


class _Runner:
    """A LiteRT signature runner of a classifier: one image in, its probabilities out."""

    def __init__(self, model_content: bytes, num_threads: int | None = None) -> None:
        # deferred: LiteRT loads only where a model is run
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_content=model_content, num_threads=num_threads)
        signatures = interpreter.get_signature_list()
        if not signatures:
            raise UsageError("the TFLite model has no signature (export it with export_tflite)")
        key = "serving_default" if "serving_default" in signatures else sorted(signatures)[0]
        self.runner = interpreter.get_signature_runner(key)
        inputs = self.runner.get_input_details()
        outputs = self.runner.get_output_details()
        if len(inputs) != 1:
            raise UsageError(f"a classifier has one image input, this model has {sorted(inputs)}")
        self.input_name, detail = next(iter(inputs.items()))
        shape = [int(d) for d in detail["shape"]]
        if len(shape) != 4 or shape[0] != 1 or shape[3] != 3:
            raise UsageError(f"the image input must be [1, H, W, 3], got {shape}")
        self.height, self.width = shape[1], shape[2]
        self.input_dtype = np.dtype(detail["dtype"]).name
        self.input_scale, self.input_zero_point = detail.get("quantization", (0.0, 0))
        if OUTPUT_NAME in outputs:
            self.output_name = OUTPUT_NAME
        elif len(outputs) == 1:
            self.output_name = next(iter(outputs))
        else:
            raise UsageError(f"no output {OUTPUT_NAME!r} among {sorted(outputs)}")
        out = outputs[self.output_name]
        self.num_classes = int(out["shape"][-1])
        self.output_dtype = np.dtype(out["dtype"]).name
        self.output_scale, self.output_zero_point = out.get("quantization", (0.0, 0))

    def feed(self, image: np.ndarray) -> np.ndarray:
        """The ``[1, H, W, 3]`` input tensor for an image of pixels 0..255."""
        pixels = prepare_image(image, self.height, self.width)
        return quantize_input(
            pixels, self.input_dtype, float(self.input_scale), int(self.input_zero_point)
        )[None]

    def invoke(self, feed: np.ndarray) -> Any:
        """The raw output tensor for a prepared input (:meth:`feed`)."""
        return self.runner(**{self.input_name: feed})[self.output_name]

    def __call__(self, image: np.ndarray) -> np.ndarray:
        result = self.invoke(self.feed(image))
        scores = np.asarray(result).reshape(-1)
        if self.output_dtype != "float32" and self.output_scale:
            scores = (scores.astype(np.float64) - self.output_zero_point) * self.output_scale
        return scores.astype(np.float64)


def predict_tflite(tflite_path_or_bytes: Any, images: Any) -> np.ndarray:
    """``[N, C]`` probabilities of a TFLite classifier for ``[N, H, W, 3]`` pixels 0..255."""
    runner = _Runner(_model_bytes(tflite_path_or_bytes))
    return np.stack([runner(image) for image in _numpy(images)])


@dataclasses.dataclass(frozen=True)
class TFLiteOutputs:
    """What a classifier file gave on a dataset.

    Attributes:
      labels: true class indices [N], in data order.
      probabilities: the file's outputs [N, C].
      input_dtype: numpy dtype name of the file's image input.
    """

    labels: np.ndarray
    probabilities: np.ndarray
    input_dtype: str


def tflite_outputs(
    tflite_path_or_bytes: Any, dataset_or_images_and_labels: Any, *, num_classes: int
) -> TFLiteOutputs:
    """Run a TFLite classifier over the data (one interpreter, one image per call).

    Args: as :func:`evaluate_tflite`.

    Raises:
      UsageError: the model is not a classifier of C classes, or the data is malformed.
    """
    runner = _Runner(_model_bytes(tflite_path_or_bytes))
    if runner.num_classes != num_classes:
        raise UsageError(f"the model has {runner.num_classes} classes, expected {num_classes}")
    true: list[int] = []
    scores: list[np.ndarray] = []
    for images, labels in _batches(dataset_or_images_and_labels):
        for image, label in zip(images, labels, strict=True):
            scores.append(runner(image))
            true.append(int(label))
    if not true:
        raise UsageError("evaluate_tflite: the data holds no images")
    return TFLiteOutputs(np.asarray(true), np.stack(scores), runner.input_dtype)


def evaluate_tflite(
    tflite_path_or_bytes: Any,
    dataset_or_images_and_labels: Any,
    *,
    num_classes: int,
    k: int = 5,
) -> dict[str, Any]:
    """Metrics of a TFLite classifier through the LiteRT interpreter (one image per call).

    Args:
      tflite_path_or_bytes: the ``.tflite`` (path, gfile URL, or its bytes).
      dataset_or_images_and_labels: a ``tf.data.Dataset`` of ``(images, labels)``
        (batched or not, e.g. the dataloader's evaluation batches), a pair of
        arrays ``(images [N, H, W, 3], labels [N])``, or an iterable of such
        pairs. Images are float pixels 0..255 (or uint8); labels 0-based.
      num_classes: C (must equal the model's output size).
      k: the top-k beside top-1.

    Returns:
      :func:`classification_metrics` of the probabilities, plus ``input_dtype``.

    Raises:
      UsageError: the model is not a classifier of C classes, or the data is malformed.
    """
    outputs = tflite_outputs(
        tflite_path_or_bytes, dataset_or_images_and_labels, num_classes=num_classes
    )
    out = classification_metrics(outputs.labels, outputs.probabilities, num_classes, k)
    out["input_dtype"] = outputs.input_dtype
    return out


def tflite_latency(
    tflite_path_or_bytes: Any, runs: int = 20, warmup: int = 2, num_threads: int = 1
) -> Latency:
    """Median and p90 milliseconds of one interpreter call (input prepared beforehand)."""
    runner = _Runner(_model_bytes(tflite_path_or_bytes), num_threads=num_threads)
    feed = runner.feed(np.zeros((runner.height, runner.width, 3), np.float32))
    return measure_latency(lambda: runner.invoke(feed), runs, warmup, num_threads)
