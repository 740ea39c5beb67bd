"""Helpers of containers/smoke.sh (run on the host with the project's venv).

smoke.sh plays Kubeflow Pipelines on this machine: it runs every task of the
compiled PipelineSpec IR, in DAG order, inside the CPU image, each with the
command, arguments and ExecutorInput KFP would give it, on a local folder that
stands in for the bucket (``WORK`` on the host, mounted at ``/smoke`` in the
container). This module is KFP's driver and launcher for that loop:

``order``: the tasks of the IR in topological order (``dependentTasks`` and the
producers of input artifacts; ties in name order).

``command`` (KFP's driver): the ExecutorInput of one task, built the way KFP 2's
driver builds it, and the task's container ``command`` + ``args`` with ``{{$}}``
replaced by it:
  - ``inputs.parameters``: the task's constant parameters (the IR's
    ``runtimeValue.constantValue``, which KFP's driver passes in the
    ``parameters`` field, the one TFX's entrypoint reads when the args carry no
    inputs spec); ``constant`` values go to ``parameterValues``;
  - ``inputs.artifacts``: per input, the RuntimeArtifact that the producer task's
    launcher recorded (``record`` below): name (its ML Metadata id), uri, the
    producer's artifact schema, and as ``metadata`` every property the producer
    reported, after KFP's round trip through ML Metadata;
  - ``outputs.artifacts``: per output, uri ``<pipeline_root>/<pipeline>/<run>/<task>/<output>``
    (the run-scoped root of KFP's launcher), the schema of the IR's output
    definition, empty metadata;
  - ``outputs.outputFile``: ``/tmp/kfp_outputs/output_metadata.json`` (the path
    KFP's launcher gives every executor; smoke.sh binds a per-task host folder there).
It also evaluates the task's ``triggerPolicy.condition`` (CEL) as KFP would; a
false condition skips the task and the tasks that need its outputs.

``record`` (KFP's launcher, after the container exits): reads the executor
output the task wrote, merges it into the output artifacts of the ExecutorInput
(uri and metadata, as ``mergeRuntimeArtifacts`` does), converts the metadata as
ML Metadata stores it (numbers -> double, bools -> int, lists/structs wrapped
under ``list``/``struct``; nulls are refused as KFP refuses them), adds the
``display_name`` custom property, and writes ``<WORK>/kfp/<task>/mlmd.json``: what
downstream drivers read back.

``check``: the Examples artifact and the executor output of DetectionExampleGen.

``check-run``: the container run against a local run of the same config (final
comparison table, blessing, push; see :func:`check_run`).

``times``: per-component seconds of the container run (``timings.tsv``) and of
the local run (ML Metadata executions), side by side.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import json
import math
import os
import re
import struct
import sys
from collections.abc import Mapping
from typing import Any

PLACEHOLDER = "{{$}}"
#: Where KFP's launcher asks every executor to write its ExecutorOutput.
OUTPUT_FILE = "/tmp/kfp_outputs/output_metadata.json"
RECORD_FILE = "mlmd.json"


# -- the IR -------------------------------------------------------------------------------


def load_spec(pipeline: str) -> dict[str, Any]:
    with open(pipeline, encoding="utf-8") as fh:
        document = json.load(fh)
    return document.get("pipelineSpec", document)


def upstream(task_spec: Mapping[str, Any]) -> set[str]:
    deps = set(task_spec.get("dependentTasks", []))
    for spec in task_spec.get("inputs", {}).get("artifacts", {}).values():
        if "taskOutputArtifact" in spec:
            deps.add(spec["taskOutputArtifact"]["producerTask"])
    for spec in task_spec.get("inputs", {}).get("parameters", {}).values():
        if "taskOutputParameter" in spec:
            deps.add(spec["taskOutputParameter"]["producerTask"])
    return deps


def task_order(spec: Mapping[str, Any]) -> list[str]:
    """Kahn's algorithm over the root DAG; ties in name order (deterministic)."""
    tasks = spec["root"]["dag"]["tasks"]
    deps = {name: upstream(task) for name, task in tasks.items()}
    unknown = {d for ds in deps.values() for d in ds} - set(tasks)
    if unknown:
        raise SystemExit(f"tasks depend on unknown tasks {sorted(unknown)}")
    order: list[str] = []
    ready = sorted(name for name, ds in deps.items() if not ds)
    while ready:
        name = ready.pop(0)
        order.append(name)
        for other in sorted(tasks):
            if other not in order and other not in ready and deps[other] <= set(order):
                ready.append(other)
        ready.sort()
    if len(order) != len(tasks):
        raise SystemExit(f"the DAG has a cycle among {sorted(set(tasks) - set(order))}")
    return order


def executor_container(spec: Mapping[str, Any], task: str) -> tuple[dict, dict, dict]:
    task_spec = spec["root"]["dag"]["tasks"][task]
    component = spec["components"][task_spec["componentRef"]["name"]]
    executor = spec["deploymentSpec"]["executors"][component["executorLabel"]]
    if "container" not in executor:
        raise SystemExit(f"{task}: executor {component['executorLabel']} is not a container")
    return task_spec, component, executor["container"]


# -- paths: the bucket stand-in -----------------------------------------------------------


class Paths:
    """``WORK`` on the host is ``mount`` in the container."""

    def __init__(self, work: str, mount: str) -> None:
        self.work = os.path.abspath(work)
        self.mount = mount.rstrip("/")

    def host(self, path: str) -> str:
        if path == self.mount or path.startswith(self.mount + "/"):
            return self.work + path[len(self.mount) :]
        raise SystemExit(f"{path} is not under {self.mount}, the bucket stand-in")

    def record_dir(self, task: str) -> str:
        return os.path.join(self.work, "kfp", task)

    def read_record(self, task: str) -> dict[str, Any] | None:
        path = os.path.join(self.record_dir(task), RECORD_FILE)
        if not os.path.exists(path):
            return None
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)


# -- CEL conditions (the subset TFX's compiler emits) -----------------------------------


class _Namespace(dict):
    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(name) from exc


def _wrap(value: Any) -> Any:
    if isinstance(value, Mapping):
        return _Namespace({k: _wrap(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


def evaluate_condition(condition: str, executor_inputs: Mapping[str, Any]) -> bool:
    """A CEL ``triggerPolicy.condition`` over ``inputs`` (comparisons, &&, ||, !, casts)."""
    text = condition.replace("&&", " and ").replace("||", " or ")
    text = re.sub(r"!(?!=)", " not ", text)
    text = re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", text))
    names = {
        "inputs": _wrap(
            {
                "artifacts": executor_inputs.get("artifacts", {}),
                "parameters": {
                    **{
                        k: next(iter(v.values()))
                        for k, v in executor_inputs.get("parameters", {}).items()
                    },
                    **executor_inputs.get("parameterValues", {}),
                },
                "parameter_values": executor_inputs.get("parameterValues", {}),
            }
        ),
        "int": lambda v: int(float(v)),
        "double": float,
        "string": str,
        "bool": bool,
    }
    try:
        return bool(eval(compile(text, "<cel>", "eval"), {"__builtins__": {}}, names))  # noqa: S307
    except Exception as exc:  # noqa: BLE001 - any failure: the smoke cannot decide
        raise SystemExit(f"cannot evaluate the trigger condition {condition!r}: {exc}") from exc


# -- the driver: ExecutorInput of one task ------------------------------------------------


def executor_input(
    spec: Mapping[str, Any], task: str, paths: Paths, pipeline_root: str, run_id: str
) -> tuple[dict[str, Any], str]:
    """(ExecutorInput, skip reason or "") of ``task``, from the IR and upstream records."""
    task_spec, component, _ = executor_container(spec, task)
    inputs: dict[str, Any] = {"parameters": {}, "parameterValues": {}, "artifacts": {}}
    for name, value in task_spec.get("inputs", {}).get("parameters", {}).items():
        if "runtimeValue" in value:
            runtime = value["runtimeValue"]
            if "constantValue" in runtime:
                inputs["parameters"][name] = runtime["constantValue"]
            elif "constant" in runtime:
                inputs["parameterValues"][name] = runtime["constant"]
            else:
                raise SystemExit(f"{task}.{name}: runtime value {runtime} not supported")
        elif "taskOutputParameter" in value:
            ref = value["taskOutputParameter"]
            record = paths.read_record(ref["producerTask"])
            if record is None:
                return {}, f"{ref['producerTask']} did not run"
            inputs["parameterValues"][name] = record["parameters"][ref["outputParameterKey"]]
        else:
            raise SystemExit(f"{task}.{name}: parameter spec {value} not supported by the smoke")
    for name, value in task_spec.get("inputs", {}).get("artifacts", {}).items():
        if "taskOutputArtifact" not in value:
            raise SystemExit(f"{task}.{name}: artifact spec {value} not supported by the smoke")
        ref = value["taskOutputArtifact"]
        record = paths.read_record(ref["producerTask"])
        if record is None:
            return {}, f"{ref['producerTask']} did not run"
        inputs["artifacts"][name] = {"artifacts": [record["artifacts"][ref["outputArtifactKey"]]]}
    for key in ("parameters", "parameterValues", "artifacts"):
        if not inputs[key]:
            del inputs[key]

    task_root = f"{pipeline_root.rstrip('/')}/{spec['pipelineInfo']['name']}/{run_id}/{task}"
    outputs: dict[str, Any] = {
        "artifacts": {
            name: {
                "artifacts": [
                    {
                        "type": definition["artifactType"],
                        "uri": f"{task_root}/{name}",
                        "metadata": {},
                    }
                ]
            }
            for name, definition in component.get("outputDefinitions", {})
            .get("artifacts", {})
            .items()
        },
        "outputFile": OUTPUT_FILE,
    }
    parameters = component.get("outputDefinitions", {}).get("parameters", {})
    if parameters:
        outputs["parameters"] = {
            name: {"outputFile": f"/tmp/kfp/outputs/{name}"} for name in parameters
        }
    result = {"inputs": inputs, "outputs": outputs}
    condition = task_spec.get("triggerPolicy", {}).get("condition", "")
    if condition and not evaluate_condition(condition, inputs):
        return result, f"trigger condition {condition!r} is false"
    return result, ""


def task_command(
    spec: Mapping[str, Any], task: str, image: str, paths: Paths, pipeline_root: str, run_id: str
) -> dict[str, Any]:
    _, _, container = executor_container(spec, task)
    if container["image"] != image:
        raise SystemExit(f"{task} runs on {container['image']}, not on {image}")
    payload, skip = executor_input(spec, task, paths, pipeline_root, run_id)
    if skip:
        return {"task": task, "skip": skip, "argv": []}
    text = json.dumps(payload)
    args = [text if arg == PLACEHOLDER else arg for arg in container.get("args", [])]
    if text not in args:
        raise SystemExit(f"no {PLACEHOLDER} in the args of {task}: {container.get('args')}")
    os.makedirs(paths.record_dir(task), exist_ok=True)
    with open(os.path.join(paths.record_dir(task), "executor_input.json"), "w") as fh:
        json.dump(payload, fh, indent=1)
    return {"task": task, "skip": "", "argv": list(container["command"]) + args}


# -- the launcher: what ML Metadata keeps of the executor output --------------------------


def mlmd_round_trip(key: str, value: Any) -> Any:
    """A metadata value as KFP's launcher stores it in ML Metadata and its driver reads it back."""
    if isinstance(value, bool):
        return float(int(value))  # bool -> int_value -> number
    if isinstance(value, int | float):
        return float(value)  # double_value (int_value) -> number
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return {"list": value}  # struct_value {"list": ...} comes back as that struct
    if isinstance(value, dict):
        return {"struct": value}
    raise SystemExit(f"metadata {key}={value!r}: KFP's launcher refuses this value type")


def record(spec: Mapping[str, Any], task: str, paths: Paths, first_id: int) -> dict[str, Any]:
    _, component, _ = executor_container(spec, task)
    with open(os.path.join(paths.record_dir(task), "executor_input.json"), encoding="utf-8") as fh:
        payload = json.load(fh)
    output_file = os.path.join(paths.record_dir(task), "outputs", os.path.basename(OUTPUT_FILE))
    if not os.path.exists(output_file):
        raise SystemExit(f"{task} wrote no {OUTPUT_FILE}: the entrypoint did not finish")
    with open(output_file, encoding="utf-8") as fh:
        executor_output = json.load(fh)
    artifacts: dict[str, Any] = {}
    next_id = first_id
    for name, listed in payload["outputs"]["artifacts"].items():
        artifact = json.loads(json.dumps(listed["artifacts"][0]))
        produced = executor_output.get("artifacts", {}).get(name, {}).get("artifacts", [])
        if produced:
            if produced[0].get("uri"):
                artifact["uri"] = produced[0]["uri"]
            artifact.setdefault("metadata", {}).update(produced[0].get("metadata", {}))
        metadata = {k: mlmd_round_trip(k, v) for k, v in artifact.get("metadata", {}).items()}
        metadata.setdefault("display_name", name)
        schema = component["outputDefinitions"]["artifacts"][name]["artifactType"]
        artifacts[name] = {
            "name": str(next_id),
            "type": schema,
            "uri": artifact["uri"],
            "metadata": metadata,
        }
        next_id += 1
        if not os.path.isdir(paths.host(artifact["uri"])):
            print(f"warning: {task}.{name}: nothing at {artifact['uri']}", file=sys.stderr)
    parameters = {}
    for key, value in executor_output.get("parameterValues", {}).items():
        parameters[key] = value
    for key, value in executor_output.get("parameters", {}).items():
        parameters[key] = next(iter(value.values()))
    doc = {"task": task, "artifacts": artifacts, "parameters": parameters}
    with open(os.path.join(paths.record_dir(task), RECORD_FILE), "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1)
    return doc


def artifact_titles(spec: Mapping[str, Any]) -> list[str]:
    """The schema titles of every artifact in the IR (TFX's entrypoint imports each)."""
    import yaml

    titles = set()
    for component in spec["components"].values():
        for side in ("inputDefinitions", "outputDefinitions"):
            for definition in component.get(side, {}).get("artifacts", {}).values():
                schema = definition["artifactType"]
                if "schemaTitle" in schema:
                    titles.add(schema["schemaTitle"])
                else:
                    titles.add(
                        yaml.safe_load(schema["instanceSchema"]).get("title", "tfx.Artifact")
                    )
    return sorted(titles)


def tfrecord_payloads(path: str):
    """The records of one GZIP TFRecord file (length, crc, data, crc framing)."""
    with gzip.open(path, "rb") as fh:
        while header := fh.read(12):
            (length,) = struct.unpack("<Q", header[:8])
            data = fh.read(length)
            fh.read(4)
            if len(data) != length:
                raise ValueError(f"truncated record in {path}")
            yield data


def check_examples(work: str, examples_dir: str, images: int, failures: list[str]) -> None:
    from tensorflow.core.example import example_pb2

    with open(f"{work}/data/annotations.json", encoding="utf-8") as fh:
        coco = json.load(fh)
    expected_ids = {str(image["id"]) for image in coco["images"]}
    if len(coco["images"]) != images:
        failures.append(f"demo data has {len(coco['images'])} images, asked for {images}")

    seen: dict[str, int] = {}
    source_ids: set[str] = set()
    boxes = 0
    for split_dir in sorted(glob.glob(f"{examples_dir}/Split-*")):
        split = os.path.basename(split_dir)[len("Split-") :]
        seen[split] = 0
        for path in sorted(glob.glob(f"{split_dir}/data_tfrecord-*.gz")):
            for payload in tfrecord_payloads(path):
                feature = example_pb2.Example.FromString(payload).features.feature
                source_ids.add(feature["image/source_id"].bytes_list.value[0].decode())
                boxes += len(feature["image/object/class/label"].int64_list.value)
                if not feature["image/encoded"].bytes_list.value[0]:
                    failures.append(f"empty image/encoded in {path}")
                seen[split] += 1
    total = sum(seen.values())
    print(f"records per split: {seen} (total {total}, boxes {boxes})")
    if set(seen) != {"train", "eval"}:
        failures.append(f"splits {sorted(seen)}, expected eval and train")
    if total != images:
        failures.append(f"{total} records, expected {images}")
    if boxes != len(coco["annotations"]):
        failures.append(f"{boxes} boxes, expected {len(coco['annotations'])}")
    if source_ids != expected_ids:
        failures.append(f"image/source_id values {sorted(source_ids)[:5]}... != the COCO ids")
    label_map_path = f"{examples_dir}/label_map.json"
    if os.path.exists(label_map_path):
        with open(label_map_path, encoding="utf-8") as fh:
            text = fh.read()
        if not all(c["name"] in text for c in coco["categories"]):
            failures.append("label_map.json lacks some category names")
    else:
        failures.append("no label_map.json")
    for split in seen:
        if not os.path.exists(f"{examples_dir}/{split}_annotations.json"):
            failures.append(f"no {split}_annotations.json")


def check(work: str, mount: str, images: int) -> None:
    """The ExampleGen task of the container run: its Examples and its recorded metadata."""
    paths = Paths(work, mount)
    failures: list[str] = []
    record_doc = paths.read_record("DetectionExampleGen")
    if record_doc is None:
        raise SystemExit("no record of DetectionExampleGen (it did not run)")
    examples = record_doc["artifacts"]["examples"]
    check_examples(work, paths.host(examples["uri"]), images, failures)
    split_names = json.loads(examples["metadata"].get("split_names", "[]"))
    print(f"Examples metadata after the ML Metadata round trip: {json.dumps(examples['metadata'])}")
    if sorted(split_names) != ["eval", "train"]:
        failures.append(f"split_names {split_names}")
    with open(f"{work}/id.txt", encoding="utf-8") as fh:
        identity = fh.read().strip()
    print(f"container user: {identity}")
    if identity.startswith("uid=0("):
        failures.append("the container ran as root")
    if failures:
        print("ExampleGen check FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        raise SystemExit(1)
    print("ExampleGen check passed")


def _load(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _numbers(prefix: str, value: Any) -> dict[str, float]:
    if isinstance(value, bool) or value is None:
        return {}
    if isinstance(value, int | float):
        return {prefix: float(value)}
    if isinstance(value, Mapping):
        out: dict[str, float] = {}
        for k, v in value.items():
            out.update(_numbers(f"{prefix}.{k}" if prefix else str(k), v))
        return out
    return {}


def run_outputs_container(work: str, mount: str) -> dict[str, Any]:
    paths = Paths(work, mount)
    evaluator = paths.read_record("Evaluator")
    pusher = paths.read_record("Pusher")
    if evaluator is None:
        raise SystemExit("the container run has no Evaluator record")
    out = {
        "evaluation": paths.host(evaluator["artifacts"]["evaluation"]["uri"]),
        "blessed": bool(evaluator["artifacts"]["blessing"]["metadata"].get("blessed")),
        "pushed_meta": pusher["artifacts"]["pushed_model"]["metadata"] if pusher else {},
    }
    destination = out["pushed_meta"].get("pushed_destination", "")
    out["pushed"] = paths.host(destination) if destination else ""
    return out


def run_outputs_local(root: str) -> dict[str, Any]:
    latest = _load(os.path.join(root, "latest_run.json"))
    return {
        "evaluation": latest["evaluation"],
        "blessed": bool(latest["blessed"]),
        "pushed": latest.get("pushed", ""),
        "run_id": latest.get("run_id", ""),
    }


def check_pushed(label: str, folder: str, candidate: str, failures: list[str]) -> str:
    """The pushed folder holds the candidate's .tflite, loadable by LiteRT; its file name."""
    if not folder or not os.path.isdir(folder):
        failures.append(f"{label}: nothing pushed (folder {folder!r})")
        return ""
    files = sorted(os.listdir(folder))
    models = [f for f in files if f.endswith(".tflite")]
    if models != [f"{candidate}.tflite"]:
        failures.append(f"{label}: pushed {models}, expected [{candidate}.tflite]")
        return ",".join(models)
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=os.path.join(folder, models[0]))
    interpreter.allocate_tensors()
    details = interpreter.get_input_details()[0]
    outputs = len(interpreter.get_output_details())
    print(
        f"{label}: {folder}: {files}; LiteRT loads {models[0]} "
        f"(input {list(details['shape'])} {details['dtype'].__name__}, {outputs} outputs)"
    )
    return models[0]


def check_run(
    work: str, mount: str, local_root: str, tolerance: float | None, keys: list[str]
) -> None:
    """The container run's final table, blessing and push against the local run's.

    Exact: the variants (names, order, files), the baseline and candidate, the
    blessing decision, the set of metric names, the pushed file name, its presence
    and that LiteRT loads it. Within 1 %: each .tflite's size (same graph, same
    quantization; QAT ranges move a few bytes). Every number of ``metrics``:
    finite and, for ``keys``, within 0..1. With ``tolerance`` (absolute, on 0..1
    fractions; None = finite only): every metric named in ``keys``. Latencies are
    machine noise and are not compared.
    """
    failures: list[str] = []
    container = run_outputs_container(work, mount)
    local = run_outputs_local(local_root)
    docs = {
        "container": _load(os.path.join(container["evaluation"], "metrics.json")),
        "local": _load(os.path.join(local["evaluation"], "metrics.json")),
    }
    variants = {k: [v["variant"] for v in d["variants"]] for k, d in docs.items()}
    print(f"variants: container {variants['container']}, local {variants['local']}")
    if variants["container"] != variants["local"]:
        failures.append(f"variants differ: {variants}")
    for key in ("task", "baseline", "candidate"):
        if docs["container"].get(key) != docs["local"].get(key):
            mine, theirs = docs["container"].get(key), docs["local"].get(key)
            failures.append(f"{key}: container {mine!r} != local {theirs!r}")
    blessing = {k: bool(d.get("blessing", {}).get("blessed")) for k, d in docs.items()}
    print(
        f"blessed: container {blessing['container']} (ModelBlessing {container['blessed']}), "
        f"local {blessing['local']} (latest_run {local['blessed']})"
    )
    if blessing["container"] != blessing["local"]:
        failures.append(f"blessing differs: {blessing}")
    if blessing["container"] != container["blessed"]:
        failures.append("the container's ModelBlessing disagrees with its metrics.json")

    width = max(len(k) for k in keys) if keys else 4
    print(f"\n{'variant':<12} {'metric':<{width}} {'container':>10} {'local':>10} {'|diff|':>8}")
    worst = 0.0
    local_by_name = {v["variant"]: v for v in docs["local"]["variants"]}
    for entry in docs["container"]["variants"]:
        other = local_by_name.get(entry["variant"])
        if other is None:
            continue
        if entry.get("file") and other.get("file") and not entry["variant"] == "keras_float":
            if entry["file"] != other["file"]:
                failures.append(f"{entry['variant']}: file {entry['file']} != {other['file']}")
        mine, theirs = _numbers("", entry.get("metrics")), _numbers("", other.get("metrics"))
        if set(mine) != set(theirs):
            failures.append(
                f"{entry['variant']}: metric keys differ {sorted(set(mine) ^ set(theirs))}"
            )
        for name in sorted(set(mine) & set(theirs)):
            a, b = mine[name], theirs[name]
            if not (math.isfinite(a) and math.isfinite(b)):
                failures.append(f"{entry['variant']}.{name}: not finite ({a}, {b})")
                continue
            if name in keys:
                if not (0.0 <= a <= 1.0 and 0.0 <= b <= 1.0):
                    failures.append(f"{entry['variant']}.{name}: outside 0..1 ({a}, {b})")
                diff = abs(a - b)
                worst = max(worst, diff)
                over = tolerance is not None and diff > tolerance
                flag = "  > tolerance" if over else ""
                label = entry["variant"]
                print(f"{label:<12} {name:<{width}} {a:>10.4f} {b:>10.4f} {diff:>8.4f}{flag}")
                if over:
                    failures.append(f"{entry['variant']}.{name}: |{a:.4f} - {b:.4f}| > {tolerance}")
        sizes = (entry.get("bytes"), other.get("bytes"))
        if entry["variant"] != "keras_float":
            print(f"{entry['variant']:<12} {'bytes':<{width}} {sizes[0]!s:>10} {sizes[1]!s:>10}")
            if not sizes[0] or not sizes[1] or abs(sizes[0] - sizes[1]) > 0.01 * sizes[1]:
                failures.append(f"{entry['variant']}: sizes {sizes} differ by more than 1 %")
    rule = "both finite only" if tolerance is None else f"tolerance {tolerance}"
    print(f"largest |diff| of {', '.join(keys)}: {worst:.4f} ({rule})\n")

    candidate = docs["container"].get("candidate", "")
    if blessing["container"]:
        pushed = {
            "container": check_pushed("container push", container["pushed"], candidate, failures),
            "local": check_pushed("local push", local["pushed"], candidate, failures),
        }
        if pushed["container"] != pushed["local"]:
            failures.append(f"pushed files differ: {pushed}")
        meta = container["pushed_meta"]
        print(
            f"container PushedModel metadata: pushed={meta.get('pushed')} "
            f"version={meta.get('pushed_version')} reason={meta.get('reason')!r}"
        )
    else:
        for label, folder in (("container", container["pushed"]), ("local", local["pushed"])):
            if folder:
                failures.append(f"{label}: pushed {folder} although not blessed")
        print(f"not blessed: nothing pushed ({container['pushed_meta'].get('reason', '')})")

    if failures:
        print("container run != local run:\n  " + "\n  ".join(failures), file=sys.stderr)
        raise SystemExit(1)
    print("container run == local run (structure exact, metrics within tolerance)")


def times(work: str, local_root: str, pipeline_name: str) -> None:
    container: dict[str, float] = {}
    load: dict[str, str] = {}
    with open(os.path.join(work, "timings.tsv"), encoding="utf-8") as fh:
        for line in fh:
            task, seconds, *rest = line.split()
            if seconds != "skipped":
                container[task] = float(seconds)
                load[task] = rest[0] if rest else ""
    local: dict[str, float] = {}
    try:
        from dashboard.store import MetadataReader, StoreRef

        reader = MetadataReader(StoreRef(".", os.path.join(local_root, "metadata.sqlite")))
        run_id = _load(os.path.join(local_root, "latest_run.json"))["run_id"]
        detail = reader.run(run_id)
        for execution in detail.executions:
            if execution.duration_s is not None:
                local[execution.component] = execution.duration_s
    except Exception as exc:  # noqa: BLE001 - the table is information, not a check
        print(f"(no local timings: {exc})")
    print(f"{'component':<22} {'container s':>12} {'local s':>10} {'host load':>10}")
    for task in list(container) + [t for t in local if t not in container]:
        c, lo = container.get(task), local.get(task)
        c_text = "" if c is None else f"{c:.0f}"
        lo_text = "" if lo is None else f"{lo:.0f}"
        print(f"{task:<22} {c_text:>12} {lo_text:>10} {load.get(task, ''):>10}")
    print(f"{'total':<22} {sum(container.values()):>12.0f} {sum(local.values()):>10.0f}")


# -- command line ------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--work", required=True, help="host folder standing in for the bucket")
        p.add_argument("--mount", default="/smoke", help="where the container sees --work")

    order = sub.add_parser("order", help="the tasks of the IR in DAG order, one a line")
    order.add_argument("--pipeline", required=True)
    titles = sub.add_parser("titles", help="the artifact schema titles of the IR, one a line")
    titles.add_argument("--pipeline", required=True)
    cmd = sub.add_parser("command", help="one task's ExecutorInput and command line")
    cmd.add_argument("--pipeline", required=True)
    cmd.add_argument("--task", required=True)
    cmd.add_argument("--image", required=True)
    cmd.add_argument("--pipeline-root", required=True)
    cmd.add_argument("--run-id", default="smoke-run")
    cmd.add_argument("--argv-file", required=True, help="NUL-separated argv written here")
    common(cmd)
    rec = sub.add_parser("record", help="what KFP's launcher keeps of one task's output")
    rec.add_argument("--pipeline", required=True)
    rec.add_argument("--task", required=True)
    common(rec)
    chk = sub.add_parser("check", help="check the Examples artifact of the container run")
    chk.add_argument("--images", type=int, required=True)
    common(chk)
    run = sub.add_parser("check-run", help="the container run against the local run")
    run.add_argument("--local-root", required=True)
    run.add_argument(
        "--tolerance",
        required=True,
        help="absolute tolerance on --metrics, or 'finite' to require only finite values",
    )
    run.add_argument("--metrics", default="AP,AP50,AP75", help="metrics compared within tolerance")
    common(run)
    tim = sub.add_parser("times", help="per-component seconds, container and local")
    tim.add_argument("--work", required=True)
    tim.add_argument("--local-root", required=True)
    tim.add_argument("--pipeline-name", default="")
    args = parser.parse_args(argv)

    if args.action == "order":
        print("\n".join(task_order(load_spec(args.pipeline))))
    elif args.action == "titles":
        print("\n".join(artifact_titles(load_spec(args.pipeline))))
    elif args.action == "command":
        spec = load_spec(args.pipeline)
        paths = Paths(args.work, args.mount)
        result = task_command(spec, args.task, args.image, paths, args.pipeline_root, args.run_id)
        with open(args.argv_file, "w", encoding="utf-8") as fh:
            fh.write("\0".join(result["argv"]))
        if result["skip"]:
            print(f"skip: {result['skip']}")
    elif args.action == "record":
        spec = load_spec(args.pipeline)
        paths = Paths(args.work, args.mount)
        # ML Metadata ids: unique over the run (one block of 100 per task, in DAG order).
        first_id = 1 + 100 * task_order(spec).index(args.task)
        doc = record(spec, args.task, paths, first_id)
        for name, artifact in doc["artifacts"].items():
            print(f"  {name}: {artifact['uri']} {json.dumps(artifact['metadata'])[:300]}")
    elif args.action == "check":
        check(args.work, args.mount, args.images)
    elif args.action == "check-run":
        keys = [k for k in args.metrics.split(",") if k]
        tolerance = None if args.tolerance == "finite" else float(args.tolerance)
        check_run(args.work, args.mount, args.local_root, tolerance, keys)
    else:
        times(args.work, args.local_root, args.pipeline_name)


if __name__ == "__main__":
    main()
