"""DetectionExampleGen the TFX-template way: real artifacts on temp dirs, Executor.Do directly."""

import glob
import json
import os

import pytest
from pycocotools.coco import COCO
from tfx.types import artifact_utils, standard_artifacts

from components.example_gen.component import DetectionExampleGen
from components.example_gen.executor import Executor
from model_maker.core.data.demo_data import generate_demo_data
from model_maker.core.data.options import IngestOptions
from model_maker.core.errors import DataError, UsageError
from model_maker.core.settings import from_json, to_json


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return generate_demo_data(tmp_path_factory.mktemp("demo"), num_images=6, seed=2)


def _examples(tmp_path):
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    return examples


def test_do_writes_the_examples_artifact(demo, tmp_path):
    examples = _examples(tmp_path)
    # The options arrive as JSON text from an orchestrator.
    options = IngestOptions(
        format="coco",
        input=demo.images_dir,
        annotations=demo.annotations,
        split_ratios={"train": 0.5, "eval": 0.5},
        split_files={},
        strict=True,
        keep_negatives=True,
        num_shards=1,
    )
    properties = {"options": to_json(options)}
    Executor().Do({}, {"examples": [examples]}, properties)
    splits = artifact_utils.decode_split_names(examples.split_names)
    assert splits == ["train", "eval"]
    total = 0
    for split in splits:
        shards = glob.glob(os.path.join(examples.uri, f"Split-{split}", "data_tfrecord-*.gz"))
        assert [os.path.basename(s) for s in shards] == ["data_tfrecord-00000-of-00001.gz"]
        gt = COCO(os.path.join(examples.uri, f"{split}_annotations.json"))
        assert len(gt.getImgIds()) == examples.get_int_custom_property(f"num_images_{split}")
        total += len(gt.getImgIds())
    assert total == 6
    assert os.path.isfile(os.path.join(examples.uri, "label_map.json"))
    assert json.load(open(os.path.join(examples.uri, "stats.json")))["total"]["images"] == 6
    assert examples.get_string_custom_property("payload_format") == "FORMAT_TF_EXAMPLE"
    assert examples.get_string_custom_property("file_format") == "tfrecords_gzip"
    assert examples.get_int_custom_property("num_classes") == 3


def test_local_beam_args_skip_tfx_packaging(demo, tmp_path, monkeypatch):
    from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
    from tfx.utils import dependency_utils

    def no_packaging(args):
        raise AssertionError(f"TFX would build an sdist for {args}")

    monkeypatch.setattr(dependency_utils, "make_beam_dependency_flags", no_packaging)
    args = ["--direct_num_workers=1", "--direct_running_mode=in_memory"]
    executor = Executor(BaseBeamExecutor.Context(beam_pipeline_args=args))
    assert executor._beam_pipeline_args == args
    examples = _examples(tmp_path)
    options = IngestOptions(format="coco", input=demo.images_dir, annotations=demo.annotations)
    properties = {"options": to_json(options)}
    executor.Do({}, {"examples": [examples]}, properties)
    assert examples.get_int_custom_property("num_images_train") >= 1


def test_do_fails_with_a_data_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [}')
    options = IngestOptions(format="coco", input=str(tmp_path), annotations=str(bad))
    properties = {"options": to_json(options)}
    with pytest.raises(DataError, match=r"bad.json:1:\d+: invalid JSON"):
        Executor().Do({}, {"examples": [_examples(tmp_path)]}, properties)


def test_component_carries_the_config_data_section():
    from pipeline.config import load_config

    config = load_config(
        overrides=[
            "data.format=voc",
            "data.input=/d",
            "data.split_ratios.a=1.0",
            "data.strict=true",
            "data.num_shards=3",
        ],
        base={"data": {"split_ratios": {}}},  # no default train/eval split
    )
    data = config.stages().ingest
    component = DetectionExampleGen(data)
    props = json.loads(component.exec_properties["options"])
    assert (props["format"], props["input"], props["split_ratios"]) == ("voc", "/d", {"a": 1.0})
    assert props["strict"] is True and props["num_shards"] == 3
    assert from_json(IngestOptions, component.exec_properties["options"]) == data
    assert component.outputs["examples"].type == standard_artifacts.Examples


def test_component_refuses_an_output_folder():
    with pytest.raises(UsageError, match="data.output"):
        DetectionExampleGen(IngestOptions(format="voc", input="/d", output="/elsewhere"))


@pytest.mark.slow
def test_runs_in_a_local_tfx_pipeline(demo, tmp_path):
    from tfx.orchestration import metadata, pipeline
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    gen = DetectionExampleGen(
        IngestOptions(
            input=demo.images_dir, annotations=demo.annotations, split_ratios={"train": 1.0}
        )
    )
    LocalDagRunner().run(
        pipeline.Pipeline(
            pipeline_name="examplegen-test",
            pipeline_root=str(tmp_path / "root"),
            components=[gen],
            metadata_connection_config=metadata.sqlite_metadata_connection_config(
                str(tmp_path / "mlmd.sqlite")
            ),
        )
    )
    (stats,) = glob.glob(str(tmp_path / "root" / "**" / "stats.json"), recursive=True)
    assert json.load(open(stats))["splits"]["train"]["images"] == 6
