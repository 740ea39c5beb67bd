"""Nearest-neighbour upsampling by an integer factor, built from reshapes and concats.

``keras.layers.UpSampling2D``/``tf.image.resize`` lower to ResizeNearestNeighbor,
whose gradient has no XLA kernel on CPU, so ``jit_compile=True`` training fails.
Repeating every row and column with concatenations is XLA-friendly, quantizes
trivially (every op keeps the input's scale) and converts to TFLite builtins.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tf_keras as keras


@keras.utils.register_keras_serializable(package="qatflow")
class NearestUpsampling(keras.layers.Layer):
    """Repeat each pixel ``scale`` x ``scale`` times, then crop to ``target_size``.

    Pixel ``(i, j)`` of the output is pixel ``(i // scale, j // scale)`` of the
    input. When the target is smaller than ``scale`` times the input (odd
    feature sizes, e.g. 5 <- 3), the trailing rows/columns are cropped, which is
    what ``tf.compat.v1.image.resize_nearest_neighbor`` gives (automl's newer
    code uses ``tf.image.resize``, which differs only on such odd sizes).

    Args:
      target_size: (height, width) of the output; None means ``scale`` x input.
      scale: integer upsampling factor.
    """

    def __init__(
        self, target_size: tuple[int, int] | None = None, scale: int = 2, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.target_size = tuple(int(v) for v in target_size) if target_size else None
        self.scale = int(scale)

    def compute_output_shape(self, input_shape: Any) -> tf.TensorShape:
        shape = tf.TensorShape(input_shape).as_list()
        if self.target_size is not None:
            return tf.TensorShape([shape[0], *self.target_size, shape[3]])
        return tf.TensorShape([shape[0], shape[1] * self.scale, shape[2] * self.scale, shape[3]])

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        _, height, width, channels = inputs.shape.as_list()
        if None in (height, width, channels):
            raise ValueError(f"{self.name}: needs a static spatial shape, got {inputs.shape}")
        s = self.scale
        # Repeat columns: [B, H, W, 1, C] -> [B, H, W, s, C] -> [B, H, W*s, C].
        x = tf.reshape(inputs, [-1, height, width, 1, channels])
        x = tf.concat([x] * s, axis=3)
        x = tf.reshape(x, [-1, height, 1, width * s, channels])
        # Repeat rows: [B, H, 1, W*s, C] -> [B, H, s, W*s, C] -> [B, H*s, W*s, C].
        x = tf.concat([x] * s, axis=2)
        x = tf.reshape(x, [-1, height * s, width * s, channels])
        if self.target_size is not None:
            target_h, target_w = self.target_size
            if target_h > height * s or target_w > width * s:
                raise ValueError(
                    f"{self.name}: target {self.target_size} larger than {s}x input "
                    f"{(height, width)}"
                )
            if (target_h, target_w) != (height * s, width * s):
                x = x[:, :target_h, :target_w, :]
        return x

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"target_size": self.target_size, "scale": self.scale})
        return config
