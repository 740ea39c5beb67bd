"""Kubeflow V2 compilation: the JSON parses as kfp's PipelineSpec; DAG, images, resources."""

import json

import pytest

from pipeline.config import load_config
from pipeline.kubeflow import compile_pipeline, load_pipeline_spec

EXPECTED_DEPENDENCIES = {
    "DetectionExampleGen": set(),
    "Trainer": {"DetectionExampleGen"},
    "QATTrainer": {"DetectionExampleGen", "Trainer"},
    "TFLiteConverter": {"DetectionExampleGen", "Trainer", "QATTrainer"},
    "Evaluator": {"DetectionExampleGen", "Trainer", "TFLiteConverter"},
    "Pusher": {"Evaluator", "TFLiteConverter"},
}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("kfp") / "pipeline.json"
    config = load_config(
        overrides=[
            "name=qatflow-kfp",
            "data.input=gs://bucket/images",
            "data.annotations=gs://bucket/annotations.json",
            "kubeflow.pipeline_root=gs://bucket/root",
            "kubeflow.cpu_image=registry.example/qatflow-cpu:1",
            "kubeflow.gpu_image=registry.example/qatflow-gpu:1",
            "kubeflow.accelerator_type=NVIDIA_TESLA_T4",
            "kubeflow.accelerator_count=2",
            "kubeflow.trainer_memory_gib=32",
        ]
    )
    compile_pipeline(config, str(out))
    return out


def test_compiled_json_is_a_pipeline_spec(compiled):
    spec = load_pipeline_spec(str(compiled))
    assert spec.pipeline_info.name == "qatflow-kfp"
    assert set(spec.root.dag.tasks) == set(EXPECTED_DEPENDENCIES)
    for task, deps in EXPECTED_DEPENDENCIES.items():
        assert set(spec.root.dag.tasks[task].dependent_tasks) == deps, task


def test_images_commands_and_resources(compiled):
    document = json.loads(compiled.read_text())
    executors = document["pipelineSpec"]["deploymentSpec"]["executors"]
    for task in EXPECTED_DEPENDENCIES:
        container = executors[f"{task}_executor"]["container"]
        assert container["command"][-1] == ("components.kfp_entrypoint")
        resources = container["resources"]
        if task in ("Trainer", "QATTrainer"):
            assert container["image"] == "registry.example/qatflow-gpu:1"
            assert resources["accelerator"] == {"type": "NVIDIA_TESLA_T4", "count": "2"}
            assert resources["cpuLimit"] == 4.0 and resources["memoryLimit"] == 32.0
        else:
            assert container["image"] == "registry.example/qatflow-cpu:1"
            assert "accelerator" not in resources
            assert resources["cpuLimit"] == 2.0 and resources["memoryLimit"] == 8.0


def test_cluster_paths_reach_the_components(compiled):
    text = compiled.read_text()
    assert "gs://bucket/images" in text and "gs://bucket/annotations.json" in text
    document = json.loads(text)
    assert document["runtimeConfig"]["gcsOutputDirectory"] == "gs://bucket/root"
    # The Trainer resumes from a checkpoint folder under the cluster's pipeline root.
    assert "gs://bucket/root/checkpoints/trainer-" in text


def _artifact_schemas(node):
    """Every artifact type schema ({"schemaTitle"...} or {"instanceSchema"...}) in the IR."""
    if isinstance(node, dict):
        if "artifactType" in node:
            yield node["artifactType"]
        for value in node.values():
            yield from _artifact_schemas(value)
    elif isinstance(node, list):
        for value in node:
            yield from _artifact_schemas(value)


def test_every_artifact_type_imports_by_the_name_the_container_reads(compiled):
    # TFX's Kubeflow V2 entrypoint imports a custom artifact class by the title of its
    # schema in the IR (its TYPE_NAME): "qatflow.TFLiteModel" named no module, and every
    # task reading or writing TFLite models failed in its container.
    import yaml
    from tfx.orchestration.kubeflow.v2 import compiler_utils
    from tfx.utils import import_utils

    document = json.loads(compiled.read_text())
    titles = set()
    for schema in _artifact_schemas(document.get("pipelineSpec", document)):
        if "schemaTitle" in schema:
            titles.add(schema["schemaTitle"])
        else:
            titles.add(yaml.safe_load(schema["instanceSchema"]).get("title", "tfx.Artifact"))
    assert "components.TFLiteModel" in titles
    for title in titles:
        path = compiler_utils.TITLE_TO_CLASS_PATH.get(title, title)
        cls = import_utils.import_class_by_path(path)
        assert cls.TYPE_NAME == title or path != title, title
