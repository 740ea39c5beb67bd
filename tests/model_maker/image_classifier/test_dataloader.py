"""Classification records -> batches: 0-based labels, resizing, seeded augmentation."""

from __future__ import annotations

import numpy as np
import pytest

import model_maker  # noqa: F401  (Keras 2 before TensorFlow loads)
from model_maker.core.errors import DataError, UsageError
from model_maker.image_classifier.dataloader import DataLoader, InputOptions, make_dataset

# Eval split order: blue, red, green, green, red, blue; ids red 2, green 3, blue 7
# -> class indices red 0, green 1, blue 2 (position among the sorted ids).
EVAL_LABELS = [2, 0, 1, 1, 0, 2]
RGB = {0: (220, 30, 30), 1: (30, 200, 40), 2: (20, 40, 230)}


def test_loader_reads_the_split_and_the_label_map(colour_examples):
    train = DataLoader.from_examples(str(colour_examples), "train")
    assert train.size == 12
    assert train.num_classes == 3
    assert train.index_to_label == ["red", "green", "blue"]
    assert [c.id for c in train.label_map.classes] == [2, 3, 7]
    assert [f.split("/")[-2] for f in train.files] == ["Split-train"]


def test_unknown_split_names_the_found_ones(colour_examples):
    with pytest.raises(DataError, match=r"'test'.*\['eval', 'train'\]"):
        DataLoader.from_examples(str(colour_examples), "test")


def test_eval_batches_hold_resized_pixels_and_zero_based_labels(colour_examples):
    loader = DataLoader.from_examples(str(colour_examples), "eval")
    ds = loader.gen_tf_dataset(InputOptions(image_size=40, batch_size=4), is_training=False)
    assert int(ds.cardinality()) == 2  # 6 images: 4 + 2, the last batch kept
    batches = list(ds)
    assert [tuple(b[0].shape) for b in batches] == [(4, 40, 40, 3), (2, 40, 40, 3)]
    labels = np.concatenate([b[1].numpy() for b in batches])
    assert labels.dtype == np.int32
    assert labels.tolist() == EVAL_LABELS
    images = np.concatenate([b[0].numpy() for b in batches])
    assert images.dtype == np.float32
    for image, label in zip(images, labels, strict=True):
        # solid colour +-8 noise, so the resized image keeps the colour on average
        np.testing.assert_allclose(image.mean(axis=(0, 1)), RGB[int(label)], atol=3.0)
        assert image.min() >= 0.0 and image.max() <= 255.0


def _first_epochs(loader, seed, epochs=2):
    opts = InputOptions(image_size=32, batch_size=12, seed=seed, crop_area_range=(0.2, 0.5))
    ds = loader.gen_tf_dataset(opts, is_training=True)
    return [next(iter(ds)) for _ in range(epochs)]


def test_training_augmentation_is_seeded_and_changes_every_epoch(colour_examples):
    loader = DataLoader.from_examples(str(colour_examples), "train")
    (a1, la1), (a2, la2) = _first_epochs(loader, seed=5)
    (b1, lb1), _ = _first_epochs(loader, seed=5)
    (c1, lc1), _ = _first_epochs(loader, seed=6)
    np.testing.assert_array_equal(a1.numpy(), b1.numpy())  # same seed, same batch
    np.testing.assert_array_equal(la1.numpy(), lb1.numpy())
    assert not np.array_equal(a1.numpy(), a2.numpy())  # another epoch, another crop/order
    assert not np.array_equal(a1.numpy(), c1.numpy())  # another seed
    # every image of the train split is there once per epoch, with its label
    assert sorted(la1.numpy().tolist()) == [0] * 4 + [1] * 4 + [2] * 4
    # crops of a solid colour keep the colour: the labels still match the pixels
    for image, label in zip(a1.numpy(), la1.numpy(), strict=True):
        np.testing.assert_allclose(image.mean(axis=(0, 1)), RGB[int(label)], atol=4.0)


def test_training_crop_and_flip_change_the_pixels(tmp_path):
    """A left-dark, right-bright image: flips swap the halves, crops move the edge."""
    import io

    import tensorflow as tf
    from PIL import Image

    from model_maker.core.data.records import DetectionExample, encode_example

    pixels = np.zeros((64, 64, 3), np.uint8)
    pixels[:, 32:] = 255
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    record = encode_example(
        DetectionExample(buf.getvalue(), "png", 64, 64, "1", class_label=1, class_text="a")
    )
    path = tmp_path / "r.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for _ in range(32):
            writer.write(record)
    opts = InputOptions(image_size=32, batch_size=32, seed=1, shuffle_buffer=1)
    (images, labels) = next(iter(make_dataset([str(path)], opts, is_training=True, class_ids=[1])))
    assert labels.numpy().tolist() == [0] * 32
    left = images.numpy()[:, :, :16].mean(axis=(1, 2, 3))
    right = images.numpy()[:, :, 16:].mean(axis=(1, 2, 3))
    flipped = left > right
    assert 0 < flipped.sum() < 32  # some flipped, some not
    assert len({round(float(v), 1) for v in left}) > 4  # crops differ from image to image
    plain = next(iter(make_dataset([str(path)], opts, is_training=False, class_ids=[1])))[0]
    np.testing.assert_allclose(plain.numpy()[:, :, :15].max(), 0.0)
    np.testing.assert_allclose(plain.numpy()[:, :, 17:].min(), 255.0)


def test_no_augmentation_when_asked(colour_examples):
    loader = DataLoader.from_examples(str(colour_examples), "train")
    opts = InputOptions(image_size=32, batch_size=12, seed=3, augment=False)
    images, labels = next(iter(loader.gen_tf_dataset(opts, is_training=True)))
    assert sorted(labels.numpy().tolist()) == [0] * 4 + [1] * 4 + [2] * 4
    evals = next(iter(loader.gen_tf_dataset(opts, is_training=False)))
    # same images, only shuffled: the sorted per-image means agree
    key = lambda batch: np.sort(batch.numpy().mean(axis=(1, 2)), axis=0)  # noqa: E731
    np.testing.assert_allclose(key(images), key(evals[0]), atol=1e-4)


def test_a_label_outside_the_label_map_fails(colour_examples):
    import tensorflow as tf

    loader = DataLoader.from_examples(str(colour_examples), "eval")
    opts = InputOptions(image_size=32, batch_size=6)
    ds = make_dataset(loader.files, opts, is_training=False, class_ids=[2, 3])  # no id 7
    with pytest.raises(tf.errors.InvalidArgumentError, match="not an id of the label map"):
        list(ds)


def test_input_options_are_checked():
    with pytest.raises(UsageError, match="image_size"):
        InputOptions(image_size=8)
    with pytest.raises(UsageError, match="crop_area_range"):
        InputOptions(image_size=64, crop_area_range=(0.5, 0.2))
    with pytest.raises(UsageError, match="batch_size"):
        InputOptions(image_size=64, batch_size=0)
