"""The distribution strategies of both tasks' trainers, and chief-only writing for multi-worker.

``train.strategy`` (:data:`~model_maker.core.options.STRATEGIES`) names one:

* ``default``: TensorFlow's default strategy (one device of this process);
* ``gpus``: ``MirroredStrategy`` over this machine's GPUs;
* ``tpu``: ``TPUStrategy`` (a Cloud TPU, or the local one of a TPU VM);
* ``multi_worker``: ``MultiWorkerMirroredStrategy`` over the cluster in the
  ``TF_CONFIG`` environment variable (one process per worker, each runs the
  same training call; synchronous data parallelism with collective all-reduce).

A strategy that cannot be built here (no GPU, no TPU, no or a broken
``TF_CONFIG``) is a :class:`~model_maker.core.errors.UsageError` with one line
saying so, rather than a traceback from inside TensorFlow.

Multi-worker rules the trainers follow (Keras' multi-worker pattern):

* ``batch_size`` is the global batch: each step sees ``batch_size`` images over
  all replicas (:func:`check_global_batch` refuses a batch that does not split
  evenly), so learning rate and schedule mean the same as on one worker;
* every worker runs every step of the training call, saves included: reading a
  variable synchronised on read (batch-norm statistics, metrics) is a
  collective all workers must join. Only the chief's saves land in the real
  folders: the others write to a local temporary folder that
  :func:`worker_dirs` removes afterwards;
* a restarted job resumes from the chief's last checkpoint on every worker
  (:func:`restore_latest`), so all workers start from the same step.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import tensorflow as tf
import tf_keras as keras

from model_maker.core.errors import UsageError
from model_maker.core.options import DEFAULT_STRATEGY, MULTI_WORKER, STRATEGIES

LOG = logging.getLogger("qatflow")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check_tf_config() -> dict[str, Any]:
    """The parsed ``TF_CONFIG`` of a multi-worker job, or a UsageError saying what is wrong."""
    raw = os.environ.get("TF_CONFIG", "")
    if not raw.strip():
        raise UsageError(
            "strategy 'multi_worker': the TF_CONFIG environment variable is not set "
            '(it names the cluster and this task: {"cluster": {"worker": ["host:port", ...]}, '
            '"task": {"type": "worker", "index": 0}}); use strategy \'default\' on one machine'
        )
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UsageError(f"strategy 'multi_worker': TF_CONFIG is not JSON ({exc})") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not cluster or not isinstance(task, dict):
        raise UsageError(
            "strategy 'multi_worker': TF_CONFIG needs a 'cluster' (job -> addresses) and a "
            "'task' ({'type': ..., 'index': ...})"
        )
    task_type, index = task.get("type"), task.get("index", 0)
    jobs = cluster.get(task_type)
    if not isinstance(jobs, list) or not isinstance(index, int) or not 0 <= index < len(jobs):
        raise UsageError(
            f"strategy 'multi_worker': TF_CONFIG's task {task_type!r} index {index!r} is not "
            f"in its cluster {sorted(cluster)}"
        )
    return config


def make_strategy(
    name: str | None,
    tpu: str | None = None,
    gcp_project: str | None = None,
    tpu_zone: str | None = None,
) -> tf.distribute.Strategy:
    """The strategy called ``name`` (see the module doc; None means ``default``).

    ``multi_worker`` must be built before this process runs any TensorFlow
    op (TensorFlow configures its collectives at start-up): the trainers
    build it first thing.

    Raises:
      UsageError: an unknown name, or a strategy this machine or job cannot run.
    """
    name = name or DEFAULT_STRATEGY
    if name == DEFAULT_STRATEGY:
        return tf.distribute.get_strategy()
    if name == "gpus":
        if not tf.config.list_physical_devices("GPU"):
            raise UsageError(
                "strategy 'gpus': no GPU found (TensorFlow sees none on this machine); "
                "use strategy 'default'"
            )
        return tf.distribute.MirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
                tpu, zone=tpu_zone, project=gcp_project
            )
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as exc:
            raise UsageError(
                f"strategy 'tpu': no TPU found ({_first_line(exc)}); give the TPU name or run on "
                "a TPU VM, or use strategy 'default'"
            ) from None
        return tf.distribute.TPUStrategy(resolver)
    if name == MULTI_WORKER:
        _check_tf_config()
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as exc:  # collectives configured after the first op
            raise UsageError(
                f"strategy 'multi_worker': {_first_line(exc)} (build the strategy before "
                "TensorFlow runs anything in this process, one training per process)"
            ) from None
    raise UsageError(f"strategy {name!r} is not supported (use one of {', '.join(STRATEGIES)})")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the job's checkpoints, logs and artifacts.

    True for every single-process strategy; with ``multi_worker``, only for the
    chief (the ``chief`` task, or worker 0 when the cluster has no chief).
    """
    return bool(strategy.extended.should_checkpoint)


def num_workers(strategy: tf.distribute.Strategy) -> int:
    """Processes training together (1 but with ``multi_worker``)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return 1
    spec = resolver.cluster_spec()
    return sum(spec.num_tasks(job) for job in spec.jobs if job in ("chief", "worker")) or 1


def check_global_batch(batch_size: int, strategy: tf.distribute.Strategy) -> int:
    """The per-replica batch of the global ``batch_size``.

    Raises:
      UsageError: ``batch_size`` does not split evenly over the replicas (the
        step would otherwise see a different batch than the one configured).
    """
    replicas = int(strategy.num_replicas_in_sync)
    if batch_size % replicas:
        raise UsageError(
            f"train.batch_size {batch_size} is the global batch and must split evenly over the "
            f"{replicas} replicas of this job; use a multiple of {replicas}"
        )
    return batch_size // replicas


def shard_by_batch(dataset: tf.data.Dataset, strategy: tf.distribute.Strategy) -> tf.data.Dataset:
    """``dataset`` (global batches) set to be split by data, not by file, over the workers.

    Every worker reads the same records and keeps its share of each global
    batch, so a step trains on exactly the batch a one-worker run with the
    same seed trains on. File sharding (TensorFlow's default when it can)
    would change which images meet in a batch and fails with fewer files
    than workers. A no-op on one worker.
    """
    if num_workers(strategy) <= 1:
        return dataset
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


@contextlib.contextmanager
def worker_dirs(
    strategy: tf.distribute.Strategy, *dirs: str | None
) -> Iterator[tuple[str | None, ...]]:
    """The folders this process writes instead of ``dirs``: ``dirs`` on the chief; on
    another worker, folders in a local temporary folder removed on exit.

    Non-chief workers still make every save (see the module doc); this keeps
    their copies out of the job's outputs. None stays None.
    """
    if is_chief(strategy):
        yield tuple(dirs)
        return
    resolver = strategy.cluster_resolver
    root = tempfile.mkdtemp(prefix=f"qatflow-{resolver.task_type}{resolver.task_id}-")
    try:
        yield tuple(
            None if path is None else os.path.join(root, str(i)) for i, path in enumerate(dirs)
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def restore_latest(checkpoint: tf.train.Checkpoint, directory: str) -> str | None:
    """Restore ``checkpoint`` from the latest checkpoint in ``directory``; its path, or None.

    A non-chief worker saves into a temporary folder, so on a restart it reads
    the chief's folder (shared storage) to resume from the same step as the chief.
    """
    latest = tf.train.latest_checkpoint(directory)
    if latest:
        checkpoint.restore(latest).expect_partial()
        LOG.info("worker resumed from the chief's %s", latest)
    return latest


def chief_values(values: list[Any], strategy: tf.distribute.Strategy) -> list[Any]:
    """The chief's ``values`` (arrays) on every worker: one all-reduce sum to which
    every replica but the first adds zeros, so the result is the chief's exactly.

    What each worker computed alone (calibrated quantizer ranges, say) may
    differ in the last bits; distributed training needs one set. ``values``
    unchanged in a one-worker job. Every worker must call this.
    """
    if num_workers(strategy) <= 1:
        return list(values)
    constants = [tf.constant(v) for v in values]

    def first_replica_only() -> list[tf.Tensor]:
        context = tf.distribute.get_replica_context()
        first = tf.equal(context.replica_id_in_sync_group, 0)
        mine = [tf.where(first, c, tf.zeros_like(c)) for c in constants]
        return context.all_reduce(tf.distribute.ReduceOp.SUM, mine)

    summed = strategy.run(first_replica_only)
    return [strategy.experimental_local_results(t)[0].numpy() for t in summed]


def distributed(
    model: keras.Model, strategy: tf.distribute.Strategy, build: Callable[[], keras.Model]
) -> keras.Model:
    """``model`` itself under the default strategy; else ``build()`` made in the
    strategy's scope, holding the chief's weights of ``model`` (:func:`chief_values`).

    For a model built outside the strategy (the QAT rewrite, whose many
    intermediate models would each be a round of collectives under
    ``multi_worker``, and hung there). ``build`` must give the same architecture
    (the same weights in the same order). Every worker must call this.
    """
    if strategy is tf.distribute.get_strategy():
        return model
    weights = chief_values(model.get_weights(), strategy)
    with strategy.scope():
        copy = build()
    copy.set_weights(weights)
    return copy


def undistributed(
    model: keras.Model, strategy: tf.distribute.Strategy, build: Callable[[], keras.Model]
) -> keras.Model:
    """``model`` itself under the default strategy; else ``build()`` (the same
    architecture, made outside any strategy) holding ``model``'s weights.

    Saving and exporting a model whose variables are distributed can trace a
    cross-replica reduction of the batch-norm statistics into the serving graph,
    which SavedModel refuses ("ConcreteFunction that uses distributed variables
    ... cannot be saved"). Every worker must call this (reading the weights is a
    collective), as every worker saves.
    """
    if strategy is tf.distribute.get_strategy():
        return model
    copy = build()
    copy.set_weights(model.get_weights())
    return copy
