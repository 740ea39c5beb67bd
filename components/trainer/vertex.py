"""The trainers on several workers: a Vertex AI CustomJob whose replicas run the trainer's executor.

Kubeflow compilation (:mod:`pipeline.kubeflow`, ``kubeflow.trainer_workers`` > 1)
gives the Trainer and the QATTrainer a launching executor (:class:`Executor` here,
:class:`components.qat_trainer.vertex.Executor`) and the job in the
``custom_config`` execution property (:func:`use_vertex_training`). The job is
launched by TFX's own Vertex training path,
``tfx.extensions.google_cloud_ai_platform.runner.start_cloud_training`` (its
``VertexJobClient`` builds the CustomJob, submits it and waits for it). TFX's
``trainer.executor.GenericExecutor`` wraps that call in a few lines, but its
module imports TensorFlow Data Validation, which this stack drops (see
DESIGN.md), so :class:`VertexTrainingExecutor` does those lines itself:

* ``custom_config`` holds TFX's keys: ``ai_platform_training_args`` (``project`` and
  the CustomJob: ``display_name`` and ``job_spec.worker_pool_specs``),
  ``ai_platform_enable_vertex`` and ``ai_platform_vertex_region``
  (:func:`custom_config` writes them);
* TFX sets every worker pool's container command to ``python -m
  tfx.scripts.run_executor`` with the trainer's own executor
  (``REPLICA_EXECUTOR``) and this execution's artifacts and properties, which
  :meth:`~VertexTrainingExecutor.replica_exec_properties` rids of ``custom_config``
  and gives the ``multi_worker`` strategy. Vertex AI sets ``TF_CONFIG`` on each
  replica of a job with more than one (pool 0 is ``chief``, pool 1 ``worker``);
  the strategy reads it, all replicas train together, and only the chief writes
  the artifacts;
* a replica cannot record ML Metadata properties, so after the job the launching
  executor sets them from the files the chief wrote (``metrics.json`` of the
  Trainer; ``qat_decision.json`` and ``qat.json`` of the QATTrainer), as the
  trainer in its own pod does.
"""

from __future__ import annotations

import copy
import json
import logging
from typing import Any

from tfx.dsl.components.base import base_executor, executor_spec
from tfx.types import artifact_utils

from components.trainer import executor
from model_maker.core.data import fileio
from model_maker.core.errors import UsageError
from model_maker.core.options import MULTI_WORKER
from model_maker.core.settings import replace, to_json
from model_maker.object_detector.trainer import METRICS_FILE  # classifiers: the same name
from model_maker.tasks import trainer_options

LOG = logging.getLogger("qatflow")

#: The execution property that carries the job (TFX's Trainer calls it the same).
CUSTOM_CONFIG_KEY = "custom_config"
#: Keys inside ``custom_config``, TFX's (``tfx.extensions.google_cloud_ai_platform``).
TRAINING_ARGS_KEY = "ai_platform_training_args"
ENABLE_VERTEX_KEY = "ai_platform_enable_vertex"
VERTEX_REGION_KEY = "ai_platform_vertex_region"


def custom_config(
    project: str, region: str, worker_pool_specs: list[dict[str, Any]], display_name: str
) -> dict[str, Any]:
    """The ``custom_config`` of a Vertex AI CustomJob with these worker pools.

    ``worker_pool_specs`` are Vertex AI ``WorkerPoolSpec`` mappings (``machine_spec``,
    ``replica_count``, ``container_spec.image_uri``); TFX fills in each pool's command.
    """
    return {
        TRAINING_ARGS_KEY: {
            "project": project,
            "display_name": display_name,
            "job_spec": {"worker_pool_specs": worker_pool_specs},
        },
        ENABLE_VERTEX_KEY: True,
        VERTEX_REGION_KEY: region,
    }


def use_vertex_training(component: Any, config: dict[str, Any], executor_class: type) -> Any:
    """Make ``component`` (a trainer) run ``executor_class``, which launches the job
    ``config`` (:func:`custom_config`), instead of training in its own container."""
    component.exec_properties[CUSTOM_CONFIG_KEY] = json.dumps(config, sort_keys=True)
    component.executor_spec = executor_spec.ExecutorClassSpec(executor_class)
    return component


class VertexTrainingExecutor(base_executor.BaseExecutor):
    """Runs :attr:`REPLICA_EXECUTOR` on the replicas of a Vertex AI CustomJob and waits.

    A trainer's launching executor names its replica executor, says how its options
    ask for ``multi_worker`` (:meth:`multi_worker_options`) and records what the
    replicas could not (:meth:`record`).
    """

    #: Import path of the executor every replica runs.
    REPLICA_EXECUTOR = ""

    def multi_worker_options(self, options: str) -> str:
        """The ``options`` JSON with the strategy set to ``multi_worker``."""
        raise NotImplementedError

    def record(self, output_dict: dict[str, list]) -> None:
        """After the job: the ML Metadata properties, from the files the chief wrote."""

    def replica_exec_properties(self, exec_properties: dict[str, Any]) -> dict[str, Any]:
        """The properties a replica's executor gets: ``multi_worker``, no job."""
        props = {k: v for k, v in exec_properties.items() if k != CUSTOM_CONFIG_KEY}
        props[executor.OPTIONS_KEY] = self.multi_worker_options(
            props.get(executor.OPTIONS_KEY) or "{}"
        )
        return props

    def Do(  # noqa: N802 - the TFX executor interface
        self,
        input_dict: dict[str, list],
        output_dict: dict[str, list],
        exec_properties: dict[str, Any],
    ) -> None:
        config = json.loads(exec_properties.get(CUSTOM_CONFIG_KEY) or "{}")
        job_args = copy.deepcopy(config.get(TRAINING_ARGS_KEY))  # TFX edits what it gets
        if not job_args or not config.get(ENABLE_VERTEX_KEY):
            raise UsageError(
                f"{type(self).__module__}: {CUSTOM_CONFIG_KEY} holds no Vertex AI training "
                "job (compile with kubeflow.trainer_workers > 1)"
            )
        # deferred: TFX's Vertex AI client (google-cloud-aiplatform) loads only to launch
        from tfx.extensions.google_cloud_ai_platform import runner

        runner.start_cloud_training(
            input_dict,
            output_dict,
            self.replica_exec_properties(exec_properties),
            self.REPLICA_EXECUTOR,
            job_args,
            None,
            enable_vertex=True,
            vertex_region=config.get(VERTEX_REGION_KEY),
        )
        self.record(output_dict)
        LOG.info("the Vertex AI job of %s finished", self.REPLICA_EXECUTOR)


def read_json(folder: str, name: str) -> dict[str, Any]:
    """``folder/name`` as JSON, or {} when the chief wrote no such file."""
    path = fileio.join(folder, name)
    return json.loads(fileio.read_text(path)) if fileio.exists(path) else {}


class Executor(VertexTrainingExecutor):
    """The Trainer on Vertex AI worker pools: each replica runs the Trainer's executor."""

    REPLICA_EXECUTOR = f"{executor.Executor.__module__}.{executor.Executor.__qualname__}"

    def multi_worker_options(self, options: str) -> str:
        parsed = trainer_options(options)
        if parsed.train.strategy != MULTI_WORKER:
            LOG.info("Trainer replicas: train.strategy %s -> multi_worker", parsed.train.strategy)
        return to_json(replace(parsed, train=replace(parsed.train, strategy=MULTI_WORKER)))

    def record(self, output_dict: dict[str, list]) -> None:
        model = artifact_utils.get_single_instance(output_dict[executor.MODEL_KEY])
        executor.record_metrics(model, read_json(model.uri, METRICS_FILE))
