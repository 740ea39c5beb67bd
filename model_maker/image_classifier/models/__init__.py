"""Classifier architectures as functional tf_keras graphs that TFMOT quantizes whole.

Every builder returns ``images [B, S, S, 3] float32 pixels 0..255 -> logits
[B, num_classes]``: the first layer is the fixed ``input_normalization``
(``Rescaling``: ``(x - mean) / std``), the last three are global average
pooling, dropout and the ``Dense`` logits layer (no softmax: the loss takes
logits; an exported model appends its own softmax). No nested models, no
subclassed layers and no TFOpLambda, so ``quantize_model`` and the
TFLite converter can walk the graph.
"""
