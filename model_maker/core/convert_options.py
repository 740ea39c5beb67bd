"""``ConvertOptions``: which TFLite variants the converter writes (the config's ``convert``).

No numpy or TensorFlow, so the config loads fast; :mod:`model_maker.core.quantization`
re-exports it beside the converter flags.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from model_maker.core.errors import SettingsError
from model_maker.core.settings import Settings, check_choice, check_range

VARIANTS = ("float32", "float16", "dynamic_range", "ptq_int8", "qat_int8")
INT8_VARIANTS = ("ptq_int8", "qat_int8")
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
        dynamic_range, ptq_int8, qat_int8).
      int8_input_type: input tensor type of the int8 variants (float32 or uint8).
      representative_samples: train images that calibrate the int8 variants.
      with_nms: detectors: put TFLite_Detection_PostProcess in the model; false
        writes raw box encodings and scores plus an anchors file (for GPU delegates;
        such files carry no metadata: MediaPipe's detector needs the op inside).
      metadata: TFLite metadata written into every file.
    """

    variants: tuple[str, ...] = ("float32", "ptq_int8", "qat_int8")
    int8_input_type: str = "uint8"
    representative_samples: int = 100
    with_nms: bool = True
    metadata: MetadataOptions = MetadataOptions()

    def __post_init__(self) -> None:
        object.__setattr__(self, "variants", tuple(self.variants))
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
