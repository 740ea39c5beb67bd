"""``ConvertOptions``: which TFLite variants the converter writes (the config's ``convert``).

No numpy or TensorFlow, so the config loads fast; :mod:`model_maker.core.quantization`
re-exports it beside the converter flags.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from model_maker.core.errors import SettingsError
from model_maker.core.settings import Settings, check_choice, check_range

VARIANTS = ("float32", "float16", "dynamic_range", "ptq_int8", "ptq_mixed", "qat_int8")
INT8_VARIANTS = ("ptq_int8", "ptq_mixed", "qat_int8")
#: Variants made from one calibration of the float model (layer errors are measured on it).
CALIBRATED_VARIANTS = ("ptq_int8", "ptq_mixed")
INT8_INPUT_TYPES = ("float32", "uint8")


@dataclass(frozen=True)
class ModelInfo(Settings):
    """General fields of a model's TFLite metadata.

    Attributes:
      name: model name ("" lets the converter name it ``qatflow <variant>``).
      description: what the model does ("" uses a default per task).
      version: model version set by its creator.
      author: who made the model.
      license: licence(s) of the model.
    """

    name: str = ""
    description: str = ""
    version: str = ""
    author: str = ""
    license: str = ""

    def validate(self) -> None:
        for f in dataclasses.fields(ModelInfo):
            value = getattr(self, f.name)
            if not isinstance(value, str):
                raise SettingsError(f.name, f"must be text, got {value!r}")
            if "\x00" in value:
                raise SettingsError(f.name, "must not contain NUL characters")


@dataclass(frozen=True)
class MetadataOptions(ModelInfo):
    """TFLite model metadata written into every file (what MediaPipe Tasks and the
    TFLite Task Library read: labels, normalisation, output semantics), and its
    :class:`ModelInfo` fields.

    Attributes:
      enabled: write it (with the labels packed inside the file); false writes
        bare models with ``labels.txt`` beside them only.
    """

    enabled: bool = True


@dataclass(frozen=True)
class ConvertOptions(Settings):
    """Which TFLite variants the converter writes, and how (the config's ``convert`` section).

    Attributes:
      variants: variants to write, in this order (float32, float16,
        dynamic_range, ptq_int8, ptq_mixed, qat_int8). ``ptq_mixed`` is
        ``ptq_int8`` with some layers kept float (see ``mixed_float_layers``).
      int8_input_type: input tensor type of the int8 variants (float32 or uint8).
      representative_samples: train images that calibrate the int8 variants.
      with_nms: detectors: put TFLite_Detection_PostProcess in the model; false
        writes raw box encodings and scores plus an anchors file (for GPU delegates;
        such files carry no metadata: MediaPipe's detector needs the op inside).
      layer_error_samples: calibration images TFLite's QuantizationDebugger runs to
        measure each layer's int8 error of ``ptq_int8`` (``layer_errors.json``, the
        report's worst layers); 0 skips it (not with ``ptq_mixed``, which picks
        its float layers from them).
      mixed_float_layers: ``ptq_mixed`` keeps this many of the worst layers (by
        RMSE in quantization steps) in float.
      mixed_float_patterns: regular expressions of Keras layer (or TFLite tensor)
        names ``ptq_mixed`` keeps in float instead of the worst N.
      metadata: TFLite metadata written into every file.
    """

    variants: tuple[str, ...] = ("float32", "ptq_int8", "qat_int8")
    int8_input_type: str = "uint8"
    representative_samples: int = 100
    with_nms: bool = True
    layer_error_samples: int = 8
    mixed_float_layers: int = 5
    mixed_float_patterns: tuple[str, ...] = ()
    metadata: MetadataOptions = MetadataOptions()

    def __post_init__(self) -> None:
        object.__setattr__(self, "variants", tuple(self.variants))
        object.__setattr__(self, "mixed_float_patterns", tuple(self.mixed_float_patterns))
        super().__post_init__()

    def validate(self) -> None:
        if not self.variants:
            raise SettingsError("variants", f"give at least one of {', '.join(VARIANTS)}")
        for i, variant in enumerate(self.variants):
            check_choice(f"variants[{i}]", variant, VARIANTS)
        if len(set(self.variants)) != len(self.variants):
            raise SettingsError("variants", f"variants repeat: {list(self.variants)}")
        check_choice("int8_input_type", self.int8_input_type, INT8_INPUT_TYPES)
        check_range("representative_samples", self.representative_samples, 1)
        check_range("layer_error_samples", self.layer_error_samples, 0)
        check_range("mixed_float_layers", self.mixed_float_layers, 0)
        for i, pattern in enumerate(self.mixed_float_patterns):
            if not isinstance(pattern, str) or not pattern:
                raise SettingsError(f"mixed_float_patterns[{i}]", "must be a non-empty regex")
            try:
                re.compile(pattern)
            except re.error as exc:
                raise SettingsError(f"mixed_float_patterns[{i}]", f"not a regex: {exc}") from None
        if "ptq_mixed" in self.variants and self.layer_error_samples == 0:
            raise SettingsError(
                "layer_error_samples",
                "ptq_mixed picks its float layers from the measured layer errors: set it >= 1",
            )

    @property
    def measures_layer_errors(self) -> bool:
        """Whether the converter runs the QuantizationDebugger (a calibrated variant asked)."""
        return self.layer_error_samples > 0 and bool(set(CALIBRATED_VARIANTS) & set(self.variants))
