"""Custom TFX artifact types of qatflow, and the folder layouts they promise.

``TFLiteModel`` (written by the TFLiteConverter, read by the Evaluator and the
Pusher) is one folder::

    <uri>/<variant>.tflite        one per variant: float32, float16, dynamic_range,
                                  ptq_int8, qat_int8
    <uri>/<variant>.anchors.npy   raw variants only (with_nms false): float32
                                  [A, 4] anchors (yc, xc, h, w) normalised
    <uri>/labels.txt              class names, one per line, line k = class id k-1
                                  (0-based model class k-1 = label_map.json id k)
    <uri>/manifest.json           {"variants": [{
                                     "variant": "qat_int8",
                                     "file": "qat_int8.tflite",
                                     "bytes": 1234567,
                                     "input": {"name": "images", "shape": [1, 320, 320, 3],
                                               "dtype": "uint8", ...},
                                     "outputs": ["boxes", "classes", "scores",
                                                 "num_detections"],
                                     "with_nms": true,
                                     "anchors_file": "qat_int8.anchors.npy"  # raw only
                                   }, ...]}

Models take raw RGB pixels 0..255 (the model normalises); an optional
``"input": {"mean": ..., "std": ...}`` says otherwise. Outputs are found by
these signature names (or by shape), never by index.

The Evaluator's ``ModelEvaluation`` folder holds ``metrics.json`` (see
:func:`model_maker.core.evaluation.metrics_document`), ``report.md``,
``report.html`` and ``blessing.json``; its ``ModelBlessing`` has the custom
property ``blessed`` (1/0) as TFX's own Evaluator sets it, plus a
``BLESSED``/``NOT_BLESSED`` marker file.
"""

from __future__ import annotations

from tfx.types.artifact import Artifact


class TFLiteModel(Artifact):
    """A folder of TFLite variants with labels.txt and manifest.json (layout above)."""

    # Its import path (``components/__init__.py`` exports it): TFX's Kubeflow V2
    # container entrypoint imports a custom artifact class by its type name, which the
    # compiler also requires to read ``<namespace>.<Class>`` (one dot).
    TYPE_NAME = "components.TFLiteModel"
