"""Thin TFX components over model_maker.

``TFLiteModel`` is exported here because its type name is its import path:
TFX's Kubeflow V2 container entrypoint imports a custom artifact class by the
schema title of the compiled IR, which must read ``<namespace>.<Class>``.
"""

from components.artifacts import TFLiteModel

__all__ = ["TFLiteModel"]
