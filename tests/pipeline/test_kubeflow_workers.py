"""``kubeflow.trainer_workers``: the Trainer on Vertex AI worker pools, read back from the IR.

The pipeline is compiled with one worker (the Trainer in its own pod, as before)
and with three workers of two T4 GPUs each. The CustomJob is read from the
compiled Trainer task; then the launching executor runs on that task's
parameters, parsed by the helpers of TFX's Kubeflow V2 entrypoint as the pod
parses them, with Vertex AI's ``JobServiceClient`` replaced by a fake (no
network). The request it would send is checked, and each pool's container
command is parsed the way ``tfx.scripts.run_executor`` parses it on a replica.
A last test starts two processes with the ``TF_CONFIG`` Vertex AI gives a
chief and a worker, and checks that ``train.strategy: multi_worker`` reads it.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import types

import pytest

from components.trainer import vertex
from model_maker.core.errors import SettingsError
from pipeline.config import load_config
from pipeline.kubeflow import build_kubeflow_pipeline, compile_pipeline, trainer_worker_pools

REPO = pathlib.Path(__file__).resolve().parents[2]
CPU_IMAGE = "registry.example/qatflow-cpu:1"
GPU_IMAGE = "registry.example/qatflow-gpu:1"
BASE = [
    "name=qatflow-kfp",
    "data.input=gs://bucket/images",
    "data.annotations=gs://bucket/annotations.json",
    "kubeflow.pipeline_root=gs://bucket/root",
    f"kubeflow.cpu_image={CPU_IMAGE}",
    f"kubeflow.gpu_image={GPU_IMAGE}",
    "kubeflow.accelerator_type=NVIDIA_TESLA_T4",
    "kubeflow.accelerator_count=2",
    # the global batches: 3 workers x 2 GPUs = 6 replicas of 8 and 6 images
    "train.batch_size=48",
    "qat.batch_size=36",
]
WORKERS = [
    "kubeflow.trainer_workers=3",
    "kubeflow.trainer_machine_type=n1-standard-16",
    "kubeflow.vertex_project=my-project",
    "kubeflow.vertex_region=europe-west4",
]
#: Each trainer: (its launching executor, its own executor, its Model output).
TRAINERS = {
    "Trainer": (
        "components.trainer.vertex.Executor",
        "components.trainer.executor.Executor",
        "model",
    ),
    "QATTrainer": (
        "components.qat_trainer.vertex.Executor",
        "components.qat_trainer.executor.Executor",
        "qat_model",
    ),
}


def _compile(directory, overrides):
    path = directory / "pipeline.json"
    compile_pipeline(load_config(overrides=BASE + overrides), str(path))
    return json.loads(path.read_text())["pipelineSpec"]


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory):
    return _compile(tmp_path_factory.mktemp("kfp1"), [])


@pytest.fixture(scope="module")
def three_workers(tmp_path_factory):
    return _compile(tmp_path_factory.mktemp("kfp3"), WORKERS)


def _container(spec, task):
    return spec["deploymentSpec"]["executors"][f"{task}_executor"]["container"]


def _class_path(container):
    args = container["args"]
    return args[args.index("--executor_class_path") + 1]


def _parameters(spec, task):
    """The task's constant parameters: name -> string value."""
    params = spec["root"]["dag"]["tasks"][task]["inputs"]["parameters"]
    return {k: v["runtimeValue"]["constantValue"]["stringValue"] for k, v in params.items()}


def test_one_worker_trains_in_the_trainer_pod(one_worker):
    for task in ("Trainer", "QATTrainer"):
        container = _container(one_worker, task)
        assert container["image"] == GPU_IMAGE
        assert container["resources"]["accelerator"] == {"type": "NVIDIA_TESLA_T4", "count": "2"}
        assert vertex.CUSTOM_CONFIG_KEY not in _parameters(one_worker, task)
        assert _class_path(container) == TRAINERS[task][1]
        inputs = one_worker["components"][task]["inputDefinitions"]["parameters"]
        assert vertex.CUSTOM_CONFIG_KEY not in inputs


@pytest.mark.parametrize("task", TRAINERS)
def test_three_workers_carry_the_worker_pools_in_the_ir(three_workers, task):
    container = _container(three_workers, task)
    # The trainer's pod only submits and waits: CPU image, no accelerator.
    assert _class_path(container) == TRAINERS[task][0]
    assert container["command"][-1] == ("components.kfp_entrypoint")
    assert container["image"] == CPU_IMAGE
    assert "accelerator" not in container["resources"]

    job = json.loads(_parameters(three_workers, task)[vertex.CUSTOM_CONFIG_KEY])
    assert job[vertex.ENABLE_VERTEX_KEY] is True
    assert job[vertex.VERTEX_REGION_KEY] == "europe-west4"
    args = job[vertex.TRAINING_ARGS_KEY]
    assert args["project"] == "my-project"
    assert args["display_name"] == f"qatflow-kfp-{task}"
    machine = {
        "machine_type": "n1-standard-16",
        "accelerator_type": "NVIDIA_TESLA_T4",
        "accelerator_count": 2,
    }
    assert args["job_spec"]["worker_pool_specs"] == [
        {"machine_spec": machine, "replica_count": 1, "container_spec": {"image_uri": GPU_IMAGE}},
        {"machine_spec": machine, "replica_count": 2, "container_spec": {"image_uri": GPU_IMAGE}},
    ]


def test_three_workers_change_nothing_but_the_trainers(one_worker, three_workers):
    for task in one_worker["root"]["dag"]["tasks"]:
        if task in TRAINERS:
            one, three = _parameters(one_worker, task), _parameters(three_workers, task)
            assert {k: v for k, v in three.items() if k != vertex.CUSTOM_CONFIG_KEY} == one
            continue
        assert _container(three_workers, task) == _container(one_worker, task), task
        assert (
            three_workers["root"]["dag"]["tasks"][task] == one_worker["root"]["dag"]["tasks"][task]
        ), task


def test_the_keys_are_tfx_own():
    from tfx.extensions.google_cloud_ai_platform import constants

    assert vertex.ENABLE_VERTEX_KEY == constants.ENABLE_VERTEX_KEY
    assert vertex.VERTEX_REGION_KEY == constants.VERTEX_REGION_KEY
    assert vertex.Executor.REPLICA_EXECUTOR == TRAINERS["Trainer"][1]


# -- the launching executor, as the Trainer's pod runs it --------------------------------


def _pod_execution(spec, task, root):
    """(inputs, outputs, exec_properties) of ``task``, parsed from an ExecutorInput by the
    functions TFX's Kubeflow V2 entrypoint uses, with artifacts under ``root``."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils as utils

    component = spec["components"][task]
    task_spec = spec["root"]["dag"]["tasks"][task]

    def artifacts(definitions, side):
        return {
            name: {
                "artifacts": [
                    {
                        "name": f"{side}-{name}",
                        "type": definition["artifactType"],
                        "uri": str(root / side / name),
                        "metadata": {},
                    }
                ]
            }
            for name, definition in definitions.items()
        }

    payload = {
        "inputs": {
            "parameters": {
                name: value["runtimeValue"]["constantValue"]
                for name, value in task_spec["inputs"]["parameters"].items()
            },
            "artifacts": artifacts(component["inputDefinitions"]["artifacts"], "in"),
        },
        "outputs": {
            "artifacts": artifacts(component["outputDefinitions"]["artifacts"], "out"),
            "outputFile": str(root / "executor_output.json"),
        },
    }
    executor_input = json_format.ParseDict(payload, pipeline_spec_pb2.ExecutorInput())
    return (
        utils.parse_raw_artifact_dict(executor_input.inputs.artifacts),
        utils.parse_raw_artifact_dict(executor_input.outputs.artifacts),
        utils.parse_execution_properties(
            executor_input.inputs.parameter_values, executor_input.inputs.parameters
        ),
    )


class FakeJobService:
    """Vertex AI's ``JobServiceClient``: records the request; the job ends in ``state``,
    and its chief leaves ``chief_files`` (name -> JSON) in the trainer's Model output."""

    requests: list = []
    state = "JOB_STATE_SUCCEEDED"
    chief_files: dict = {}

    def __init__(self, client_options):
        self.endpoint = client_options["api_endpoint"]

    def create_custom_job(self, parent, custom_job):
        from google.cloud.aiplatform_v1.types import CustomJob

        CustomJob(custom_job)  # a field Vertex AI does not know fails here
        self.requests.append((self.endpoint, parent, custom_job))
        _, _, outputs = _replica_args(custom_job["job_spec"]["worker_pool_specs"][0])
        model_uri = next(a[0].uri for key, a in outputs.items() if key != "model_run")
        os.makedirs(model_uri, exist_ok=True)
        for name, content in self.chief_files.items():
            with open(os.path.join(model_uri, name), "w") as fh:
                json.dump(content, fh)
        return types.SimpleNamespace(name=f"{parent}/customJobs/123")

    def get_custom_job(self, name, retry=None):
        from google.cloud.aiplatform_v1.types import JobState

        return types.SimpleNamespace(state=JobState[self.state])


def _replica_args(pool):
    """(run_executor args, exec properties, output artifacts) of one pool's command,
    parsed as ``python -m tfx.scripts.run_executor`` on a replica parses them."""
    from tfx.scripts import run_executor
    from tfx.types import artifact_utils

    command = pool["container_spec"]["command"]
    assert command[:3] == ["python", "-m", "tfx.scripts.run_executor"]
    args, rest = run_executor.parse_flags(command[3:])
    assert rest == []
    outputs = artifact_utils.parse_artifact_dict(args.outputs)
    return args, json.loads(args.exec_properties), outputs


@pytest.fixture
def fake_vertex(monkeypatch):
    from tfx.extensions.google_cloud_ai_platform import training_clients

    FakeJobService.requests = []
    FakeJobService.state = "JOB_STATE_SUCCEEDED"
    FakeJobService.chief_files = {}
    monkeypatch.setattr(
        training_clients, "gapic", types.SimpleNamespace(JobServiceClient=FakeJobService)
    )
    return FakeJobService


#: Per trainer: the files its chief writes, and the ML Metadata properties they give.
CHIEF_FILES = {
    "Trainer": (
        {"metrics.json": {"AP": 0.41, "AP50": 0.62, "AR100": 0.5}},
        {"AP": 0.41, "AP50": 0.62},
    ),
    "QATTrainer": (
        {
            "qat.json": {"metrics": {"AP": 0.38, "AP50": 0.6}, "steps": 5},
            "qat_decision.json": {
                "mode": "auto",
                "qat": True,
                "candidate": "qat_int8",
                "reason": "QAT ran: ptq_int8 lost 3 AP",
                "metric": "AP",
                "ptq_metric": 0.35,
            },
        },
        {"fake_quant_AP": 0.38, "fake_quant_AP50": 0.6, "ptq_check_AP": 0.35},
    ),
}


@pytest.mark.parametrize("task", TRAINERS)
def test_the_launcher_submits_a_job_whose_replicas_run_the_trainer(
    three_workers, tmp_path, fake_vertex, task
):
    from tfx.types import artifact_utils
    from tfx.utils import import_utils

    launcher_path, replica_path, model_key = TRAINERS[task]
    fake_vertex.chief_files, properties = CHIEF_FILES[task]
    inputs, outputs, exec_properties = _pod_execution(three_workers, task, tmp_path)
    launcher = import_utils.import_class_by_path(_class_path(_container(three_workers, task)))
    launcher().Do(inputs, outputs, exec_properties)

    [(endpoint, parent, job)] = fake_vertex.requests
    assert endpoint == "europe-west4-aiplatform.googleapis.com"
    assert parent == "projects/my-project/locations/europe-west4"
    assert job["display_name"] == f"qatflow-kfp-{task}"
    pools = job["job_spec"]["worker_pool_specs"]
    assert [p["replica_count"] for p in pools] == [1, 2]
    assert [p["container_spec"]["image_uri"] for p in pools] == [GPU_IMAGE, GPU_IMAGE]
    assert [p["machine_spec"]["accelerator_count"] for p in pools] == [2, 2]
    assert pools[0]["container_spec"]["command"] == pools[1]["container_spec"]["command"]

    # What a replica's `python -m tfx.scripts.run_executor` makes of its command.
    args, replica_props, replica_outputs = _replica_args(pools[1])
    replica_executor = import_utils.import_class_by_path(args.executor_class_path)
    assert f"{replica_executor.__module__}.{replica_executor.__name__}" == replica_path
    replica_inputs = artifact_utils.parse_artifact_dict(args.inputs)
    assert set(replica_inputs) == set(inputs) and set(replica_outputs) == set(outputs)
    for mine, theirs in ((inputs, replica_inputs), (outputs, replica_outputs)):
        for key in mine:
            assert theirs[key][0].uri == mine[key][0].uri, key
            assert theirs[key][0].type_name == mine[key][0].type_name, key
    assert vertex.CUSTOM_CONFIG_KEY not in replica_props
    assert {k: v for k, v in replica_props.items() if k != "options"} == {
        k: v for k, v in exec_properties.items() if k not in ("options", vertex.CUSTOM_CONFIG_KEY)
    }
    # The options: the pipeline's, but the multi_worker strategy.
    sent, compiled = json.loads(replica_props["options"]), json.loads(exec_properties["options"])
    section = sent["train"] if task == "Trainer" else sent
    assert section.pop("strategy") == "multi_worker"
    (compiled["train"] if task == "Trainer" else compiled).pop("strategy")
    assert sent == compiled

    # The chief's files become the Model's ML Metadata properties, as in one pod.
    model = outputs[model_key][0]
    for key, value in properties.items():
        assert model.get_float_custom_property(key) == pytest.approx(value), key
    if task == "QATTrainer":
        assert model.get_string_custom_property("qat_decision") == "trained"


def test_a_failed_job_fails_the_trainer(three_workers, tmp_path, fake_vertex):
    fake_vertex.state = "JOB_STATE_FAILED"
    inputs, outputs, exec_properties = _pod_execution(three_workers, "Trainer", tmp_path)
    with pytest.raises(RuntimeError, match="did not succeed"):
        vertex.Executor().Do(inputs, outputs, exec_properties)
    assert not outputs["model"][0].has_custom_property("AP")


def test_the_launcher_refuses_a_trainer_without_a_job(one_worker, tmp_path):
    from model_maker.core.errors import UsageError

    inputs, outputs, exec_properties = _pod_execution(one_worker, "Trainer", tmp_path)
    with pytest.raises(UsageError, match="trainer_workers > 1"):
        vertex.Executor().Do(inputs, outputs, exec_properties)


# -- settings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, key, words",
    [
        (["kubeflow.trainer_workers=0"], "kubeflow.trainer_workers", "at least 1"),
        (WORKERS[:2] + WORKERS[3:], "kubeflow.vertex_project", "need vertex_project"),
        (WORKERS[:3], "kubeflow.vertex_region", "need vertex_region"),
        (WORKERS + ["kubeflow.trainer_machine_type="], "kubeflow.trainer_machine_type", "need"),
        (WORKERS + ["kubeflow.vertex_region=US Central"], "kubeflow.vertex_region", "region"),
        (
            WORKERS + ["kubeflow.accelerator_type=TPU_V3", "kubeflow.accelerator_count=8"],
            "kubeflow.accelerator_type",
            "GPU or CPU",
        ),
        (WORKERS + ["train.batch_size=64"], "kubeflow.trainer_workers", "multiple of 6"),
        (WORKERS + ["qat.batch_size=32"], "kubeflow.trainer_workers", "qat.batch_size 32"),
        (
            WORKERS + ["kubeflow.accelerator_type=", "train.batch_size=64", "qat.batch_size=33"],
            "kubeflow.trainer_workers",
            "multiple of 3",
        ),
    ],
)
def test_bad_worker_settings_are_one_line_errors(overrides, key, words):
    with pytest.raises(SettingsError) as info:
        load_config(overrides=BASE + overrides)
    message = str(info.value)
    assert message.startswith(f"{key}: ") and words in message and "\n" not in message, message


def test_settings_kubeflow_cannot_run_fail_at_compile():
    config = load_config(overrides=BASE + ["train.strategy=multi_worker"])
    with pytest.raises(SettingsError, match=r"^train.strategy: .*trainer_workers > 1"):
        build_kubeflow_pipeline(config)
    config = load_config(overrides=BASE + ["qat.strategy=multi_worker"])
    with pytest.raises(SettingsError, match=r"^qat.strategy: .*trainer_workers > 1"):
        build_kubeflow_pipeline(config)
    # Kubeflow's own accelerator names are not Vertex AI's.
    config = load_config(overrides=BASE + WORKERS + ["kubeflow.accelerator_type=nvidia.com/gpu"])
    with pytest.raises(SettingsError, match=r"^kubeflow.accelerator_type: .*NVIDIA_TESLA_T4"):
        trainer_worker_pools(config)
    # CPU workers: no accelerator in the machine spec.
    config = load_config(overrides=BASE + WORKERS + ["kubeflow.accelerator_count=0"])
    assert [p["machine_spec"] for p in trainer_worker_pools(config)] == [
        {"machine_type": "n1-standard-16"}
    ] * 2


# -- what the replicas get: Vertex AI's TF_CONFIG ------------------------------------------

#: Each replica: build the strategy from TF_CONFIG, sum 1 (chief) and 2 (worker) over
#: the cluster (only works if the replicas found each other), print what it saw.
REPLICA = """
import json, tensorflow as tf
from model_maker.core import strategy as s
st = s.make_strategy("multi_worker")
total = st.reduce(tf.distribute.ReduceOp.SUM, st.run(
    lambda: tf.constant(1.0 if st.cluster_resolver.task_type == "chief" else 2.0)), axis=None)
print("RESULT " + json.dumps({"chief": s.is_chief(st), "workers": s.num_workers(st),
    "replicas": int(st.num_replicas_in_sync), "sum": float(total),
    "task": st.cluster_resolver.task_type}))
"""


def _free_ports(count):
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def test_multi_worker_reads_the_tf_config_vertex_sets(tmp_path):
    # Vertex AI: pool 0 is "chief", pool 1 "worker"; it adds "environment" and "job".
    chief, worker = (f"127.0.0.1:{port}" for port in _free_ports(2))
    cluster = {"chief": [chief], "worker": [worker]}
    procs = []
    for task in ("chief", "worker"):
        tf_config = {
            "cluster": cluster,
            "task": {"type": task, "index": 0},
            "environment": "cloud",
            "job": {"worker_pool_specs": [{"replica_count": 1}, {"replica_count": 1}]},
        }
        env = dict(os.environ, TF_CONFIG=json.dumps(tf_config), CUDA_VISIBLE_DEVICES="")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", REPLICA],
                cwd=tmp_path,
                env={**env, "PYTHONPATH": str(REPO)},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
        )
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=180)
            assert proc.returncode == 0, err[-3000:]
            [line] = [x for x in out.splitlines() if x.startswith("RESULT ")]
            results.append(json.loads(line[len("RESULT ") :]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert results == [
        {"chief": True, "workers": 2, "replicas": 2, "sum": 3.0, "task": "chief"},
        {"chief": False, "workers": 2, "replicas": 2, "sum": 3.0, "task": "worker"},
    ]
