import json

import numpy as np
import pytest
import tensorflow as tf

from model_maker.object_detector.dataloader import (
    DataLoader,
    InputOptions,
    count_examples,
    make_dataset,
    split_files,
)


def test_split_files_and_counts(tiny_examples):
    files = split_files(str(tiny_examples), "train")
    assert [f.split("/")[-2] for f in files] == ["Split-train"]
    assert count_examples(files) == 6
    loader = DataLoader.from_examples(str(tiny_examples), "eval")
    assert loader.size == 4
    assert loader.label_map == {1: "square", 2: "bar"}
    assert loader.num_classes == 2
    assert loader.annotations_json.endswith("eval_annotations.json")


def test_unknown_split_names_the_found_ones(tiny_examples):
    with pytest.raises(FileNotFoundError, match=r"'test'.*\['eval', 'train'\]"):
        split_files(str(tiny_examples), "test")


def test_eval_boxes_map_back_to_coco_ground_truth(tiny_examples):
    files = split_files(str(tiny_examples), "eval")
    opts = InputOptions(image_size=128, max_instances_per_image=5)
    ds = make_dataset(files, opts, batch_size=3, is_training=False)
    batches = list(ds)
    assert [int(b[0].shape[0]) for b in batches] == [3, 1]
    gt = json.loads((tiny_examples / "eval_annotations.json").read_text())
    by_image = {}
    for ann in gt["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    seen = 0
    for images, labels in batches:
        assert images.dtype == tf.float32 and images.shape[1:] == (128, 128, 3)
        assert float(tf.reduce_max(images)) <= 255.0
        for i in range(images.shape[0]):
            image_id = int(labels["image_id"][i])
            scale = float(labels["image_scale"][i])
            classes = labels["classes"][i].numpy()
            assert list(classes) == [0, 1, -1, -1, -1]
            # yxyx input pixels * scale -> COCO xywh original pixels
            boxes = labels["boxes"][i].numpy()[:2] * scale
            xywh = np.stack(
                [boxes[:, 1], boxes[:, 0], boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]], 1
            )
            expected = [a["bbox"] for a in by_image[image_id]]
            np.testing.assert_allclose(xywh, expected, atol=1.5)
            h, w = int(labels["image_height"][i]), int(labels["image_width"][i])
            assert max(h, w) == pytest.approx(128 * scale, abs=1.0)
            seen += 1
    assert seen == 4


def test_training_batches_are_fixed_shape_augmented_and_encoded(tiny_examples):
    files = split_files(str(tiny_examples), "train")
    opts = InputOptions(image_size=128, max_instances_per_image=4, seed=3)

    def encoder(boxes, classes):
        return {"num_boxes": tf.reduce_sum(tf.cast(classes >= 0, tf.int32))}

    ds = make_dataset(files, opts, batch_size=2, is_training=True, label_encoder=encoder)
    widths = []
    for images, labels in ds.take(12):  # repeats past the 6 records
        assert images.shape == (2, 128, 128, 3)
        assert labels["boxes"].shape == (2, 4, 4)
        boxes = labels["boxes"].numpy()
        valid = labels["classes"].numpy() >= 0
        assert np.all(labels["num_boxes"].numpy() == valid.sum(1))
        assert np.all(boxes[valid] >= 0) and np.all(boxes[valid] <= 128)
        assert np.all(boxes[valid][:, 2] > boxes[valid][:, 0])
        widths.extend((boxes[valid][:, 3] - boxes[valid][:, 1]).tolist())
    # scale jitter changes box sizes between epochs of the same 6 images
    assert len(set(np.round(widths, 1))) > 12


def test_random_flip_moves_left_squares_to_the_right(tiny_examples):
    files = split_files(str(tiny_examples), "train")
    opts = InputOptions(image_size=128, jitter_min=1.0, jitter_max=1.0, seed=1)
    ds = make_dataset(files, opts, batch_size=2, is_training=True)
    centres = []
    for _, labels in ds.take(10):
        for boxes, classes in zip(labels["boxes"].numpy(), labels["classes"].numpy(), strict=True):
            square = boxes[classes == 0][0]
            centres.append((square[1] + square[3]) / 2)
    # squares are drawn in the left half of every image; flipped ones land right of centre
    left = sum(c < 64 for c in centres)
    assert 0 < left < len(centres)


def _parallel_order_flags(ds: tf.data.Dataset) -> set[str]:
    """The ``deterministic`` attribute of every parallel interleave and map in ``ds``'s graph."""
    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(ds._as_serialized_graph().numpy())
    return {
        node.attr["deterministic"].s.decode()
        for node in graph.node
        if node.op.startswith(("ParallelMapDataset", "ParallelInterleaveDataset"))
    }


@pytest.mark.parametrize(("ordered", "flags"), [(False, {"false"}), (True, {"true"})])
def test_training_order_is_kept_when_asked(tiny_examples, ordered, flags):
    # multi-worker: each worker keeps its share of every global batch by position
    files = split_files(str(tiny_examples), "train")
    opts = InputOptions(image_size=64, seed=3, ordered=ordered)
    assert _parallel_order_flags(make_dataset(files, opts, 2, is_training=True)) == flags
    # evaluation is always in record order
    evaluation = make_dataset(files, opts, 2, is_training=False)
    assert _parallel_order_flags(evaluation) == {"true"}
