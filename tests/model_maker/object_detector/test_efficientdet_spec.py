"""EfficientDetSpec end to end on a tiny Examples folder (Lite0 backbone, 128 px, slim BiFPN/heads).

One module fixture trains once (1 epoch, then resumes for a 2nd), the other
tests reuse the trained model, so the module stays within a couple of minutes.
"""

import dataclasses
import json
import logging

import numpy as np
import pytest
import tensorflow as tf

from model_maker.core.errors import UsageError
from model_maker.core.hparams import HParamsError
from model_maker.object_detector import efficientdet_spec as spec_lib
from model_maker.object_detector.dataloader import DataLoader
from model_maker.object_detector.efficientdet_spec import (
    EfficientDetLite0Spec,
    EfficientDetLite4Spec,
    EfficientDetSpec,
)

HPARAMS = {
    "num_classes": 2,
    "label_map": {1: "square", 2: "bar"},
    "image_size": 128,
    "fpn_num_filters": 32,
    "fpn_cell_repeats": 1,
    "box_class_repeats": 1,
    "learning_rate": 0.125,  # the peak at batch 2 (no per-64 scaling)
    "lr_warmup_init": 0.00025,  # the old default 0.008 per 64 images, at batch 2
    "lr_warmup_epoch": 0.5,
    "max_instances_per_image": 8,
    "map_freq": 1,
    "bn_momentum": 0.9,  # moving statistics settle within the few test steps
}
STEPS = 12
FREEZE = "efficientnet"


def _spec(model_dir, epochs, **kwargs):
    return EfficientDetLite0Spec(
        hparams=HPARAMS,
        model_dir=str(model_dir),
        epochs=epochs,
        batch_size=2,
        var_freeze_expr=FREEZE,
        tf_random_seed=7,
        **kwargs,
    )


def _det_loss(spec, model, batch):
    """Detection loss of one fixed batch, batch-norm in training mode (what SGD minimises)."""
    images, labels = batch
    class_logits, box_encodings = model(images, training=True)
    return float(spec._loss()(labels, class_logits, box_encodings)["det_loss"])


@pytest.fixture(scope="module")
def trained(tiny_examples, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("model_dir")
    train = DataLoader.from_examples(str(tiny_examples), "train")
    val = DataLoader.from_examples(str(tiny_examples), "eval")
    first = _spec(model_dir, epochs=1)
    model = first.create_model()
    initial = {w.name: w.numpy().copy() for w in model.weights}
    # all 6 training images, without augmentation
    batch = next(iter(first.make_dataset(list(train.files), batch_size=6)))
    loss_before = _det_loss(first, model, batch)
    first.train(model, train.gen_dataset(first, is_training=True), STEPS, None, None)
    # "crash" after epoch 1; a new spec with more epochs resumes from model_dir
    second = _spec(model_dir, epochs=2)
    second.train(
        model,
        train.gen_dataset(second, is_training=True),
        STEPS,
        val.gen_dataset(second),
        None,
        val_json_file=val.annotations_json,
    )
    loss_after = _det_loss(second, model, batch)
    return {
        "spec": second,
        "first": first,
        "model": model,
        "initial": initial,
        "loss_before": loss_before,
        "loss_after": loss_after,
        "train": train,
        "val": val,
        "model_dir": model_dir,
    }


def test_training_reduces_the_loss(trained):
    print("det_loss before/after:", trained["loss_before"], trained["loss_after"])
    # measured 1.92 -> 1.20..1.30 over 24 steps (three runs)
    assert trained["loss_after"] < 0.85 * trained["loss_before"]


def test_resume_continues_from_last_epoch(trained):
    assert trained["first"].history.epoch == [0]
    assert trained["spec"].history.epoch == [1]  # only the 2nd epoch ran after resuming
    names = {p.name for p in trained["model_dir"].iterdir()}
    assert {"ckpt-1.index", "ckpt-2.index", "checkpoint", "train", "validation"} <= names
    # TensorBoard: loss and learning rate under train/, AP under validation/
    tags = set()
    for split in ("train", "validation"):
        for path in (trained["model_dir"] / split).glob("events.out.*"):
            for event in tf.compat.v1.train.summary_iterator(str(path)):
                tags |= {f"{split}/{v.tag}" for v in event.summary.value}
    assert {"train/epoch_loss", "train/epoch_learning_rate", "validation/epoch_AP"} <= tags


def test_freeze_expr_keeps_backbone_and_trains_heads(trained):
    model, initial = trained["model"], trained["initial"]
    backbone = [w for w in model.trainable_weights if w.name.startswith("efficientnet")]
    heads = [w for w in model.trainable_weights if w.name.startswith("class_net")]
    assert backbone and heads
    assert all(np.array_equal(w.numpy(), initial[w.name]) for w in backbone)
    assert any(not np.array_equal(w.numpy(), initial[w.name]) for w in heads)


def test_evaluate_returns_coco_ap_dict(trained):
    spec, model, val = trained["spec"], trained["model"], trained["val"]
    metrics = spec.evaluate(model, val.gen_dataset(spec), None, val.annotations_json)
    expected = {"AP", "AP50", "AP75", "APs", "APm", "APl", "ARmax1", "ARmax10", "ARmax100"}
    assert expected | {"AP_/square", "AP_/bar"} == set(metrics)
    assert all(-1.0 <= v <= 1.0 for v in metrics.values())


@pytest.mark.slow
def test_evaluate_without_json_rebuilds_ground_truth(trained):
    spec, model, val = trained["spec"], trained["model"], trained["val"]
    metrics = spec.evaluate(model, val.gen_dataset(spec), None, val.annotations_json)
    # ground truth rebuilt from the records gives the same numbers as the COCO file
    rebuilt = spec.evaluate(model, val.gen_dataset(spec), None)
    for key in ("AP", "AP50", "ARmax100"):
        assert rebuilt[key] == pytest.approx(metrics[key], abs=0.02)


def _image(rng, height, width):
    return rng.integers(0, 255, (1, height, width, 3), dtype=np.uint8)


def test_export_saved_model_raw_and_global(trained, tmp_path):
    spec, model = trained["spec"], trained["model"]
    rng = np.random.default_rng(0)
    square = _image(rng, 128, 128)
    logits, encodings = model(tf.cast(square, tf.float32), training=False)
    ref_boxes, _, ref_scores, ref_num = spec.postprocess(logits, encodings)

    path = spec.export_saved_model(model, str(tmp_path / "none"), pre_mode=None, post_mode=None)
    out = tf.saved_model.load(path).signatures["serving_default"](
        images=tf.cast(square, tf.float32)
    )
    np.testing.assert_allclose(out["class_logits"], logits, atol=1e-4)
    np.testing.assert_allclose(out["box_encodings"], encodings, atol=1e-4)

    path = spec.export_saved_model(model, str(tmp_path / "global"), post_mode="global")
    serve = tf.saved_model.load(path).signatures["serving_default"]
    # pre_mode 'infer': any image size; a 128x128 image is passed through unchanged
    out = serve(images=tf.constant(square))
    n = int(ref_num[0])
    assert out["boxes"].shape == (1, 100, 4) and n > 0
    assert int(out["num_detections"][0]) == n
    np.testing.assert_allclose(out["scores"][0, :n], ref_scores[0, :n], atol=1e-4)
    np.testing.assert_allclose(out["boxes"][0, :n], np.clip(ref_boxes[0, :n], 0, 1), atol=1e-3)
    # a 64x96 image: resized and padded in the graph, boxes normalised to that image
    wide = serve(images=tf.constant(_image(rng, 64, 96)))
    assert wide["boxes"].shape == (1, 100, 4)
    assert 0.0 <= float(tf.reduce_min(wide["boxes"])) <= float(tf.reduce_max(wide["boxes"])) <= 1.0


@pytest.mark.slow
def test_export_saved_model_per_class_and_tflite(trained, tmp_path):
    spec, model = trained["spec"], trained["model"]
    square = _image(np.random.default_rng(1), 128, 128)
    path = spec.export_saved_model(model, str(tmp_path / "per_class"), post_mode="per_class")
    out = tf.saved_model.load(path).signatures["serving_default"](images=tf.constant(square))
    logits, encodings = model(tf.cast(square, tf.float32), training=False)
    _, ref_classes, ref_scores, ref_num = spec.postprocess(logits, encodings, "per_class")
    n = int(ref_num[0])
    assert int(out["num_detections"][0]) == n > 0
    np.testing.assert_allclose(out["scores"][0, :n], ref_scores[0, :n], atol=1e-4)
    np.testing.assert_array_equal(out["classes"][0, :n], ref_classes[0, :n])

    path = spec.export_saved_model(model, str(tmp_path / "tflite"), post_mode="tflite")
    serve = tf.saved_model.load(path).signatures["serving_default"]
    assert serve.structured_input_signature[1]["images"].shape == (1, 128, 128, 3)
    out = serve(images=tf.cast(square, tf.float32))
    # the TFLite op is a placeholder in TF: shapes only (values exist after conversion)
    assert out["boxes"].shape == (1, 25, 4) and out["scores"].shape == (1, 25)


def test_evaluation_and_export_trace_the_model_once(trained, tmp_path):
    # A fresh spec (no traces yet); a smaller last batch must not trace the model
    # again, and the export reuses the evaluation's trace (seconds each for a QAT model).
    spec, model, val = _spec(tmp_path / "fresh", epochs=1), trained["model"], trained["val"]
    assert val.size >= 2
    dataset = spec.make_dataset(list(val.files), batch_size=val.size - 1, is_training=False)
    assert [int(images.shape[0]) for images, _ in dataset] == [val.size - 1, 1]
    infer = spec._infer_fn(model)
    spec.evaluate(model, dataset, None, val.annotations_json)
    assert infer.experimental_get_tracing_count() == 1
    path = spec.export_saved_model(model, str(tmp_path / "export"))
    assert infer.experimental_get_tracing_count() == 1
    out = tf.saved_model.load(path).signatures["serving_default"](
        images=tf.constant(_image(np.random.default_rng(2), 128, 128))
    )
    assert out["boxes"].shape == (1, 100, 4)


def test_export_is_frozen_and_loads_without_variables(trained, tmp_path):
    # constants, not 3,000 variables to save and restore (the QATTrainer's export)
    spec, model = trained["spec"], trained["model"]
    path = spec.export_saved_model(model, str(tmp_path / "frozen"))
    saved = [name for name, _ in tf.train.list_variables(f"{path}/variables/variables")]
    assert saved == ["_CHECKPOINTABLE_OBJECT_GRAPH"]  # no weights: they are in the graph
    serve = tf.saved_model.load(path).signatures["serving_default"]
    assert set(serve.structured_outputs) == {"boxes", "classes", "scores", "num_detections"}
    assert serve.structured_input_signature[1]["images"].dtype == tf.uint8


def test_model_code_is_traced_without_autograph(trained, tmp_path, autograph_conversions):
    # AutoGraph converts the call of every non-Keras layer at each trace (seconds for
    # a fake-quant EfficientDet); their control flow is on Python values
    spec, train = _spec(tmp_path / "autograph", epochs=1), trained["train"]
    dataset = spec.make_dataset(list(train.files), batch_size=2, is_training=True)
    assert not {"make_dataset.<locals>.to_inputs", "parse_record"} & set(autograph_conversions)
    model = spec.create_model()
    spec._infer_fn(model).get_concrete_function()
    spec.export_saved_model(model, str(tmp_path / "export"))
    trainer = spec_lib.train_lib.DetectorTrainer(model, spec._loss())
    trainer.compile(optimizer=keras_sgd())
    trainer.fit(dataset, epochs=1, steps_per_epoch=1, verbose=0)
    # only the dataset's file handling, SavedModel's signature wrapper and Keras' own
    # fit loop are converted
    model_code = [
        name
        for name in autograph_conversions
        if name
        not in {
            "count_examples.<locals>.<lambda>",
            "make_dataset.<locals>.<lambda>",
            "_compression",
            "canonicalize_signatures.<locals>.signature_wrapper",
            "Model.make_train_function.<locals>.train_function",
        }
    ]
    assert model_code == []


def keras_sgd():
    from tf_keras import optimizers

    return optimizers.SGD(0.001)


def test_export_rejects_unknown_modes(trained, tmp_path):
    spec, model = trained["spec"], trained["model"]
    with pytest.raises(UsageError, match="post_mode"):
        spec.export_saved_model(model, str(tmp_path / "x"), post_mode="fast")
    with pytest.raises(UsageError, match="pre_mode"):
        spec.export_saved_model(model, str(tmp_path / "x"), pre_mode="resize")
    with pytest.raises(UsageError, match="batch size 1"):
        spec.export_saved_model(model, str(tmp_path / "x"), batch_size=4, post_mode="tflite")


def test_hparams_forms_and_strict_keys(tmp_path):
    yaml_path = tmp_path / "hp.yaml"
    yaml_path.write_text("num_classes: 3\nimage_size: 256\ngamma: 2.0\n")
    for hparams in (
        {"num_classes": 3, "image_size": 256, "gamma": 2.0},
        "num_classes=3,image_size=256,gamma=2.0",
        str(yaml_path),
    ):
        spec = EfficientDetSpec("efficientdet_lite1", "", hparams=hparams, model_dir=str(tmp_path))
        assert (spec.num_classes, spec.image_size, spec.hparams["gamma"]) == (3, 256, 2.0)
        assert spec.model_config.fpn_num_filters == 88  # lite1's
    with pytest.raises(HParamsError, match="did you mean 'learning_rate'"):
        EfficientDetSpec("efficientdet-lite0", "", hparams="learning_rat=0.1")
    with pytest.raises(HParamsError, match="unknown model"):
        EfficientDetSpec("efficientdet-lite9", "")
    assert EfficientDetLite4Spec().image_size == 640


def test_defaults_follow_tflite_model_maker():
    spec = EfficientDetLite0Spec()
    assert (spec.epochs, spec.batch_size, spec.moving_average_decay) == (50, 64, 0)
    assert spec.var_freeze_expr == "(efficientnet|fpn_cells|resample_p6)"
    assert (spec.tflite_max_detections, spec.tf_random_seed, spec.verbose) == (25, 111111, 0)
    assert spec.hparams["learning_rate"] == 0.08 and spec.hparams["gamma"] == 1.5
    assert spec.image_size == 320 and spec.anchors.num_anchors == 19206


def test_strategies(monkeypatch):
    with pytest.raises(UsageError, match="strategy 'cpus'"):
        EfficientDetLite0Spec(strategy="cpus")
    if tf.config.list_physical_devices("GPU"):
        spec = EfficientDetLite0Spec(strategy="gpus")
        assert isinstance(spec.strategy, tf.distribute.MirroredStrategy)
        assert spec.strategy.num_replicas_in_sync >= 1
    else:  # one line saying why, not a CPU run under a GPU setting
        with pytest.raises(UsageError, match="strategy 'gpus': no GPU found"):
            EfficientDetLite0Spec(strategy="gpus")

    seen = {}

    class FakeResolver:
        def __init__(self, tpu, zone=None, project=None):
            seen.update(tpu=tpu, zone=zone, project=project)

    monkeypatch.setattr(tf.distribute.cluster_resolver, "TPUClusterResolver", FakeResolver)
    monkeypatch.setattr(tf.config, "experimental_connect_to_cluster", lambda r: None)
    monkeypatch.setattr(tf.tpu.experimental, "initialize_tpu_system", lambda r: None)
    monkeypatch.setattr(tf.distribute, "TPUStrategy", lambda r: ("tpu-strategy", r))
    spec = EfficientDetLite0Spec(strategy="tpu", tpu="node-1", gcp_project="p", tpu_zone="z")
    assert seen == {"tpu": "node-1", "zone": "z", "project": "p"}
    assert spec.strategy[0] == "tpu-strategy"


def test_trained_config_round_trips(trained):
    config = trained["spec"].trained_config()
    assert config.num_classes == 2 and config.image_size == 128
    assert config.label_map == {1: "square", 2: "bar"}
    data = json.loads(config.to_json())
    assert data["model_config"]["fpn_cell_repeats"] == 1
    assert dataclasses.asdict(type(config).from_json(config.to_json())) == dataclasses.asdict(
        config
    )


def test_unknown_strategy_is_usage_error_before_anything_else():
    with pytest.raises(UsageError):
        spec_lib.make_strategy("mirrored")


def test_create_model_with_imagenet_uri_loads_the_backbone(caplog):
    from model_maker.core.pretrained_backbone import read_state
    from model_maker.core.pretrained_cache import weights_file

    spec = EfficientDetLite0Spec(uri="imagenet", hparams={"num_classes": 2, "image_size": 128})
    with caplog.at_level(logging.WARNING, logger="qatflow"):
        model = spec.create_model()
    state = read_state(weights_file("efficientnet-lite0"))
    layer = model.get_layer("efficientnet_lite0_blocks_7_depthwise_conv")
    np.testing.assert_array_equal(
        layer.depthwise_kernel.numpy(),
        state["_blocks.7._depthwise_conv.weight"].transpose(2, 3, 0, 1),
    )
    # the default freeze regex would freeze the randomly initialised BiFPN: warned
    assert "freezes" in caplog.text and "randomly initialised" in caplog.text


def test_create_model_with_imagenet_uri_for_lite4_fails_clearly():
    spec = EfficientDetLite4Spec(uri="imagenet", hparams={"num_classes": 2, "image_size": 128})
    with pytest.raises(ValueError, match="no offline ImageNet weights for 'efficientnet-lite4'"):
        spec.create_model()
