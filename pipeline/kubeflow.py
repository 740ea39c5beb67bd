"""Kubeflow Pipelines: compile with TFX's KubeflowV2DagRunner, submit with kfp.Client.

The trainers run on the GPU image with an accelerator; every other component
runs on the CPU image. Resource requests and accelerators go into each task's
container spec (the PipelineSpec IR's ``resources``).

With ``kubeflow.trainer_workers`` > 1 the trainers train on Vertex AI worker
pools instead (:func:`trainer_worker_pools`): each trainer's task carries the
CustomJob in its ``custom_config`` parameter and runs a launching executor
(:mod:`components.trainer.vertex`) on the CPU image, which submits the job
through TFX's Vertex AI training client and waits; each replica runs the
trainer's own executor on the GPU image with the ``multi_worker`` strategy.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from model_maker.core.errors import SettingsError
from model_maker.core.options import MULTI_WORKER
from pipeline.config import PipelineConfig
from pipeline.pipeline import create_pipeline

LOG = logging.getLogger("qatflow.kubeflow")

#: Components that train: the GPU image and the accelerator, or with
#: ``kubeflow.trainer_workers`` > 1 Vertex AI worker pools.
TRAINER_IDS = ("Trainer", "QATTrainer")


def _on_worker_pools(config: PipelineConfig, component_id: str) -> bool:
    return component_id in TRAINER_IDS and config.kubeflow.trainer_workers > 1


def trainer_worker_pools(config: PipelineConfig) -> list[dict[str, Any]]:
    """The Vertex AI ``worker_pool_specs`` of each trainer: a chief, then the other workers.

    Every replica is a ``trainer_machine_type`` machine with ``accelerator_type`` x
    ``accelerator_count`` running ``gpu_image`` (TFX sets the command).
    """
    kf = config.kubeflow
    machine: dict[str, Any] = {"machine_type": kf.trainer_machine_type}
    if kf.trainer_gpus():
        # deferred: google-cloud-aiplatform loads only when compiling several workers
        from google.cloud.aiplatform_v1.types import AcceleratorType

        if kf.accelerator_type not in AcceleratorType.__members__:
            names = [n for n in AcceleratorType.__members__ if n.startswith("NVIDIA")]
            raise SettingsError(
                "kubeflow.accelerator_type",
                f"{kf.accelerator_type!r} is not a Vertex AI accelerator type, which "
                f"trainer_workers > 1 needs (one of {', '.join(names)})",
            )
        machine.update(accelerator_type=kf.accelerator_type, accelerator_count=kf.trainer_gpus())
    # Vertex AI's layout: pool 0 is the chief (one replica), pool 1 the other workers.
    return [
        {
            "machine_spec": dict(machine),
            "replica_count": count,
            "container_spec": {"image_uri": kf.gpu_image},
        }
        for count in (1, kf.trainer_workers - 1)
    ]


def _check_trainer_strategy(config: PipelineConfig) -> None:
    if config.kubeflow.trainer_workers > 1:
        return  # the replicas get multi_worker whatever the config says
    for key, strategy in (("train", config.train.strategy), ("qat", config.qat.strategy)):
        if strategy == MULTI_WORKER:
            raise SettingsError(
                f"{key}.strategy",
                "multi_worker on Kubeflow needs kubeflow.trainer_workers > 1 (a trainer's "
                "pod has no TF_CONFIG); set the workers, or use default or gpus",
            )


def _resources(cpu: float, memory_gib: float, accelerator: str = "", count: int = 0) -> Any:
    # deferred: KFP loads only when compiling or submitting to Kubeflow
    from kfp.pipeline_spec import pipeline_spec_pb2

    spec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec()
    if cpu:
        spec.cpu_limit = cpu
    if memory_gib:
        spec.memory_limit = memory_gib
    if accelerator and count:
        spec.accelerator.type = accelerator
        spec.accelerator.count = count
    return spec


def build_kubeflow_pipeline(config: PipelineConfig) -> Any:
    """The TFX pipeline with the cluster's paths and per-component resources.

    Raises:
      SettingsError: a setting Kubeflow cannot run (``multi_worker`` in one pod, an
        accelerator Vertex AI does not know for several workers).
    """
    kf = config.kubeflow
    _check_trainer_strategy(config)
    tfx_pipeline = create_pipeline(
        config,
        pipeline_root=kf.pipeline_root or config.runner.pipeline_root,
        data_input=kf.data_input or config.data.input,
        data_annotations=kf.data_annotations or config.data.annotations,
        push_destination=kf.push_destination
        or config.push.destination
        or os.path.join(kf.pipeline_root or config.runner.pipeline_root, "serving"),
        metadata_connection_config=None,
        beam_pipeline_args=list(kf.beam_pipeline_args),
    )
    for component in tfx_pipeline.components:
        if _on_worker_pools(config, component.id):
            # deferred: the launching executor's module loads the trainers' stack
            from components.trainer import vertex

            # This pod only submits the job and waits: no accelerator.
            component.with_vertex_training(
                vertex.custom_config(
                    kf.vertex_project,
                    kf.vertex_region,
                    trainer_worker_pools(config),
                    display_name=f"{config.name}-{component.id}",
                )
            )
            component.with_platform_config(_resources(kf.cpu, kf.memory_gib))
        elif component.id in TRAINER_IDS:
            component.with_platform_config(
                _resources(
                    kf.trainer_cpu, kf.trainer_memory_gib, kf.accelerator_type, kf.accelerator_count
                )
            )
        else:
            component.with_platform_config(_resources(kf.cpu, kf.memory_gib))
    return tfx_pipeline


def images_by_component(config: PipelineConfig, component_ids: list[str]) -> dict[str, str]:
    # deferred: TFX loads only when a pipeline runs or compiles
    from tfx.orchestration.kubeflow.v2 import pipeline_builder

    kf = config.kubeflow
    images = {
        cid: kf.gpu_image
        if cid in TRAINER_IDS and not _on_worker_pools(config, cid)
        else kf.cpu_image
        for cid in component_ids
    }
    # The runner falls back to this key for nodes it adds itself (importers, resolvers).
    images[pipeline_builder.DEFAULT_IMAGE_PATH_KEY] = kf.cpu_image
    return images


def compile_pipeline(config: PipelineConfig, output: str) -> str:
    """Compile the pipeline to a KFP PipelineSpec JSON file; returns its path."""
    # deferred: TFX loads only when a pipeline runs or compiles
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

    tfx_pipeline = build_kubeflow_pipeline(config)
    images = images_by_component(config, [c.id for c in tfx_pipeline.components])
    runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
        config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(default_image=images),
        output_dir=os.path.dirname(os.path.abspath(output)),
        output_filename=os.path.basename(output),
    )
    runner.run(tfx_pipeline)
    _use_qatflow_entrypoint(output)
    LOG.info("compiled %s to %s", config.name, output)
    return output


def _use_qatflow_entrypoint(path: str) -> None:
    """Make every task run :mod:`components.kfp_entrypoint` instead of TFX's entrypoint,
    which it wraps (same arguments): a usage error then ends the task in one line."""
    # deferred: the module names TFX's entrypoint; its TFX import is itself deferred
    from components import kfp_entrypoint

    with open(path, encoding="utf-8") as fh:
        document = json.load(fh)
    executors = document.get("pipelineSpec", document)["deploymentSpec"]["executors"]
    for executor in executors.values():
        command = executor.get("container", {}).get("command", [])
        if command and command[-1] == kfp_entrypoint.TFX_ENTRYPOINT:
            command[-1] = kfp_entrypoint.__name__
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(document, fh, sort_keys=True)  # as TFX's runner writes it


def load_pipeline_spec(path: str) -> Any:
    """Parse a compiled file into kfp's PipelineSpec proto (the form KFP accepts)."""
    # deferred: KFP loads only when compiling or submitting to Kubeflow
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    with open(path, encoding="utf-8") as fh:
        document = json.load(fh)
    spec = document.get("pipelineSpec", document)
    return json_format.ParseDict(
        spec, pipeline_spec_pb2.PipelineSpec(), ignore_unknown_fields=False
    )


def submit(
    config: PipelineConfig, package: str, host: str, namespace: str | None, experiment: str | None
) -> str:
    """Submit a compiled package to the KFP endpoint ``host``; returns the run's URL."""
    # deferred: KFP loads only when compiling or submitting to Kubeflow
    import kfp

    client = kfp.Client(host=host, namespace=namespace)
    result = client.create_run_from_pipeline_package(
        package,
        arguments={},
        experiment_name=experiment or config.name,
        run_name=f"{config.name}",
        namespace=namespace,
    )
    return f"{host.rstrip('/')}/#/runs/details/{result.run_id}"
