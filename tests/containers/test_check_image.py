"""containers/check_image.py without an image: its verdicts, parsers and table.

The probes themselves run inside the images (`make image-check-gpu`, `make
image-check-tpu`); here the pure parts that decide ok / FAIL are checked on the
outputs those probes really produce (log lines copied from the images' runs).
"""

import importlib.util
import pathlib
import signal
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
SPEC = importlib.util.spec_from_file_location("check_image", REPO / "containers" / "check_image.py")
check_image = importlib.util.module_from_spec(SPEC)
sys.modules.setdefault("check_image", check_image)  # dataclasses look their module up there
SPEC.loader.exec_module(check_image)
Row = check_image.Row

NO_GPU = (
    "strategy 'gpus': no GPU found (TensorFlow sees none on this machine); use strategy 'default'"
)


# -- the one-line verdict ------------------------------------------------------------------


def test_one_line_after_start_up_logs_is_ok():
    stderr = (
        "I0000 00:00:1796280439.679098 11128 cudart_stub.cc:31] Could not find cuda drivers\n"
        "06:42:51 INFO qatflow: resolved config written to root/config.yaml\n"
        f"qatflow: error: {NO_GPU}\n"
    )
    row = check_image.one_line_verdict(2, stderr, "strategy 'gpus': no GPU found")
    assert row.status == "ok"
    assert f"qatflow: error: {NO_GPU}" in row.detail
    assert "exit code 2" in row.detail and "+2 start-up log lines" in row.detail


def test_a_traceback_before_the_line_fails():
    stderr = (
        "06:43:07 ERROR absl: Execution 2 failed.\n"
        "Traceback (most recent call last):\n"
        '  File "strategy.py", line 108, in make_strategy\n'
        "    raise UsageError(\n"
        f"model_maker.core.errors.UsageError: {NO_GPU}\n"
        f"qatflow: error: {NO_GPU} [while running 'Run[Trainer]']\n"
    )
    row = check_image.one_line_verdict(2, stderr, "strategy 'gpus': no GPU found")
    assert row.status == "FAIL"
    assert "1 traceback(s)" in row.detail
    assert row.detail.endswith("[while running 'Run[Trainer]']")


def test_a_run_that_does_not_stop_fails():
    row = check_image.one_line_verdict(0, "all fine\n", "strategy 'tpu': no TPU found")
    assert row.status == "FAIL" and "exit code 0" in row.detail


def test_another_error_fails_and_shows_the_last_line():
    row = check_image.one_line_verdict(1, "x\nValueError: boom\n", "strategy 'tpu': no TPU found")
    assert row.status == "FAIL"
    assert "ValueError: boom" in row.detail and "no \"strategy 'tpu'" in row.detail


# -- probe failures --------------------------------------------------------------------------


def test_process_failure_names_the_signal_and_the_fatal_line():
    # What `import tensorflow` (tensorflow-tpu 2.20) does with libtpu 0.0.51.
    stderr = (
        "2026-12-03 06:29:23.867448: I tensorflow/core/tpu/tpu_api_dlsym_initializer.cc:121] "
        "Libtpu path is: /venv/lib/python3.11/site-packages/libtpu/libtpu.so\n"
        "2026-12-03 06:29:23.927171: F external/local_xla/xla/stream_executor/tpu/"
        "tpu_library_init_fns.inc:12] ConfigureDistributedTpuOp_DoWork not available in this "
        "library.\n"
        "some later noise\n"
    )
    text = check_image.process_failure(-signal.SIGABRT, stderr)
    assert text.startswith("killed by SIGABRT: ")
    assert "ConfigureDistributedTpuOp_DoWork not available" in text


@pytest.mark.parametrize(
    ("code", "start"), [(124, "timed out: "), (3, "exit code 3: "), (-9, "killed by SIGKILL: ")]
)
def test_process_failure_otherwise_the_last_line(code, start):
    assert check_image.process_failure(code, "a\nlast words\n") == f"{start}last words"


def test_probe_result_reads_the_last_probe_line():
    out = 'noise\nPROBE {"version": "1"}\nPROBE {"version": "2.20.0"}\ntrailing\n'
    assert check_image.probe_result(out) == {"version": "2.20.0"}
    assert check_image.probe_result("no probe here\n") is None


# -- pins ------------------------------------------------------------------------------------


def test_pinned_version_from_requires_dist():
    requires = [
        "tensorflow-tpu==2.20.0",
        "tf_keras==2.20.1",
        'tensorflow[and-cuda]==2.22.0; extra == "gpu"',
        "apache-beam[dask,gcp]>=2.60",
        "tensorflow==2.21.0",
    ]
    assert check_image.pinned_version(requires, "tensorflow-tpu") == "2.20.0"
    assert check_image.pinned_version(requires, "tf-keras") == "2.20.1"
    # the extra's pin does not count; the base pin does
    assert check_image.pinned_version(requires, "tensorflow") == "2.21.0"
    assert check_image.pinned_version(requires, "apache-beam") is None
    assert check_image.pinned_version(requires, "libtpu") is None


# -- the CUDA libraries ----------------------------------------------------------------------


def test_loader_symbol_is_the_itanium_mangled_name():
    # as listed by `nm -D libtensorflow_framework.so.2` of TensorFlow 2.21
    assert (
        check_image.loader_symbol("CudaRuntime")
        == "_ZN3tsl8internal9DsoLoader23GetCudaRuntimeDsoHandleEv"
    )
    assert check_image.loader_symbol("Cudnn") == "_ZN3tsl8internal9DsoLoader17GetCudnnDsoHandleEv"


def test_parse_dso_log():
    stderr = (
        "I0000 00:00:1796280467.674089 12114 dso_loader.cc:144] Could not load dynamic library "
        "'libcudart.so.12'; dlerror: libcudart.so.12: cannot open shared object file: No such "
        "file or directory\n"
        "unrelated line\n"
    )
    assert check_image.parse_dso_log(stderr) == {
        "libcudart.so.12": "libcudart.so.12: cannot open shared object file: No such file or "
        "directory"
    }


SITE = "/opt/qatflow/venv/lib/python3.11/site-packages"


def test_library_loaded_from_the_wheel_is_ok():
    loaded = [f"{SITE}/nvidia/cudnn/lib/libcudnn.so.9", "/usr/lib/x86_64-linux-gnu/libz.so.1"]
    row = check_image.library_row("cudnn", True, True, ["/lib/libc.so.6", *loaded], loaded, {}, "9")
    assert row == Row("libcudnn", "ok", "nvidia/cudnn/lib/libcudnn.so.9 (+1 deps)")


def test_library_loaded_by_an_earlier_call_is_ok():
    # libcublas.so.12 needs libcublasLt.so.12: the CublasLt call then maps nothing new
    mapped = [
        f"{SITE}/nvidia/cublas/lib/libcublas.so.12",
        f"{SITE}/nvidia/cublas/lib/libcublasLt.so.12",
    ]
    row = check_image.library_row("cublasLt", True, True, mapped, [], {}, None)
    assert row.status == "ok" and "already loaded" in row.detail


def test_library_of_another_major_than_the_build_fails():
    loaded = [f"{SITE}/nvidia/cudnn/lib/libcudnn.so.8"]
    row = check_image.library_row("cudnn", True, True, loaded, loaded, {}, "9")
    assert row.status == "FAIL" and "the build names .so.9" in row.detail


def test_library_from_outside_the_wheels_fails():
    loaded = ["/usr/local/cuda-13.0/lib/libcupti.so.13"]
    row = check_image.library_row("cupti", True, True, loaded, loaded, {}, None)
    assert row.status == "FAIL" and "not from an nvidia wheel" in row.detail


def test_library_not_loaded_fails_with_dlerror():
    errors = {"libcusolver.so.11": "libcusolver.so.11: cannot open shared object file"}
    row = check_image.library_row("cusolver", True, False, [], [], errors, None)
    assert row == Row("libcusolver", "FAIL", "libcusolver.so.11: cannot open shared object file")


def test_driver_library_absent_is_info():
    errors = {"libcuda.so.1": "libcuda.so.1: cannot open shared object file"}
    row = check_image.library_row("cuda", False, False, [], [], errors, None)
    assert row.status == "info" and "node's driver" in row.detail


def test_a_prefix_named_library_is_not_mistaken():
    # libcublasLt's row must not take libcublas.so.12 for its own
    loaded = [f"{SITE}/nvidia/cublas/lib/libcublas.so.12"]
    row = check_image.library_row("cublasLt", True, True, loaded, loaded, {}, None)
    assert row.status == "FAIL" and "no libcublasLt.so*" in row.detail


def test_soname_major():
    assert check_image.soname_major("libcudnn.so.9") == "9"
    assert check_image.soname_major("libcudart.so.12.5.82") == "12"
    assert check_image.soname_major("libcuda.so") is None


def test_split_loader_log():
    stderr = "start\nLOADER-START Cudnn\na\nb\nLOADER-END Cudnn\nx\nLOADER-START Nccl\nc\n"
    assert check_image._split_loader_log(stderr) == {"Cudnn": "a\nb", "Nccl": "c"}


# -- the table and the exit code ---------------------------------------------------------------


def test_table_and_exit_code():
    rows = [Row("tensorflow", "ok", "2.20.0"), Row("libtpu", "FAIL", "not loaded")]
    lines = check_image.format_table(rows).splitlines()
    assert lines[0].split("|")[1].strip() == "check"
    assert lines[2] == "| tensorflow | ok     | 2.20.0 |"
    assert lines[3] == "| libtpu     | FAIL   | not loaded |"
    assert len({line.index("|", 2) for line in lines}) == 1  # the columns line up
    assert check_image.exit_code(rows) == 1
    assert check_image.exit_code([Row("a", "ok", ""), Row("b", "info", "")]) == 0


def test_libtpu_row_needs_tensorflow_to_have_loaded_it(tmp_path):
    lib = tmp_path / "libtpu.so"
    lib.write_bytes(b"\0" * 1000)
    probe = {
        "libtpu_path": str(lib),
        "dists": {"libtpu": "0.0.21"},
        "mapped_libtpu": [],
        "stderr": "",
    }
    assert check_image.check_libtpu(probe, {}).status == "FAIL"
    probe["mapped_libtpu"] = [str(lib)]
    assert check_image.check_libtpu(probe, {}).status == "ok"
    assert check_image.check_libtpu(probe, {"TPU_LOAD_LIBRARY": "0"}).status == "FAIL"
    probe["stderr"] = (
        "2026-12-03 I tensorflow/core/tpu/tpu_api_dlsym_initializer.cc:138] "
        "FindAndLoadTpuLibrary failed with FAILED_PRECONDITION: boom\n"
    )
    row = check_image.check_libtpu(probe, {})
    assert row.status == "FAIL" and row.detail.startswith("FindAndLoadTpuLibrary failed")
