"""Architecture hyper-parameters of EfficientDet-Lite0..4.

The numbers follow google/automl (efficientdet/hparams_config.py and
backbone/efficientnet_lite_builder.py), see ``shared/NOTES-MODEL.md``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from model_maker.core.hparams import HParamsError, check_keys, suggest


@dataclass(frozen=True)
class EfficientDetLiteConfig:
    """Architecture of one EfficientDet-Lite model.

    Attributes:
      model_name: canonical name, ``efficientdet-lite0`` .. ``efficientdet-lite4``.
      backbone_name: ``efficientnet-lite0`` .. ``efficientnet-lite4``.
      image_size: square input size in pixels.
      fpn_num_filters: channels of every BiFPN level and of the heads.
      fpn_cell_repeats: number of stacked BiFPN cells.
      box_class_repeats: separable conv layers in each head before the prediction conv.
      anchor_scale: base anchor size in units of the level's stride.
      min_level: finest feature level (stride 2**min_level).
      max_level: coarsest feature level.
      num_scales: anchor scales per octave (2**(i/num_scales)).
      aspect_ratios: anchor aspect ratios (width/height).
      width_coefficient: backbone channel multiplier.
      depth_coefficient: backbone block-repeat multiplier.
      depth_divisor: backbone channels are rounded to a multiple of this.
      bn_momentum: batch-norm moving-average momentum.
      bn_epsilon: batch-norm epsilon.
      mean_rgb: pixel mean subtracted inside the model.
      stddev_rgb: pixel scale divided inside the model.
    """

    model_name: str
    backbone_name: str
    image_size: int
    fpn_num_filters: int
    fpn_cell_repeats: int
    box_class_repeats: int
    anchor_scale: float
    min_level: int = 3
    max_level: int = 7
    num_scales: int = 3
    aspect_ratios: tuple[float, ...] = (1.0, 2.0, 0.5)
    width_coefficient: float = 1.0
    depth_coefficient: float = 1.0
    depth_divisor: int = 8
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3
    mean_rgb: float = 127.0
    stddev_rgb: float = 128.0

    @property
    def num_anchors_per_location(self) -> int:
        """Anchors at every position of every level (scales x aspect ratios)."""
        return self.num_scales * len(self.aspect_ratios)

    @property
    def levels(self) -> tuple[int, ...]:
        """Feature levels min_level..max_level."""
        return tuple(range(self.min_level, self.max_level + 1))

    def replace(self, **overrides: Any) -> EfficientDetLiteConfig:
        """A copy with ``overrides`` applied and validated (unknown keys: ``HParamsError``)."""
        fields = {f.name: None for f in dataclasses.fields(self)}
        check_keys(overrides, fields, where=f"{self.model_name} config")
        return _validated(dataclasses.replace(self, **_coerce(overrides)))

    def as_dict(self) -> dict[str, Any]:
        """Plain data (lists instead of tuples), for JSON/YAML."""
        out = dataclasses.asdict(self)
        out["aspect_ratios"] = list(self.aspect_ratios)
        return out


# name: (backbone, image, fpn filters, fpn repeats, head repeats, anchor scale, width, depth)
_MODELS: dict[str, tuple[str, int, int, int, int, float, float, float]] = {
    "efficientdet-lite0": ("efficientnet-lite0", 320, 64, 3, 3, 3.0, 1.0, 1.0),
    "efficientdet-lite1": ("efficientnet-lite1", 384, 88, 4, 3, 3.0, 1.0, 1.1),
    "efficientdet-lite2": ("efficientnet-lite2", 448, 112, 5, 3, 3.0, 1.1, 1.2),
    "efficientdet-lite3": ("efficientnet-lite3", 512, 160, 6, 4, 4.0, 1.2, 1.4),
    "efficientdet-lite4": ("efficientnet-lite4", 640, 224, 7, 4, 4.0, 1.4, 1.8),
}

MODEL_NAMES: tuple[str, ...] = tuple(_MODELS)


def canonical_model_name(model_name: str) -> str:
    """``efficientdet_lite0`` / ``EfficientDet-Lite0`` -> ``efficientdet-lite0``.

    Raises:
        HParamsError: for an unknown name, suggesting the nearest known one.
    """
    name = model_name.strip().lower().replace("_", "-")
    if name not in _MODELS:
        raise HParamsError(
            f"unknown model {model_name!r}{suggest(name, _MODELS)} "
            f"(known: {', '.join(_MODELS)}; '_' may replace '-')"
        )
    return name


def _coerce(overrides: dict[str, Any]) -> dict[str, Any]:
    out = dict(overrides)
    if "aspect_ratios" in out:
        out["aspect_ratios"] = tuple(float(a) for a in out["aspect_ratios"])
    for key in ("anchor_scale", "width_coefficient", "depth_coefficient", "bn_momentum"):
        if key in out and isinstance(out[key], int) and not isinstance(out[key], bool):
            out[key] = float(out[key])
    return out


def _validated(config: EfficientDetLiteConfig) -> EfficientDetLiteConfig:
    if not 1 <= config.min_level <= config.max_level:
        raise HParamsError(
            f"min_level {config.min_level} / max_level {config.max_level}: need 1 <= min <= max"
        )
    if config.min_level < 3 or config.max_level < 5:
        raise HParamsError("EfficientDet-Lite needs min_level >= 3 and max_level >= 5")
    if config.image_size < 32:
        raise HParamsError(f"image_size must be at least 32 pixels, got {config.image_size}")
    for key in ("fpn_num_filters", "fpn_cell_repeats", "box_class_repeats", "num_scales"):
        if getattr(config, key) < 1:
            raise HParamsError(f"{key} must be at least 1, got {getattr(config, key)}")
    if not config.aspect_ratios or any(a <= 0 for a in config.aspect_ratios):
        raise HParamsError(f"aspect_ratios must be positive, got {config.aspect_ratios}")
    return config


def get_model_config(model_name: str, **overrides: Any) -> EfficientDetLiteConfig:
    """The published architecture of ``model_name`` with ``overrides`` applied.

    Args:
      model_name: ``efficientdet-lite0`` .. ``efficientdet-lite4`` (or with ``_``).
      **overrides: field values replacing the published ones, e.g. ``image_size=256``.

    Raises:
        HParamsError: unknown model name or key (with a suggestion), or an invalid value.
    """
    name = canonical_model_name(model_name)
    backbone, image, filters, fpn_repeats, head_repeats, scale, width, depth = _MODELS[name]
    fields = {f.name: None for f in dataclasses.fields(EfficientDetLiteConfig)}
    check_keys(overrides, fields, where=f"{name} config")
    if "model_name" in overrides or "backbone_name" in overrides:
        raise HParamsError("model_name and backbone_name are chosen by get_model_config's name")
    config = EfficientDetLiteConfig(
        model_name=name,
        backbone_name=backbone,
        image_size=image,
        fpn_num_filters=filters,
        fpn_cell_repeats=fpn_repeats,
        box_class_repeats=head_repeats,
        anchor_scale=scale,
        width_coefficient=width,
        depth_coefficient=depth,
    )
    return config.replace(**overrides) if overrides else _validated(config)
