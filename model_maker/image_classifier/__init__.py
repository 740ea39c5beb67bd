"""Image classification: MobileNetV2, ResNet50, MobileNet-MultiAVG and EfficientNet-Lite.

Modules: ``models/`` (functional tf_keras builders, one per architecture),
``image_classifier_spec`` (a ``ModelSpec`` per architecture), ``hparams``
(``HParams``), ``train_lib`` (``create_model``, ``train``, ``evaluate``),
``dataloader`` (Examples records -> batches) and ``qat`` (TFMOT fake quant and
its coverage report).
"""
