"""Helpers of containers/smoke.sh (run on the host with the project's venv).

``command``: the command line Kubeflow Pipelines would run for one task of a
compiled pipeline: the task's executor container ``command`` + ``args`` from the
PipelineSpec IR, with KFP's ``{{$}}`` placeholder replaced by an ExecutorInput
built the way KFP's launcher builds it (the task's constant parameters, one
RuntimeArtifact per output with the type schema of the IR, an output file).
Printed as a JSON list.

``check``: reads the Examples artifact and the executor output that the task
wrote, and fails unless they hold what the demo data implies.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
import struct
import sys

PLACEHOLDER = "{{$}}"


def task_command(pipeline: str, task: str, image: str, artifact_root: str) -> list[str]:
    with open(pipeline, encoding="utf-8") as fh:
        document = json.load(fh)
    spec = document.get("pipelineSpec", document)
    task_spec = spec["root"]["dag"]["tasks"][task]
    component = spec["components"][task_spec["componentRef"]["name"]]
    container = spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]
    if container["image"] != image:
        raise SystemExit(f"{task} runs on {container['image']}, not on {image}")
    if task_spec.get("dependentTasks") or task_spec["inputs"].get("artifacts"):
        raise SystemExit(f"{task} has upstream artifacts; the smoke test runs a root task")

    task_root = f"{artifact_root}/{task}"
    parameters = {
        name: value["runtimeValue"]["constantValue"]
        for name, value in task_spec["inputs"].get("parameters", {}).items()
    }
    outputs = {
        name: {
            "artifacts": [
                {
                    "name": f"smoke-run/{task}/{name}",
                    "type": definition["artifactType"],
                    "uri": f"{task_root}/{name}",
                    "metadata": {},
                }
            ]
        }
        for name, definition in component.get("outputDefinitions", {}).get("artifacts", {}).items()
    }
    executor_input = {
        "inputs": {"parameters": parameters},
        "outputs": {"artifacts": outputs, "outputFile": f"{task_root}/executor_output.json"},
    }
    payload = json.dumps(executor_input)
    args = [payload if arg == PLACEHOLDER else arg for arg in container["args"]]
    if payload not in args:
        raise SystemExit(f"no {PLACEHOLDER} in the args of {task}: {container['args']}")
    return list(container["command"]) + args


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


def check(work: str, artifact_root: str, images: int) -> None:
    from tensorflow.core.example import example_pb2

    failures: list[str] = []
    examples_dir = f"{artifact_root}/DetectionExampleGen/examples"
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
        files = sorted(glob.glob(f"{split_dir}/data_tfrecord-*.gz"))
        seen[split] = 0
        for path in files:
            for payload in tfrecord_payloads(path):
                example = example_pb2.Example.FromString(payload)
                feature = example.features.feature
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
        # The records carry the COCO image ids; each image of the demo data exactly once.
        failures.append(f"image/source_id values {sorted(source_ids)[:5]}... != the COCO ids")

    label_map_path = f"{examples_dir}/label_map.json"
    if os.path.exists(label_map_path):
        with open(label_map_path, encoding="utf-8") as fh:
            label_map = json.load(fh)
        print(f"label_map.json: {json.dumps(label_map)[:200]}")
        names = {c["name"] for c in coco["categories"]}
        if not all(name in json.dumps(label_map) for name in names):
            failures.append(f"label_map.json lacks some of {sorted(names)}")
    else:
        failures.append("no label_map.json")
    for split in seen:
        if not os.path.exists(f"{examples_dir}/{split}_annotations.json"):
            failures.append(f"no {split}_annotations.json")

    output_file = f"{artifact_root}/DetectionExampleGen/executor_output.json"
    if os.path.exists(output_file):
        with open(output_file, encoding="utf-8") as fh:
            executor_output = json.load(fh)
        artifact = executor_output["artifacts"]["examples"]["artifacts"][0]
        metadata = artifact.get("metadata", {})
        print(f"executor_output.json: uri {artifact['uri']}, metadata {json.dumps(metadata)}")
        if json.loads(metadata.get("split_names", "[]")) != sorted(seen) and set(
            json.loads(metadata.get("split_names", "[]"))
        ) != set(seen):
            failures.append(f"split_names {metadata.get('split_names')} != {sorted(seen)}")
    else:
        failures.append("no executor_output.json (the entrypoint did not finish)")

    with open(f"{work}/id.txt", encoding="utf-8") as fh:
        identity = fh.read().strip()
    print(f"container user: {identity}")
    if identity.startswith("uid=0("):
        failures.append("the container ran as root")

    if failures:
        print("container smoke FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        raise SystemExit(1)
    print("container smoke passed")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    cmd = sub.add_parser("command", help="print one task's command line as JSON")
    cmd.add_argument("--pipeline", required=True)
    cmd.add_argument("--task", required=True)
    cmd.add_argument("--image", required=True)
    cmd.add_argument("--artifact-root", required=True)
    chk = sub.add_parser("check", help="check the Examples artifact of the smoke run")
    chk.add_argument("--work", required=True)
    chk.add_argument("--artifact-root", required=True)
    chk.add_argument("--images", type=int, required=True)
    args = parser.parse_args(argv)
    if args.action == "command":
        print(json.dumps(task_command(args.pipeline, args.task, args.image, args.artifact_root)))
    else:
        check(args.work, args.artifact_root, args.images)


if __name__ == "__main__":
    main()
