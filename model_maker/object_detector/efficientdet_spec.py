"""``EfficientDetSpec``: the tflite-model-maker spec API on current TensorFlow.

Same constructor arguments and defaults as ``tflite_model_maker``'s
``EfficientDetSpec`` and the ``EfficientDetLite0Spec`` .. ``EfficientDetLite4Spec``
presets, with the methods ``create_model``, ``train``, ``evaluate`` and
``export_saved_model``. A notebook uses it without TFX::

    spec = EfficientDetLite0Spec(hparams={"num_classes": 2}, epochs=5, batch_size=8)
    train = DataLoader.from_examples(examples_dir, "train")
    model = spec.create_model()
    model = spec.train(model, train.gen_dataset(spec, is_training=True),
                       train.size // 8, None, None)
    spec.evaluate(model, val.gen_dataset(spec), None, val.annotations_json)

``hparams`` (a dict, ``"k=v,k2=v2"`` or a YAML path) overrides
:data:`TRAIN_HPARAMS` and the architecture fields of
:class:`~model_maker.object_detector.model_config.EfficientDetLiteConfig`
(e.g. ``image_size``); unknown keys are errors with a suggestion.

Differences from tflite-model-maker, on purpose: ``uri`` cannot reach TF Hub
offline, so an empty ``uri`` means random initialisation and ``"imagenet"``
loads the offline ImageNet EfficientNet-Lite0/1/2 backbone that ``make
pretrained`` converts (see :mod:`~model_maker.object_detector.model_io` for
what a ``uri`` may be);
``learning_rate`` (an hparam, default :class:`~model_maker.core.options.TrainOptions`'s)
is the peak learning rate for steps of ``batch_size`` images, as in the
pipeline config: automl and tflite-model-maker meant "per batch of 64, scaled
with the batch size"; here what you set is what the optimiser uses at the peak.
The same holds for ``lr_warmup_init`` (the rate at the first warm-up step).
Defaults that are settings of the pipeline (epochs, batch size, learning
rate, warm-up, EMA, freezing, seed, post-processing) come from the library's
settings classes, so they are written in one place.
"""

from __future__ import annotations

import functools
import logging
import re
import tempfile
import weakref
from collections.abc import Mapping
from typing import Any

import tensorflow as tf
import tf_keras as keras

from model_maker.core import strategy as strategy_lib
from model_maker.core.coco_metrics import coco_metrics
from model_maker.core.detection_postprocess import NMSOptions, tflite_detection_postprocess
from model_maker.core.errors import UsageError
from model_maker.core.frozen_graph import save_frozen
from model_maker.core.hparams import check_keys, parse_hparams
from model_maker.core.options import STRATEGIES as CORE_STRATEGIES
from model_maker.core.options import TrainOptions
from model_maker.core.postprocess import postprocess_global, postprocess_per_class
from model_maker.core.pretrained_cache import is_imagenet_uri
from model_maker.object_detector import train_lib
from model_maker.object_detector.anchors import Anchors
from model_maker.object_detector.dataloader import InputOptions, make_dataset
from model_maker.object_detector.hparams import ARCH_HPARAMS, TRAIN_HPARAMS
from model_maker.object_detector.losses import DetectionLoss
from model_maker.object_detector.model import PART_PATTERNS, build_efficientdet_lite
from model_maker.object_detector.model_config import EfficientDetLiteConfig, get_model_config
from model_maker.object_detector.model_io import TrainedModelConfig, load_pretrained_weights
from model_maker.object_detector.target_assigner import assign_targets

LOG = logging.getLogger("qatflow")

#: ``strategy`` names (None is Model Maker's name of "default"); see ``core.strategy``.
STRATEGIES = (None, *CORE_STRATEGIES)
PRE_MODES = (None, "infer")
POST_MODES = (None, "global", "per_class", "tflite")


def _quiet() -> bool:
    """Progress bars are off when the "qatflow" logger is set above INFO (e.g. ``--quiet``)."""
    return LOG.level > logging.INFO


def make_strategy(
    strategy: str | None,
    tpu: str | None = None,
    gcp_project: str | None = None,
    tpu_zone: str | None = None,
) -> tf.distribute.Strategy:
    """None/'default', 'gpus', 'tpu' or 'multi_worker' (see :mod:`model_maker.core.strategy`)."""
    return strategy_lib.make_strategy(strategy, tpu, gcp_project, tpu_zone)


class EfficientDetSpec:
    """EfficientDet-Lite model spec (tflite-model-maker's ``EfficientDetSpec`` API).

    Args:
      model_name: efficientdet-lite0..4 (``_`` may replace ``-``).
      uri: pretrained weights: "" (random init), "imagenet" (offline ImageNet
        backbone, Lite0..2, after ``make pretrained``), a folder/file of our
        saved weights, or a TF Hub handle / SavedModel path (see ``model_io``).
      hparams: overrides of :data:`TRAIN_HPARAMS` and architecture fields, as a
        dict, a ``"k=v,k2=v2"`` string or a YAML file path.
      model_dir: checkpoints and TensorBoard logs (a new temp folder if None).
      epochs: default training epochs.
      batch_size: default training batch size.
      steps_per_execution: train steps per compiled call.
      moving_average_decay: EMA decay of the weights (0 disables EMA).
      var_freeze_expr: regex (``re.match`` on variable names) of frozen variables.
      tflite_max_detections: detections of the ``tflite`` post-processing.
      strategy: None (or 'default'), 'gpus', 'tpu', 'multi_worker' (TF_CONFIG cluster;
        only the chief writes ``model_dir``, see :mod:`model_maker.core.strategy`),
        or a built ``tf.distribute.Strategy`` (a multi-worker job builds it before
        reading any data, as TensorFlow requires).
      tpu, gcp_project, tpu_zone: TPU cluster of the 'tpu' strategy.
      use_xla: compile the train step with XLA (``jit_compile``).
      profile: profile batches 2..3 into the TensorBoard logs.
      debug: run the train step eagerly.
      tf_random_seed: seed of weight init, shuffling and augmentation.
      verbose: Keras ``fit`` verbosity (0 silent, 1 progress bar, 2 one line per epoch)
        and evaluation progress bar; forced to 0 when the "qatflow" logger is set
        above INFO.
    """

    def __init__(
        self,
        model_name: str,
        uri: str,
        hparams: Mapping[str, Any] | str = "",
        model_dir: str | None = None,
        epochs: int = TrainOptions.epochs,
        batch_size: int = TrainOptions.batch_size,
        steps_per_execution: int = TrainOptions.steps_per_execution,
        moving_average_decay: float = TrainOptions.moving_average_decay,
        var_freeze_expr: str = TrainOptions.var_freeze_expr,
        tflite_max_detections: int = NMSOptions.max_detections,
        strategy: str | tf.distribute.Strategy | None = None,
        tpu: str | None = None,
        gcp_project: str | None = None,
        tpu_zone: str | None = None,
        use_xla: bool = False,
        profile: bool = False,
        debug: bool = False,
        tf_random_seed: int = TrainOptions.seed,
        verbose: int = 0,
    ) -> None:
        if not isinstance(strategy, tf.distribute.Strategy) and strategy not in STRATEGIES:
            make_strategy(strategy)  # raises the UsageError
        overrides = parse_hparams(hparams)
        check_keys(overrides, {**TRAIN_HPARAMS, **{k: None for k in ARCH_HPARAMS}})
        arch = {k: v for k, v in overrides.items() if k in ARCH_HPARAMS}
        self.model_name = model_name
        self.model_config: EfficientDetLiteConfig = get_model_config(model_name, **arch)
        train = {k: v for k, v in overrides.items() if k not in ARCH_HPARAMS}
        self.hparams: dict[str, Any] = {**TRAIN_HPARAMS, **train}
        if int(self.hparams["num_classes"]) < 1:
            raise UsageError(f"num_classes must be at least 1, got {self.hparams['num_classes']}")
        if not 0 < self.hparams["jitter_min"] <= self.hparams["jitter_max"]:
            raise UsageError("need 0 < jitter_min <= jitter_max")
        if not 0 <= moving_average_decay < 1:
            raise UsageError(f"moving_average_decay must be in [0, 1), got {moving_average_decay}")
        self.uri = uri
        self.model_dir = model_dir or tempfile.mkdtemp(prefix="efficientdet_")
        self.epochs = epochs
        self.batch_size = batch_size
        self.steps_per_execution = steps_per_execution
        self.moving_average_decay = moving_average_decay
        self.var_freeze_expr = var_freeze_expr
        self.tflite_max_detections = tflite_max_detections
        if isinstance(strategy, tf.distribute.Strategy):
            self.strategy_name: str | None = type(strategy).__name__
            self.strategy = strategy
        else:
            self.strategy_name = strategy
            self.strategy = make_strategy(strategy, tpu, gcp_project, tpu_zone)
        self.use_xla = use_xla
        self.profile = profile
        self.debug = debug
        self.tf_random_seed = tf_random_seed
        self.verbose = verbose
        self.history: keras.callbacks.History | None = None
        self._detect_fns: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._infer_fns: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    # -- properties -----------------------------------------------------------------

    @property
    def num_classes(self) -> int:
        return int(self.hparams["num_classes"])

    @property
    def image_size(self) -> int:
        return self.model_config.image_size

    @property
    def label_map(self) -> dict[int, str]:
        names = self.hparams.get("label_map") or {}
        out = {int(k): str(v) for k, v in names.items()}
        return {i: out.get(i, str(i)) for i in range(1, self.num_classes + 1)}

    @functools.cached_property
    def anchors(self) -> Anchors:
        return Anchors.from_config(self.model_config)

    def trained_config(self) -> TrainedModelConfig:
        """What ``load_trained_model`` needs to rebuild this spec's model."""
        return TrainedModelConfig(
            model_name=self.model_config.model_name,
            num_classes=self.num_classes,
            image_size=self.image_size,
            hparams={
                **self.hparams,
                **{k: v for k, v in self.model_config.as_dict().items() if k in ARCH_HPARAMS},
            },
            label_map=self.label_map,
            model_config=self.model_config.as_dict(),
        )

    # -- data -----------------------------------------------------------------------

    def label_encoder(self, boxes: tf.Tensor, classes: tf.Tensor) -> dict[str, tf.Tensor]:
        """Anchor targets of one image (boxes yxyx input pixels, 0-based classes, -1 padding)."""
        cls_targets, box_targets, num_positives = assign_targets(
            tf.constant(self.anchors.boxes_yxyx),
            boxes,
            classes,
            self.num_classes,
            match_threshold=self.hparams["match_threshold"],
            unmatched_threshold=self.hparams["unmatched_threshold"],
        )
        return {
            "cls_targets": cls_targets,
            "box_targets": box_targets,
            "num_positives": num_positives,
        }

    def input_options(self) -> InputOptions:
        return InputOptions(
            image_size=self.image_size,
            max_instances_per_image=int(self.hparams["max_instances_per_image"]),
            jitter_min=float(self.hparams["jitter_min"]),
            jitter_max=float(self.hparams["jitter_max"]),
            shuffle_buffer=int(self.hparams["shuffle_buffer"]),
            seed=self.tf_random_seed,
            # the workers of a job split each global batch by position
            ordered=strategy_lib.num_workers(self.strategy) > 1,
        )

    def make_dataset(
        self, files: list[str], batch_size: int | None = None, is_training: bool = False
    ) -> tf.data.Dataset:
        """Batches of the Examples ``files`` for this spec (targets included)."""
        return make_dataset(
            files,
            self.input_options(),
            batch_size or self.batch_size,
            is_training,
            label_encoder=self.label_encoder,
        )

    # -- model ----------------------------------------------------------------------

    def create_model(self) -> keras.Model:
        """The functional detector, with the ``uri`` weights loaded."""
        keras.utils.set_random_seed(self.tf_random_seed)
        with self.strategy.scope():
            model = build_efficientdet_lite(self.model_config, self.num_classes)
            load_pretrained_weights(model, self.uri, self.model_config.backbone_name)
        if not self.uri and self.var_freeze_expr:
            LOG.warning(
                "var_freeze_expr %r freezes layers of a randomly initialised model; "
                "pass var_freeze_expr='' to train the whole model",
                self.var_freeze_expr,
            )
        elif is_imagenet_uri(self.uri) and self.var_freeze_expr:
            random_frozen = [
                w.name
                for w in model.weights
                if train_lib.frozen(w, self.var_freeze_expr)
                and not re.match(PART_PATTERNS["backbone"], w.name)
            ]
            if random_frozen:
                LOG.warning(
                    "var_freeze_expr %r freezes %d randomly initialised variables (e.g. %s): "
                    "the ImageNet uri loads only the backbone; pass var_freeze_expr='' "
                    "(train all, recommended) or 'efficientnet' (backbone frozen)",
                    self.var_freeze_expr,
                    len(random_frozen),
                    random_frozen[0],
                )
        return model

    def loss_fn(self) -> train_lib.LossFn:
        """``(labels, class_logits, box_encodings) -> {det_loss, cls_loss, box_loss}``:
        focal + Huber (:class:`DetectionLoss`) with this spec's alpha/gamma/delta/weight."""
        return self._loss()

    def _loss(self) -> train_lib.LossFn:
        loss = DetectionLoss(
            self.num_classes,
            alpha=float(self.hparams["alpha"]),
            gamma=float(self.hparams["gamma"]),
            delta=float(self.hparams["delta"]),
            box_loss_weight=float(self.hparams["box_loss_weight"]),
        )

        def loss_fn(labels, class_logits, box_encodings):
            out = loss(
                class_logits,
                box_encodings,
                labels["cls_targets"],
                labels["box_targets"],
                labels["num_positives"],
            )
            return {"det_loss": out["total"], "cls_loss": out["cls"], "box_loss": out["box"]}

        return loss_fn

    def train(
        self,
        model: keras.Model,
        train_dataset: tf.data.Dataset,
        steps_per_epoch: int,
        val_dataset: tf.data.Dataset | None,
        validation_steps: int | None,
        epochs: int | None = None,
        batch_size: int | None = None,
        val_json_file: str | None = None,
    ) -> keras.Model:
        """Train ``model`` in place; resumes from the last checkpoint in ``model_dir``.

        ``train_dataset`` yields global batches of ``batch_size`` images, which the
        strategy splits over its replicas (``batch_size`` must split evenly). With
        ``multi_worker`` every worker calls this; only the chief writes ``model_dir``
        and all workers resume from the chief's last checkpoint there.

        ``val_dataset`` (evaluation batches) gives the COCO AP every ``map_freq``
        epochs and at the end, logged to TensorBoard under ``validation/``.
        Returns the model, holding the EMA weights when ``moving_average_decay > 0``.
        The Keras ``History`` is kept in ``self.history``.
        """
        epochs = epochs or self.epochs
        batch_size = batch_size or self.batch_size
        strategy_lib.check_global_batch(batch_size, self.strategy)
        train_dataset = strategy_lib.shard_by_batch(train_dataset, self.strategy)
        steps_per_epoch = max(int(steps_per_epoch), 1)
        hp = self.hparams
        total_steps = epochs * steps_per_epoch
        warmup_steps = int(hp["lr_warmup_epoch"] * steps_per_epoch)
        peak = float(hp["learning_rate"])
        with self.strategy.scope():
            schedule = train_lib.learning_rate_schedule(
                peak, float(hp["lr_warmup_init"]), warmup_steps, total_steps
            )
            optimizer = train_lib.build_optimizer(
                schedule,
                momentum=float(hp["momentum"]),
                clip_gradients_norm=float(hp["clip_gradients_norm"]),
                moving_average_decay=float(self.moving_average_decay),
            )
            # Built on every trainable variable (frozen ones too), so the EMA
            # covers the whole model when fit() finalises it.
            optimizer.build(model.trainable_variables)
            trainer = train_lib.DetectorTrainer(
                model,
                self._loss(),
                weight_decay=float(hp["weight_decay"]),
                var_freeze_expr=self.var_freeze_expr,
            )
            trainer.compile(
                optimizer=optimizer,
                steps_per_execution=self.steps_per_execution,
                jit_compile=self.use_xla,
                run_eagerly=self.debug,
            )
        with strategy_lib.worker_dirs(self.strategy, self.model_dir) as (write_dir,):
            return self._fit(
                model,
                trainer,
                optimizer,
                train_dataset,
                steps_per_epoch,
                val_dataset,
                validation_steps,
                epochs,
                val_json_file,
                write_dir or self.model_dir,
            )

    def _fit(
        self,
        model: keras.Model,
        trainer: train_lib.DetectorTrainer,
        optimizer: keras.optimizers.Optimizer,
        train_dataset: tf.data.Dataset,
        steps_per_epoch: int,
        val_dataset: tf.data.Dataset | None,
        validation_steps: int | None,
        epochs: int,
        val_json_file: str | None,
        write_dir: str,
    ) -> keras.Model:
        """``fit`` with checkpoints and logs in ``write_dir`` (``model_dir`` on the chief)."""
        hp = self.hparams
        state = train_lib.CheckpointState(write_dir, model, optimizer)
        if strategy_lib.is_chief(self.strategy):
            initial_epoch = state.restore()
        else:  # a non-chief worker: resume from the chief's checkpoint
            strategy_lib.restore_latest(state.checkpoint, self.model_dir)
            initial_epoch = int(state.epoch.numpy())
        LOG.info(
            "training %s: %d trainable of %d variables, epochs %d..%d, %d steps/epoch, peak lr %g",
            self.model_config.model_name,
            len(trainer.train_variables()),
            len(model.trainable_variables),
            initial_epoch + 1,
            epochs,
            steps_per_epoch,
            float(hp["learning_rate"]),
        )
        callbacks: list[keras.callbacks.Callback] = [train_lib.LearningRateLogger()]
        if val_dataset is not None:
            callbacks.append(
                train_lib.CocoEvalCallback(
                    lambda: self.evaluate(model, val_dataset, validation_steps, val_json_file),
                    every=int(hp["map_freq"]),
                    total_epochs=epochs,
                )
            )
        callbacks += [
            train_lib.EpochCheckpoint(state),
            train_lib.ScalarLogger(write_dir),
        ]
        if self.profile:
            callbacks.append(train_lib.Profiler(write_dir))
        verbose = 0 if _quiet() else self.verbose
        self.history = trainer.fit(
            train_dataset,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            initial_epoch=initial_epoch,
            callbacks=callbacks,
            verbose=verbose,
        )
        return model

    # -- inference ------------------------------------------------------------------

    def postprocess(
        self,
        class_logits: tf.Tensor,
        box_encodings: tf.Tensor,
        post_mode: str = "global",
        max_detections: int | None = None,
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        """(boxes normalised yxyx, classes 0-based float, scores, num) of raw outputs."""
        fn = postprocess_per_class if post_mode == "per_class" else postprocess_global
        return fn(
            class_logits,
            box_encodings,
            tf.constant(self.anchors.boxes_yxyx),
            self.image_size,
            NMSOptions(
                max_detections=max_detections or int(self.hparams["max_detections_per_image"]),
                score_threshold=float(self.hparams["nms_score_threshold"]),
                iou_threshold=float(self.hparams["nms_iou_threshold"]),
            ),
        )

    def _infer_fn(self, model: keras.Model):
        """``model(images, training=False)`` compiled once per model, for any batch size.

        The signature is fixed (float32 [None, S, S, 3]), so a last, smaller
        batch does not trace the model again, and the evaluation and the
        SavedModel export call the same trace: each trace of a fake-quant
        EfficientDet costs seconds.
        """
        if model not in self._infer_fns:
            size = self.image_size
            signature = tf.TensorSpec([None, size, size, 3], tf.float32, name="images")

            @tf.function(input_signature=[signature], autograph=False)  # Python control flow
            def infer(images):
                return model(images, training=False)

            self._infer_fns[model] = infer
        return self._infer_fns[model]

    def _detect_fn(self, model: keras.Model):
        """A compiled ``images -> detections`` of ``model``, traced once per model."""
        if model not in self._detect_fns:
            infer = self._infer_fn(model)

            @tf.function(input_signature=infer.input_signature, autograph=False)
            def detect(images):
                class_logits, box_encodings = infer(images)
                return self.postprocess(class_logits, box_encodings)

            self._detect_fns[model] = detect
        return self._detect_fns[model]

    def evaluate(
        self,
        model: keras.Model,
        dataset: tf.data.Dataset,
        steps: int | None,
        json_file: str | None = None,
    ) -> dict[str, float]:
        """COCO AP dict of ``model`` on an evaluation ``dataset`` (see ``coco_metrics``).

        ``dataset`` comes from ``make_dataset(..., is_training=False)``;
        ``steps`` batches are used (None: all). With ``json_file`` (the COCO
        ground truth of the split) detections are scored against it in original
        pixels; without, the ground truth is rebuilt from the dataset's boxes.
        Values are fractions 0..1 (pycocotools), -1 where undefined.
        """
        # deferred: progress bars load only when shown
        from tqdm.auto import tqdm

        detect = self._detect_fn(model)
        size = float(self.image_size)
        detections: list[dict[str, Any]] = []
        gt_images: list[dict[str, Any]] = []
        gt_annotations: list[dict[str, Any]] = []
        batches = dataset.take(steps) if steps else dataset
        progress = tqdm(batches, total=steps, desc="evaluate", disable=_quiet() or not self.verbose)
        for images, labels in progress:
            boxes, classes, scores, num = (t.numpy() for t in detect(images))
            ids = labels["image_id"].numpy()
            scales = labels["image_scale"].numpy()
            for i, image_id in enumerate(ids.tolist()):
                px = boxes[i, : num[i]] * size * scales[i]  # original pixels, yxyx
                for box, cls, score in zip(
                    px, classes[i, : num[i]], scores[i, : num[i]], strict=True
                ):
                    detections.append(
                        {
                            "image_id": int(image_id),
                            "category_id": int(cls) + 1,
                            "bbox": [
                                float(box[1]),
                                float(box[0]),
                                float(box[3] - box[1]),
                                float(box[2] - box[0]),
                            ],
                            "score": float(score),
                        }
                    )
                if json_file:
                    continue
                gt_images.append(
                    {
                        "id": int(image_id),
                        "height": int(labels["image_height"][i]),
                        "width": int(labels["image_width"][i]),
                    }
                )
                valid = labels["classes"][i].numpy() >= 0
                gt_px = labels["boxes"][i].numpy()[valid] * scales[i]
                for box, cls in zip(gt_px, labels["classes"][i].numpy()[valid], strict=True):
                    w, h = float(box[3] - box[1]), float(box[2] - box[0])
                    gt_annotations.append(
                        {
                            "id": len(gt_annotations) + 1,
                            "image_id": int(image_id),
                            "category_id": int(cls) + 1,
                            "bbox": [float(box[1]), float(box[0]), w, h],
                            "area": w * h,
                            "iscrowd": 0,
                        }
                    )
        ground_truth: Any = json_file or {
            "images": gt_images,
            "annotations": gt_annotations,
            "categories": [{"id": k, "name": v} for k, v in self.label_map.items()],
        }
        return coco_metrics(ground_truth, detections, self.label_map)

    # -- export ---------------------------------------------------------------------

    def export_saved_model(
        self,
        model: keras.Model,
        saved_model_dir: str,
        batch_size: int | None = None,
        pre_mode: str | None = "infer",
        post_mode: str | None = "global",
    ) -> str:
        """Write a SavedModel whose ``serving_default`` runs ``model`` with pre/post-processing.

        The weights are constants in the graph (a frozen graph, no variables): saving
        and restoring 3,000 variables of a fake-quant model took longer than the
        freezing, and the file loads in half the time (:mod:`~model_maker.core.frozen_graph`).
        To train further, rebuild the Keras model from its config and weights (``model_io``).

        pre_mode:
          * None: input ``images`` float32 [B, S, S, 3] pixels 0..255, already
            resized to the model's size S.
          * 'infer': input ``images`` uint8 [B, H, W, 3] of any size (one size per
            batch); resized keeping the aspect ratio and padded to S in the graph,
            and boxes are returned normalised to the original image (clipped).
            With post_mode 'tflite' the TFLite model needs a fixed input, so the
            input is float32 [1, S, S, 3] as with None.
        post_mode:
          * None: outputs ``class_logits`` [B, A, K] and ``box_encodings`` [B, A, 4].
          * 'global' / 'per_class': ``boxes`` [B, N, 4] normalised yxyx,
            ``classes`` [B, N] (0-based, float), ``scores`` [B, N],
            ``num_detections`` [B], N = ``max_detections_per_image``; class-agnostic
            NMS over each anchor's best class, or NMS per class.
          * 'tflite': the same four outputs from the ``TFLite_Detection_PostProcess``
            op (N = ``tflite_max_detections``, batch 1). In TensorFlow this op is a
            placeholder returning zeros; the outputs are real only after TFLite
            conversion (``TFLiteConverter.from_saved_model`` with custom ops).
        """
        if pre_mode not in PRE_MODES:
            raise UsageError(f"pre_mode {pre_mode!r} is not one of {PRE_MODES}")
        if post_mode not in POST_MODES:
            raise UsageError(f"post_mode {post_mode!r} is not one of {POST_MODES}")
        if post_mode == "tflite" and batch_size not in (None, 1):
            raise UsageError("post_mode 'tflite' exports batch size 1 (the TFLite op's)")
        size = self.image_size
        if post_mode == "tflite":
            batch_size = 1
        if pre_mode == "infer" and post_mode != "tflite":
            signature = tf.TensorSpec([batch_size, None, None, 3], tf.uint8, name="images")
        else:
            signature = tf.TensorSpec([batch_size, size, size, 3], tf.float32, name="images")
        anchors_yxhw = self.anchors.centers_yxhw_normalized()
        num_classes = self.num_classes
        hp = self.hparams
        tflite_max = self.tflite_max_detections
        resize_input = pre_mode == "infer" and post_mode != "tflite"
        infer = self._infer_fn(model)  # the evaluation's trace, when there was one

        def serve(images):
            scale_back = None
            if resize_input:
                hw = tf.cast(tf.shape(images)[1:3], tf.float32)
                scale = tf.reduce_min(float(size) / hw)
                new_hw = tf.cast(tf.round(hw * scale), tf.int32)
                resized = tf.image.resize(tf.cast(images, tf.float32), new_hw)
                images = tf.image.pad_to_bounding_box(resized, 0, 0, size, size)
                # normalised-to-input -> normalised-to-original
                scale_back = tf.tile(float(size) / (hw * scale), [2])
            class_logits, box_encodings = infer(images)
            if post_mode is None:
                return {"class_logits": class_logits, "box_encodings": box_encodings}
            if post_mode == "tflite":
                return tflite_detection_postprocess(
                    box_encodings,
                    tf.sigmoid(class_logits),
                    tf.constant(anchors_yxhw),
                    num_classes=num_classes,
                    nms=NMSOptions(
                        max_detections=tflite_max,
                        score_threshold=float(hp["nms_score_threshold"]),
                        iou_threshold=float(hp["nms_iou_threshold"]),
                    ),
                )
            boxes, classes, scores, num = self.postprocess(class_logits, box_encodings, post_mode)
            if scale_back is not None:
                boxes = tf.clip_by_value(boxes * scale_back, 0.0, 1.0)
            return {"boxes": boxes, "classes": classes, "scores": scores, "num_detections": num}

        save_frozen(serve, signature, saved_model_dir)  # reuses the evaluation's trace
        LOG.info(
            "exported SavedModel (pre %s, post %s) to %s", pre_mode, post_mode, saved_model_dir
        )
        return saved_model_dir


class EfficientDetLite0Spec(EfficientDetSpec):
    """EfficientDet-Lite0 (320 px) preset of :class:`EfficientDetSpec` (same arguments)."""

    def __init__(self, model_name: str = "efficientdet-lite0", uri: str = "", **kwargs: Any):
        super().__init__(model_name=model_name, uri=uri, **kwargs)


class EfficientDetLite1Spec(EfficientDetSpec):
    """EfficientDet-Lite1 (384 px) preset of :class:`EfficientDetSpec` (same arguments)."""

    def __init__(self, model_name: str = "efficientdet-lite1", uri: str = "", **kwargs: Any):
        super().__init__(model_name=model_name, uri=uri, **kwargs)


class EfficientDetLite2Spec(EfficientDetSpec):
    """EfficientDet-Lite2 (448 px) preset of :class:`EfficientDetSpec` (same arguments)."""

    def __init__(self, model_name: str = "efficientdet-lite2", uri: str = "", **kwargs: Any):
        super().__init__(model_name=model_name, uri=uri, **kwargs)


class EfficientDetLite3Spec(EfficientDetSpec):
    """EfficientDet-Lite3 (512 px) preset of :class:`EfficientDetSpec` (same arguments)."""

    def __init__(self, model_name: str = "efficientdet-lite3", uri: str = "", **kwargs: Any):
        super().__init__(model_name=model_name, uri=uri, **kwargs)


class EfficientDetLite4Spec(EfficientDetSpec):
    """EfficientDet-Lite4 (640 px) preset of :class:`EfficientDetSpec` (same arguments)."""

    def __init__(self, model_name: str = "efficientdet-lite4", uri: str = "", **kwargs: Any):
        super().__init__(model_name=model_name, uri=uri, **kwargs)
