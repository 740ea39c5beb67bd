import pytest
from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor

from components.evaluator.executor import Executor as EvaluatorExecutor
from components.example_gen.executor import Executor as ExampleGenExecutor
from components.local_beam import runs_locally

LOCAL = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
REMOTE = ["--runner=DataflowRunner", "--project=p", "--region=r"]


@pytest.fixture
def packaging_calls(monkeypatch):
    from tfx.utils import dependency_utils

    calls = []

    def record(args):
        calls.append(list(args))
        return ["--setup_file=/tmp/qatflow-sdist/setup.py"]

    monkeypatch.setattr(dependency_utils, "make_beam_dependency_flags", record)
    return calls


def test_runs_locally():
    assert runs_locally(LOCAL) and runs_locally(["--runner=DirectRunner"]) and runs_locally([])
    assert not runs_locally(REMOTE)


@pytest.mark.parametrize("executor_class", [ExampleGenExecutor, EvaluatorExecutor])
def test_local_args_are_kept_and_nothing_is_packaged(executor_class, packaging_calls):
    executor = executor_class(BaseBeamExecutor.Context(beam_pipeline_args=LOCAL))
    assert executor._beam_pipeline_args == LOCAL
    assert packaging_calls == []


@pytest.mark.parametrize("executor_class", [ExampleGenExecutor, EvaluatorExecutor])
def test_remote_runner_still_gets_the_package(executor_class, packaging_calls):
    executor = executor_class(BaseBeamExecutor.Context(beam_pipeline_args=REMOTE))
    assert len(packaging_calls) == 1
    assert "--setup_file=/tmp/qatflow-sdist/setup.py" in executor._beam_pipeline_args
