"""tf.data input pipeline over the classification Examples of the qatflow contract.

Reads ``Split-<name>/data_tfrecord-*.gz`` (the TFX Examples layout) with the
keys ``image/encoded`` and ``image/class/label``. The folder/CSV ingest writes
``image/class/label`` as the class's id in ``label_map.json`` (1-based, 0 is
"no label", as for detection); this module turns it into the 0-based class
index the model predicts: the position of the id among the label map's ids in
increasing order (id ``k`` -> ``k - 1`` for the usual ids 1..K). A record whose
id is not in the label map fails the pipeline (``InvalidArgumentError``).

Each element is ``(images, labels)``: images float32 ``[B, S, S, 3]`` pixels
0..255 (the model normalises them), labels int32 ``[B]`` class indices.

- evaluation: the whole image resized to ``S`` x ``S`` (bilinear, aspect ratio
  not kept), no shuffling, records in file order;
- training: shuffled; with ``augment`` a random crop (Inception-style: area
  ``crop_area_range`` of the image, aspect ratio ``crop_aspect_range``)
  resized to ``S`` x ``S`` and a random horizontal flip. With a ``seed`` the
  order and the augmentation are reproducible: each image's crop and flip use
  stateless random ops seeded from a seeded random stream that changes every
  epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import tensorflow as tf

from model_maker.core.data import records
from model_maker.core.data.labels import LabelMap
from model_maker.core.data.tfrecord import find_label_map, list_record_files
from model_maker.core.errors import DataError, UsageError


@dataclass(frozen=True)
class InputOptions:
    """How records become network inputs.

    Attributes:
      image_size: side of the square network input in pixels (the spec's).
      batch_size: images per batch.
      augment: random crop + flip on training data (never on evaluation data).
      crop_area_range: (min, max) fraction of the image area a training crop covers.
      crop_aspect_range: (min, max) width/height ratio of a training crop.
      shuffle_buffer: records in the training shuffle buffer.
      seed: seed of shuffling and augmentation; None for nondeterministic.
    """

    image_size: int
    batch_size: int = 32
    augment: bool = True
    crop_area_range: tuple[float, float] = (0.08, 1.0)
    crop_aspect_range: tuple[float, float] = (3 / 4, 4 / 3)
    shuffle_buffer: int = 1024
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.image_size < 32:
            raise UsageError(f"image_size must be at least 32, got {self.image_size}")
        if self.batch_size < 1:
            raise UsageError(f"batch_size must be at least 1, got {self.batch_size}")
        low, high = self.crop_area_range
        if not 0.0 < low <= high <= 1.0:
            raise UsageError(f"crop_area_range must satisfy 0 < min <= max <= 1, got {low, high}")
        low, high = self.crop_aspect_range
        if not 0.0 < low <= high:
            raise UsageError(f"crop_aspect_range must satisfy 0 < min <= max, got {low, high}")
        if self.shuffle_buffer < 1:
            raise UsageError(f"shuffle_buffer must be at least 1, got {self.shuffle_buffer}")


def count_examples(files: Sequence[str]) -> int:
    """Number of records in ``files`` (one pass over the records, images not decoded)."""
    compression = "GZIP" if str(files[0]).endswith(".gz") else ""
    ds = tf.data.TFRecordDataset(list(files), compression_type=compression)
    return int(ds.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1).numpy())


def label_table(class_ids: Sequence[int]) -> tf.lookup.StaticHashTable:
    """Label-map id -> 0-based class index (ids sorted); unknown ids map to -1."""
    ids = sorted(int(i) for i in class_ids)
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(ids, tf.int64), tf.range(len(ids), dtype=tf.int32)
        ),
        default_value=-1,
    )


def _resize(image: tf.Tensor, size: int) -> tf.Tensor:
    resized = tf.image.resize(tf.cast(image, tf.float32), [size, size], method="bilinear")
    return tf.clip_by_value(resized, 0.0, 255.0)


def _random_crop_flip(image: tf.Tensor, seed: tf.Tensor, options: InputOptions) -> tf.Tensor:
    """Inception-style random crop resized to ``image_size`` and a random flip (stateless)."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=seeds[0],
        min_object_covered=0.0,
        aspect_ratio_range=options.crop_aspect_range,
        area_range=options.crop_area_range,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    image = tf.slice(image, begin, size)
    image = _resize(image, options.image_size)
    return tf.image.stateless_random_flip_left_right(image, seeds[1])


def make_dataset(
    files: Sequence[str],
    options: InputOptions,
    *,
    is_training: bool,
    class_ids: Sequence[int],
    num_examples: int | None = None,
) -> tf.data.Dataset:
    """Batches of ``(images float32 [B,S,S,3] 0..255, labels int32 [B])``; see the module doc.

    Args:
      files: TFRecord files (GZIP when they end in ``.gz``).
      options: image size, batch size, augmentation, seed.
      is_training: shuffle (and augment when ``options.augment``).
      class_ids: the label map's ids; record labels are mapped to their index.
      num_examples: records in ``files``; given, the dataset knows its length
        (``ceil(num_examples / batch_size)`` batches, the last one partial).
    """
    if not files:
        raise DataError("no record files given")
    table = label_table(class_ids)
    compression = "GZIP" if str(files[0]).endswith(".gz") else ""
    ds = tf.data.TFRecordDataset(list(files), compression_type=compression)
    if num_examples is not None:
        ds = ds.apply(tf.data.experimental.assert_cardinality(num_examples))
    if is_training:
        ds = ds.shuffle(options.shuffle_buffer, seed=options.seed, reshuffle_each_iteration=True)
    size = options.image_size

    def label_of(serialized: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        parsed = records.parse_example(serialized, decode_image=True)
        image = parsed["image"]
        image.set_shape([None, None, 3])
        label_id = parsed["class_label"]
        label = table.lookup(label_id)
        check = tf.debugging.assert_non_negative(
            label,
            message="image/class/label is not an id of the label map (0 means unlabelled)",
        )
        with tf.control_dependencies([check]):
            label = tf.identity(label)
        return image, label

    if is_training and options.augment:
        seeds = tf.data.Dataset.random(seed=options.seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds))

        def to_inputs(serialized: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            image, label = label_of(serialized)
            return _random_crop_flip(image, seed, options), label
    else:

        def to_inputs(serialized: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            image, label = label_of(serialized)
            return _resize(image, size), label

    ds = ds.map(to_inputs, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.map(lambda image, label: (tf.ensure_shape(image, [size, size, 3]), label))
    ds = ds.batch(options.batch_size, drop_remainder=False)
    return ds.prefetch(tf.data.AUTOTUNE)


@dataclass(frozen=True)
class DataLoader:
    """One split of a classification Examples artifact (Model Maker's ``DataLoader`` shape).

    Attributes:
      files: TFRecord files of the split.
      size: number of images.
      label_map: the artifact's ``label_map.json`` (1-based ids, names).
    """

    files: tuple[str, ...]
    size: int
    label_map: LabelMap

    @classmethod
    def from_examples(cls, examples_uri: str, split: str) -> DataLoader:
        """Read ``Split-<split>/`` and ``label_map.json`` of an Examples folder.

        Raises:
          DataError: no records for the split (the splits found are named), or no label map.
        """
        splits = list_record_files(examples_uri)
        files = splits.get(split)
        if not files:
            found = sorted(name for name, paths in splits.items() if paths)
            raise DataError(f"{examples_uri}: no records for split {split!r} (found: {found})")
        label_map = find_label_map(examples_uri)
        if label_map is None or not label_map.classes:
            raise DataError(f"{examples_uri}: no label_map.json with classes beside the records")
        return cls(files=tuple(files), size=count_examples(files), label_map=label_map)

    @property
    def num_classes(self) -> int:
        return len(self.label_map.classes)

    @property
    def index_to_label(self) -> list[str]:
        """Class names in the order of the model's outputs (class index -> name)."""
        return self.label_map.names

    def gen_tf_dataset(self, options: InputOptions, is_training: bool = False) -> tf.data.Dataset:
        """Batches of this split (see :func:`make_dataset`), of known length."""
        return make_dataset(
            self.files,
            options,
            is_training=is_training,
            class_ids=[c.id for c in self.label_map.classes],
            num_examples=self.size,
        )
