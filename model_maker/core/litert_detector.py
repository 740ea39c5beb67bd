"""Run a detector ``.tflite`` file with LiteRT and get boxes in original image pixels.

:class:`TFLiteDetector` loads the model once (``ai_edge_litert`` interpreter),
then maps any RGB ``uint8`` image to :class:`Detections`. Two kinds of model
are understood:

* **4-output detectors** (``TFLite_Detection_PostProcess`` inside): outputs
  are found by the serving signature's names (``boxes``/``classes``/
  ``scores``/``num_detections``, or any names containing ``box``, ``class``,
  ``score`` and ``num``); models without a signature are matched by shape
  (``[1, N, 4]`` boxes, ``[1]`` count) and, for the two ``[1, N]`` tensors, by
  tensor name (``...:1`` classes, ``...:2`` scores, the TF Object Detection API
  convention). Never by output index.
* **raw detectors** (no NMS: ``[1, A, 4]`` box encodings and ``[1, A, C]``
  class logits, or class scores after sigmoid when the output name has
  ``score`` in it and not ``logit``) plus an anchors file: decoding and NMS run
  in TensorFlow with the op's semantics
  (:func:`model_maker.core.postprocess.postprocess_global`).

Pre-processing (the eval pipeline of the trainer): **resize keeping the aspect
ratio, pad at the bottom and right** to the square model input (bilinear,
``scale = size / max(height, width)``), then ``(pixel - mean) / std``
(defaults 0 and 1: the model takes 0..255 pixels and normalises inside).
Quantised inputs (uint8/int8) are fed ``round(real / scale + zero_point)``.
Boxes are mapped back by dividing by ``scale`` and clipped to the image.
"""

from __future__ import annotations

import io
import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from model_maker.core.data import fileio
from model_maker.core.detection_postprocess import NMSOptions
from model_maker.core.errors import DataError


@dataclass(frozen=True)
class Detections:
    """Detections of one image, in pixels of the original image.

    Attributes:
      boxes_yxyx: float32 ``[K, 4]`` ``(ymin, xmin, ymax, xmax)`` pixels.
      classes: int32 ``[K]`` 0-based class ids (label id = class + 1).
      scores: float32 ``[K]`` descending.
    """

    boxes_yxyx: np.ndarray
    classes: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def to_coco(self, image_id: Any, label_offset: int = 1) -> list[dict[str, Any]]:
        """COCO result dicts (``bbox`` ``[x, y, w, h]`` pixels; category = class + offset)."""
        out = []
        for (y0, x0, y1, x1), cls, score in zip(
            self.boxes_yxyx.tolist(), self.classes.tolist(), self.scores.tolist(), strict=True
        ):
            out.append(
                {
                    "image_id": image_id,
                    "category_id": int(cls) + label_offset,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "score": float(score),
                }
            )
        return out


@dataclass(frozen=True)
class Latency:
    """Wall-clock latency of repeated invocations.

    Attributes:
      median_ms: median in milliseconds.
      p90_ms: 90th percentile in milliseconds.
      runs: timed invocations (after warm-up).
      num_threads: interpreter threads.
    """

    median_ms: float
    p90_ms: float
    runs: int
    num_threads: int = 1


def measure_latency(
    fn: Callable[[], Any], runs: int = 20, warmup: int = 2, num_threads: int = 1
) -> Latency:
    """Median and p90 of ``runs`` calls of ``fn`` after ``warmup`` untimed calls."""
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    times.sort()
    p90 = times[min(len(times) - 1, int(np.ceil(0.9 * len(times))) - 1)]
    return Latency(float(statistics.median(times)), float(p90), runs, num_threads)


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the model input.

    Attributes:
      mean: subtracted from 0..255 pixels (scalar or per channel).
      std: divisor after the mean.
      pad_value: pixel value (before normalisation) of the bottom/right padding.
    """

    mean: Sequence[float] | float = 0.0
    std: Sequence[float] | float = 1.0
    pad_value: float = 0.0


def resize_and_pad(image: np.ndarray, height: int, width: int, pad_value: float = 0.0):
    """Resize ``image`` keeping aspect ratio into ``height x width``, padding bottom/right.

    Returns:
      (float32 ``[height, width, 3]`` pixels, scale) where ``model_px = image_px * scale``.
    """
    # deferred: TensorFlow takes seconds to import; only this path needs it
    import tensorflow as tf

    h, w = image.shape[:2]
    scale = min(height / h, width / w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    resized = tf.image.resize(tf.convert_to_tensor(image, tf.float32), [new_h, new_w])
    out = np.full((height, width, 3), pad_value, np.float32)
    out[:new_h, :new_w] = resized.numpy()
    return out, scale


def to_original_pixels(
    found: Detections, input_hw: tuple[int, int], scale: float, image_hw: tuple[int, int]
) -> Detections:
    """Boxes normalised to a resize-and-pad model input -> pixels of the original image, clipped."""
    size = np.array([input_hw[0], input_hw[1]] * 2, np.float32)
    h, w = image_hw
    boxes = np.clip(found.boxes_yxyx * size / scale, 0.0, np.array([h, w, h, w], np.float32))
    return Detections(boxes.astype(np.float32), found.classes, found.scores)


def load_anchors(path: str | os.PathLike) -> np.ndarray:
    """Anchors ``[A, 4]`` ``(yc, xc, h, w)`` normalised from ``.npy`` or a text table.

    ``path`` may be a URI of any Apache Beam filesystem (gs://, s3://, ...).
    """
    path = os.fspath(path)
    source: Any = path
    if fileio.is_remote(path):
        source = io.BytesIO(fileio.read_bytes(path))
    anchors = np.load(source) if path.endswith(".npy") else np.loadtxt(source, delimiter=",")
    anchors = np.asarray(anchors, np.float32).reshape(-1, 4)
    return anchors


@dataclass
class _Outputs:
    """Tensor indices of the outputs of either kind of detector."""

    boxes: int | None = None
    classes: int | None = None
    scores: int | None = None
    num: int | None = None
    encodings: int | None = None
    class_scores: int | None = None
    scores_are_logits: bool = True
    ambiguous: list[int] = field(default_factory=list)

    @property
    def with_nms(self) -> bool:
        return self.boxes is not None


def _pick(names: Mapping[str, int], *needles: str) -> int | None:
    for name, index in names.items():
        low = name.lower()
        if any(n in low for n in needles):
            return index
    return None


class TFLiteDetector:
    """A detector ``.tflite`` file loaded once into a LiteRT interpreter.

    Args:
      path: the ``.tflite`` file (or ``model_content`` bytes).
      num_threads: interpreter threads (1 for latency figures).
      preprocessing: mean/std/padding (see module docstring).
      anchors: raw (no-NMS) models only: anchors ``[A, 4]`` or the path of an anchors file.
      nms: raw models: detections kept after NMS and the thresholds.
      model_content: the flatbuffer bytes instead of ``path``.
    """

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        num_threads: int = 1,
        *,
        preprocessing: Preprocessing = Preprocessing(),
        anchors: np.ndarray | str | os.PathLike | None = None,
        nms: NMSOptions = NMSOptions(),
        model_content: bytes | None = None,
    ) -> None:
        # deferred: LiteRT loads only where a model is run or inspected
        from ai_edge_litert.interpreter import Interpreter

        if (path is None) == (model_content is None):
            raise ValueError("give exactly one of path and model_content")
        self.path = os.fspath(path) if path is not None else None
        if self.path is not None and fileio.is_remote(self.path):
            # The interpreter opens local files only; an artifact on gs:// is read first.
            model_content = fileio.read_bytes(self.path)
        self.num_threads = num_threads
        self.preprocessing = preprocessing
        try:
            if model_content is not None:
                self._interpreter = Interpreter(
                    model_content=model_content, num_threads=num_threads
                )
            else:
                self._interpreter = Interpreter(model_path=self.path, num_threads=num_threads)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise DataError(f"cannot load TFLite model {self.path or '<bytes>'}: {exc}") from None
        self._input = self._find_input()
        self._outputs = self._find_outputs()
        self.nms = nms
        self._anchors = None
        if not self._outputs.with_nms:
            if anchors is None:
                raise DataError(
                    f"{self.path or 'model'} has raw outputs (no detection post-processing op); "
                    "give the anchors file"
                )
            self._anchors = (
                load_anchors(anchors) if not isinstance(anchors, np.ndarray) else anchors
            )
        shape = self._input["shape"]
        self.input_height, self.input_width = int(shape[1]), int(shape[2])

    # --- model inspection ---------------------------------------------------

    def _signature(self) -> tuple[dict[str, dict], dict[str, dict]] | None:
        signatures = self._interpreter.get_signature_list()
        if not signatures:
            return None
        key = "serving_default" if "serving_default" in signatures else sorted(signatures)[0]
        runner = self._interpreter.get_signature_runner(key)
        return runner.get_input_details(), runner.get_output_details()

    def _find_input(self) -> dict[str, Any]:
        details = self._interpreter.get_input_details()
        images = [d for d in details if len(d["shape"]) == 4 and d["shape"][-1] == 3]
        if len(images) != 1:
            raise DataError(f"expected one [1, H, W, 3] image input, got {len(details)} inputs")
        return images[0]

    def _find_outputs(self) -> _Outputs:
        signature = self._signature()
        if signature is not None:
            by_name = {name: d["index"] for name, d in signature[1].items()}
        else:
            by_name = {d["name"]: d["index"] for d in self._interpreter.get_output_details()}
        shapes = {d["index"]: tuple(d["shape"]) for d in self._interpreter.get_output_details()}
        out = _Outputs()
        if len(by_name) >= 4:
            out.boxes = _pick(by_name, "box")
            out.classes = _pick(by_name, "class")
            out.scores = _pick(by_name, "score")
            out.num = _pick(by_name, "num")
            if None in (out.boxes, out.classes, out.scores, out.num):
                out = self._outputs_by_shape(by_name, shapes)
            return out
        if len(by_name) == 2:
            for name, index in by_name.items():
                shape = shapes[index]
                if len(shape) == 3 and shape[-1] == 4 and out.encodings is None:
                    out.encodings = index
                else:
                    out.class_scores = index
                    low = name.lower()
                    out.scores_are_logits = "logit" in low or "score" not in low
            if out.encodings is not None and out.class_scores is not None:
                return out
        raise DataError(
            "cannot identify the detector outputs (want 4 outputs boxes/classes/scores/"
            f"num_detections or 2 raw outputs), got {sorted(by_name)}"
        )

    @staticmethod
    def _outputs_by_shape(by_name: Mapping[str, int], shapes: Mapping[int, tuple]) -> _Outputs:
        out = _Outputs()
        pairs = []
        for name, index in by_name.items():
            shape = shapes[index]
            if len(shape) == 3 and shape[-1] == 4:
                out.boxes = index
            elif len(shape) == 1:
                out.num = index
            elif len(shape) == 2:
                pairs.append((name, index))
        if out.boxes is None or out.num is None or len(pairs) != 2:
            raise DataError(f"cannot identify the detector outputs {sorted(by_name)} by shape")
        suffixes = {name.rsplit(":", 1)[-1]: index for name, index in pairs}
        if set(suffixes) == {"1", "2"}:
            out.classes, out.scores = suffixes["1"], suffixes["2"]
        else:
            # Decided per call from the values (classes integral, scores in 0..1 sorted).
            out.ambiguous = [index for _, index in pairs]
        return out

    @property
    def with_nms(self) -> bool:
        """True when the model has the post-processing op (4 outputs)."""
        return self._outputs.with_nms

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self._input["dtype"])

    # --- inference ----------------------------------------------------------

    def _to_input(self, pixels: np.ndarray) -> np.ndarray:
        p = self.preprocessing
        real = (pixels - np.asarray(p.mean, np.float32)) / np.asarray(p.std, np.float32)
        dtype = self.input_dtype
        if dtype == np.float32:
            return real[None].astype(np.float32)
        scale, zero_point = self._input["quantization"]
        if not scale:
            quantized = real
        else:
            quantized = np.round(real / scale + zero_point)
        info = np.iinfo(dtype)
        return np.clip(quantized, info.min, info.max).astype(dtype)[None]

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """The model input ``[1, H, W, 3]`` of an RGB image, and the resize scale."""
        image = np.asarray(image)
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        if image.ndim != 3 or image.shape[-1] not in (3, 4):
            raise DataError(f"expected an RGB image [h, w, 3], got shape {image.shape}")
        pixels, scale = resize_and_pad(
            image[..., :3], self.input_height, self.input_width, self.preprocessing.pad_value
        )
        return self._to_input(pixels), scale

    def invoke(self, model_input: np.ndarray) -> dict[str, np.ndarray]:
        """Run the interpreter on a prepared input; raw outputs by role."""
        self._interpreter.set_tensor(self._input["index"], model_input)
        self._interpreter.invoke()
        get = self._interpreter.get_tensor
        o = self._outputs
        if not o.with_nms:
            return {"box_encodings": get(o.encodings), "class_scores": get(o.class_scores)}
        result = {"boxes": get(o.boxes), "num_detections": get(o.num)}
        if o.ambiguous:
            a, b = (get(i) for i in o.ambiguous)
            n = int(result["num_detections"].reshape(-1)[0])
            a_int = np.all(np.equal(np.mod(a.reshape(-1)[:n], 1), 0))
            classes, scores = (
                (a, b) if a_int and not np.all(np.mod(b.reshape(-1)[:n], 1) == 0) else (b, a)
            )
            result.update(classes=classes, scores=scores)
        else:
            result.update(classes=get(o.classes), scores=get(o.scores))
        return result

    def detect_normalized(self, model_input: np.ndarray) -> Detections:
        """Detections with boxes normalised to the model input (0..1)."""
        raw = self.invoke(model_input)
        if not self.with_nms:
            raw = self._postprocess_raw(raw["box_encodings"], raw["class_scores"])
        n = int(raw["num_detections"].reshape(-1)[0])
        return Detections(
            raw["boxes"][0, :n].astype(np.float32),
            raw["classes"][0, :n].astype(np.int32),
            raw["scores"][0, :n].astype(np.float32),
        )

    def _postprocess_raw(self, encodings: np.ndarray, class_out: np.ndarray) -> dict:
        from model_maker.core.postprocess import postprocess_global  # deferred: imports TF

        class_out = class_out.astype(np.float32)
        if not self._outputs.scores_are_logits:
            p = np.clip(class_out, 1e-7, 1.0 - 1e-7)
            class_out = np.log(p / (1.0 - p))
        a = self._anchors
        anchors_yxyx = np.stack(
            [
                a[:, 0] - a[:, 2] / 2,
                a[:, 1] - a[:, 3] / 2,
                a[:, 0] + a[:, 2] / 2,
                a[:, 1] + a[:, 3] / 2,
            ],
            axis=1,
        )
        boxes, classes, scores, num = postprocess_global(
            class_out,
            encodings.astype(np.float32),
            anchors_yxyx,
            image_size=1,
            nms=self.nms,
        )
        return {
            "boxes": boxes.numpy(),
            "classes": classes.numpy(),
            "scores": scores.numpy(),
            "num_detections": num.numpy(),
        }

    def detect(self, image: np.ndarray) -> Detections:
        """Detections of an RGB ``uint8`` image ``[h, w, 3]``, boxes in its pixels."""
        model_input, scale = self.preprocess(image)
        found = self.detect_normalized(model_input)
        return to_original_pixels(
            found, (self.input_height, self.input_width), scale, np.asarray(image).shape[:2]
        )

    def latency(self, runs: int = 20, warmup: int = 2) -> Latency:
        """Interpreter latency on a mid-grey input (pre/post-processing excluded)."""
        grey = np.full((self.input_height, self.input_width, 3), 128.0, np.float32)
        model_input = self._to_input(grey)
        return measure_latency(lambda: self.invoke(model_input), runs, warmup, self.num_threads)


@dataclass(frozen=True)
class TFLiteDetectorFactory:
    """A picklable recipe for a :class:`TFLiteDetector` (what a Beam worker loads once).

    Attributes:
      path: the ``.tflite`` file.
      num_threads: interpreter threads.
      preprocessing: mean/std/padding.
      anchors_file: anchors of raw (no-NMS) models.
      nms: raw models: detections kept and the thresholds.
    """

    path: str
    num_threads: int = 1
    preprocessing: Preprocessing = Preprocessing()
    anchors_file: str | None = None
    nms: NMSOptions = NMSOptions()

    def __call__(self) -> TFLiteDetector:
        return TFLiteDetector(
            self.path,
            self.num_threads,
            preprocessing=self.preprocessing,
            anchors=self.anchors_file,
            nms=self.nms,
        )
