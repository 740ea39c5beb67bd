"""TFLite set writer: options, labels.txt, calibration images from Examples, refusals.
(Conversions themselves: test_export.py and tests/components/tflite_converter.)"""

import numpy as np
import pytest

from model_maker.core.errors import UsageError
from model_maker.core.quantization import ConvertOptions
from model_maker.object_detector.tflite_set import (
    TFLiteSetOptions,
    export_tflite_set,
    labels_text,
    representative_images,
)
from tests.model_maker.object_detector.tiny_examples import write_tiny_examples


def test_labels_text_has_one_line_per_model_class():
    assert labels_text({1: "cat", 2: "dog"}, 2) == "cat\ndog\n"
    assert labels_text({2: "dog"}, 3) == "class_1\ndog\nclass_3\n"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"variants": ()}, "at least one"),
        ({"variants": ("float32", "int4")}, r"variants\[1\]: 'int4' is not allowed"),
        ({"variants": ("float32", "float32")}, "repeat"),
        ({"int8_input_type": "int16"}, r"int8_input_type: 'int16' .*allowed: float32, uint8"),
        ({"representative_samples": 0}, "at least 1"),
    ],
)
def test_invalid_options_are_usage_errors(kwargs, message):
    with pytest.raises(UsageError, match=message):
        TFLiteSetOptions(convert=ConvertOptions(**kwargs))


def test_missing_inputs_are_refused_before_any_conversion(tmp_path):
    with pytest.raises(UsageError, match="QAT model"):
        export_tflite_set(
            str(tmp_path), object(), anchors=np.zeros((1, 4)), num_classes=1, label_map={},
            options=TFLiteSetOptions(convert=ConvertOptions(variants=("qat_int8",))),
            representative_data=[1],
        )  # fmt: skip
    with pytest.raises(UsageError, match="representative data"):
        export_tflite_set(
            str(tmp_path), object(), anchors=np.zeros((1, 4)), num_classes=1, label_map={},
            options=TFLiteSetOptions(convert=ConvertOptions(variants=("float32", "ptq_int8"))),
        )  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_representative_images_are_resized_and_padded_train_images(tmp_path):
    uri = write_tiny_examples(tmp_path / "examples")
    images = [x.numpy() for x in representative_images(str(uri), 96, count=4)]
    assert len(images) == 4
    for image in images:
        assert image.shape == (96, 96, 3) and image.dtype == np.float32
        assert 0.0 <= image.min() and image.max() <= 255.0
    # tiny examples are 160x240 or 200x150: resized keeping aspect, padded with zeros
    wide = images[0]  # 160x240 -> 64x96, rows 64.. are padding
    assert np.all(wide[70:] == 0.0) and wide[:60].max() > 100.0
    assert len(list(representative_images(str(uri), 96, count=100))) == 6  # the whole split
