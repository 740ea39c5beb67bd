"""QuantizationConfig: presets, names, validation, calibration data and converter flags."""

import numpy as np
import pytest

from model_maker.core.quantization import (
    DEFAULT_QUANTIZATION_STEPS,
    QuantizationConfig,
    get_default_quantization_config,
    quantization_config_for_variant,
)


def _images(count, size=4):
    return [np.full((size, size, 3), i, np.float32) for i in range(count)]


def test_presets_match_the_model_maker_api():
    assert QuantizationConfig.for_dynamic().as_dict() == {
        "optimizations": ["DEFAULT"],
        "quantization_steps": None,
        "inference_input_type": "float32",
        "inference_output_type": "float32",
        "supported_ops": [],
        "supported_types": [],
        "calibrated": False,
    }
    assert QuantizationConfig.for_float16().supported_types == ("float16",)
    int8 = QuantizationConfig.for_int8(_images(2))
    assert int8.is_full_integer
    assert int8.quantization_steps == DEFAULT_QUANTIZATION_STEPS
    assert int8.supported_ops == ("TFLITE_BUILTINS_INT8",)
    assert (int8.inference_input_type, int8.inference_output_type) == ("uint8", "float32")


def test_default_detector_config_is_int8_builtins_with_uint8_input():
    config = get_default_quantization_config(_images(3), quantization_steps=7)
    assert config.supported_ops == ("TFLITE_BUILTINS_INT8",)
    assert config.input_type == "uint8"
    assert config.inference_output_type == "float32"
    assert config.quantization_steps == 7
    assert get_default_quantization_config(
        _images(1), inference_input_type="float32"
    ).input_type == ("float32")


def test_tensorflow_objects_are_stored_as_names():
    import tensorflow as tf

    config = QuantizationConfig(
        optimizations=tf.lite.Optimize.DEFAULT,
        representative_data=_images(1),
        inference_input_type=tf.int8,
        supported_ops=[tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS],
        supported_types=tf.float16,
    )
    assert config.optimizations == ("DEFAULT",)
    assert config.inference_input_type == "int8"
    assert config.supported_ops == ("TFLITE_BUILTINS_INT8", "TFLITE_BUILTINS")
    assert config.supported_types == ("float16",)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"inference_input_type": "uint8"}, "need representative_data"),
        ({"inference_input_type": "float64"}, "is not one of"),
        ({"supported_ops": "TFLITE_BUILTIN"}, "is not one of"),
        ({"representative_data": [1], "quantization_steps": 0}, "at least 1"),
        ({"optimizations": (), "representative_data": [1]}, "needs optimizations"),
    ],
)
def test_invalid_configs_name_the_problem(kwargs, message):
    with pytest.raises(ValueError, match=message):
        QuantizationConfig(**kwargs)


def test_representative_dataset_takes_steps_images_one_per_step():
    batch = np.stack(_images(5))  # a [5, 4, 4, 3] batch counts as five images
    config = QuantizationConfig.for_int8([(batch, "label"), _images(1)[0]], quantization_steps=4)
    steps = list(config.representative_dataset()())
    assert len(steps) == 4
    assert all(
        len(s) == 1 and s[0].shape == (1, 4, 4, 3) and s[0].dtype == np.float32 for s in steps
    )
    assert [float(s[0][0, 0, 0, 0]) for s in steps] == [0.0, 1.0, 2.0, 3.0]


def test_representative_dataset_accepts_callables_datasets_and_a_transform():
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(np.stack(_images(3)))
    config = QuantizationConfig.for_int8(lambda: iter(ds), quantization_steps=10)
    steps = list(config.representative_dataset(lambda x: x + 100.0)())
    assert [float(s[0].min()) for s in steps] == [100.0, 101.0, 102.0]
    empty = QuantizationConfig.for_int8([], quantization_steps=2)
    with pytest.raises(ValueError, match="no image"):
        list(empty.representative_dataset()())


def test_flags_are_set_on_a_real_converter():
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, 4, 4, 3])])
    def double(x):
        return {"y": x * 2.0}

    converter = tf.lite.TFLiteConverter.from_concrete_functions([double.get_concrete_function()])
    get_default_quantization_config(_images(2)).set_converter_with_quantization(converter)
    assert converter.optimizations == [tf.lite.Optimize.DEFAULT]
    assert converter.inference_input_type == tf.uint8
    assert converter.inference_output_type == tf.float32
    assert list(converter.target_spec.supported_ops) == [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    assert converter.representative_dataset is not None

    fp16 = tf.lite.TFLiteConverter.from_concrete_functions([double.get_concrete_function()])
    QuantizationConfig.for_float16().set_converter_with_quantization(fp16)
    assert fp16.target_spec.supported_types == [tf.float16]


def test_variants_map_to_configs():
    assert quantization_config_for_variant("float32") is None
    assert quantization_config_for_variant("float16").supported_types == ("float16",)
    dynamic = quantization_config_for_variant("dynamic_range")
    assert dynamic.optimizations == ("DEFAULT",) and not dynamic.is_full_integer
    for variant in ("ptq_int8", "qat_int8"):
        config = quantization_config_for_variant(
            variant, _images(2), quantization_steps=9, inference_input_type="float32"
        )
        assert config.is_full_integer and config.quantization_steps == 9
        assert config.input_type == "float32"
        with pytest.raises(ValueError, match="needs representative data"):
            quantization_config_for_variant(variant)
    with pytest.raises(ValueError, match="unknown TFLite variant"):
        quantization_config_for_variant("int4")
