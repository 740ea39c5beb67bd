"""Checks that a qatflow component image is what it says, run inside the image.

    python containers/check_image.py --kind {cpu,gpu,tpu}

(the Makefile's image-check-* targets mount containers/ into a working container of the
image and run this there). Prints one table, then exits 1 if any check failed. Every
probe runs in its own Python process, so an import that aborts (SIGABRT) or hangs is a
failed row, not a dead checker.

- every kind: ``tensorflow``: it imports, and its version is the one the installed
  qatflow pins (``tensorflow`` for cpu/gpu, ``tensorflow-tpu`` for tpu, where the
  ``tensorflow`` distribution must be absent: both install the same files);
- gpu: ``CUDA build`` (``tf.sysconfig.get_build_info()``), then one row per library
  TensorFlow's own loader opens (``tsl::internal::DsoLoader``, called through ctypes
  from libtensorflow_framework.so.2, which dlopens with its RUNPATH into
  ``site-packages/nvidia/*/lib``): each must load, from the nvidia pip wheels, with the
  soname major the build names (cudart = CUDA major, cudnn = cuDNN major). The driver's
  libraries (libcuda.so.1, libnvidia-ml.so.1) come from the node: an info row;
- tpu: ``libtpu``: ``import tensorflow`` found, loaded and initialised it (TensorFlow
  aborts the process when libtpu lacks a function of its TPU C API);
- gpu and tpu: ``strategy ... (qatflow run)`` and ``strategy ... (KFP Trainer)``: with
  no accelerator, ``train.strategy`` gpus / tpu must end in the one line of
  model_maker.core.strategy (``strategy 'gpus': no GPU found ...``), not a traceback.
  Once through the ``qatflow run`` CLI on 8 synthetic images, once through the Trainer
  task's own command of the compiled pipeline (TFX's Kubeflow V2 entrypoint, the
  ExecutorInput built as containers/smoke.py builds it), the way a Kubeflow pod runs it.

Meant for a machine without an accelerator (this workplace). For tpu, it sets
``TPU_SKIP_MDS_QUERY=1`` unless the environment sets it: off a TPU VM, libtpu otherwise
asks the GCE metadata server for its topology, 30 tries per setting, minutes per process.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence

KINDS = ("cpu", "gpu", "tpu")
OK, FAIL, INFO = "ok", "FAIL", "info"
#: The distribution that provides the ``tensorflow`` module in each kind of image.
TF_DISTRIBUTION = {"cpu": "tensorflow", "gpu": "tensorflow", "tpu": "tensorflow-tpu"}
#: train.strategy checked per kind, and the start of the one line it must end in.
STRATEGY = {
    "gpu": ("gpus", "strategy 'gpus': no GPU found"),
    "tpu": ("tpu", "strategy 'tpu': no TPU found"),
}
#: TensorFlow's DSO loader functions (tsl::internal::DsoLoader::Get<name>DsoHandle), the
#: library each opens, and whether the image must carry it (False: the node's driver).
LOADERS = (
    ("CudaRuntime", "cudart", True),
    ("Cublas", "cublas", True),
    ("CublasLt", "cublasLt", True),
    ("Cufft", "cufft", True),
    ("Cusolver", "cusolver", True),
    ("Cusparse", "cusparse", True),
    ("Cupti", "cupti", True),
    ("Cudnn", "cudnn", True),
    ("Nccl", "nccl", True),
    ("CudaDriver", "cuda", False),
    ("Nvml", "nvidia-ml", False),
)
VERSIONS = ("tfx", "tf-keras", "keras", "ml-metadata", "protobuf", "numpy", "libtpu")
PROBE_PREFIX = "PROBE "
TRACEBACK = "Traceback (most recent call last)"


@dataclasses.dataclass(frozen=True)
class Row:
    check: str
    status: str
    detail: str


# -- pure helpers (tests/containers/test_check_image.py) ----------------------------------


def format_table(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table (widths padded to the longest cell)."""
    header = Row("check", "status", "detail")
    cells = [header, *rows]
    w1 = max(len(r.check) for r in cells)
    w2 = max(len(r.status) for r in cells)
    lines = [f"| {r.check:<{w1}} | {r.status:<{w2}} | {r.detail} |" for r in cells]
    lines.insert(1, f"|{'-' * (w1 + 2)}|{'-' * (w2 + 2)}|---|")
    return "\n".join(lines)


def exit_code(rows: Iterable[Row]) -> int:
    return 1 if any(r.status == FAIL for r in rows) else 0


def pinned_version(requirements: Iterable[str], name: str) -> str | None:
    """The ``==`` version that ``requirements`` (Requires-Dist strings) pin ``name`` to.

    Extras-only requirements (``...; extra == "gpu"``) are skipped: the base pin counts.
    """
    wanted = _normalise(name)
    for text in requirements:
        spec, _, marker = text.partition(";")
        if "extra" in marker:
            continue
        match = re.match(r"\s*([A-Za-z0-9._-]+)\s*(\[[^\]]*\])?\s*(.*)", spec)
        if not match or _normalise(match.group(1)) != wanted:
            continue
        for clause in match.group(3).split(","):
            clause = clause.strip()
            if clause.startswith("==") and not clause.startswith("==="):
                return clause[2:].strip()
    return None


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def loader_symbol(name: str) -> str:
    """The mangled name of TensorFlow's loader function
    ``absl::StatusOr<void*> tsl::internal::DsoLoader::Get<name>DsoHandle()``."""
    function = f"Get{name}DsoHandle"
    return f"_ZN3tsl8internal9DsoLoader{len(function)}{function}Ev"


_DSO_FAILED = re.compile(r"Could not load dynamic library '([^']+)'; dlerror: (.*)")


def parse_dso_log(stderr: str) -> dict[str, str]:
    """``{soname: dlerror}`` of every library TensorFlow's DSO loader failed to open
    (its ``dso_loader`` log at verbosity 2)."""
    failed: dict[str, str] = {}
    for line in stderr.splitlines():
        match = _DSO_FAILED.search(line)
        if match:
            failed[match.group(1)] = match.group(2).strip()
    return failed


def soname_major(soname: str) -> str | None:
    """``libcudnn.so.9`` -> ``9``; None without a version suffix."""
    match = re.search(r"\.so\.(\d+)", soname)
    return match.group(1) if match else None


def library_row(
    library: str,
    required: bool,
    handle: bool,
    mapped: Sequence[str],
    new: Sequence[str],
    dlerror: Mapping[str, str],
    want_major: str | None,
) -> Row:
    """The row of one DSO loader call.

    ``mapped``: the shared objects mapped after the call; ``new``: those the call
    mapped (the library and what it pulled in; empty when an earlier call's library
    already needed it, e.g. libcublasLt by libcublas); ``dlerror``: the loader's
    failures (:func:`parse_dso_log`) during the call; ``want_major``: the soname
    major the build names (None: not checked).
    """
    check = f"lib{library}"
    mine = [p for p in mapped if os.path.basename(p).startswith(f"lib{library}.so")]
    if handle and mine:
        path = mine[0]
        name = os.path.basename(path)
        where = _site_relative(path)
        if required and "/nvidia/" not in path:
            return Row(check, FAIL, f"{name} loaded from {where}, not from an nvidia wheel")
        major = soname_major(name)
        if want_major is not None and major != want_major:
            return Row(check, FAIL, f"{name} loaded, but the build names .so.{want_major}")
        how = f"+{len(new) - 1} deps" if path in new else "already loaded by an earlier one"
        return Row(check, OK if required else INFO, f"{where} ({how})")
    if handle:
        return Row(check, FAIL, f"a handle, but no lib{library}.so* among the mapped files")
    reason = (
        "; ".join(v if v.startswith(k) else f"{k}: {v}" for k, v in dlerror.items())
        or "no handle, nothing mapped"
    )
    if not required:
        return Row(check, INFO, f"not in the image (the node's driver provides it): {reason}")
    return Row(check, FAIL, reason)


def _site_relative(path: str) -> str:
    marker = "/site-packages/"
    return path.split(marker, 1)[1] if marker in path else path


def one_line_verdict(returncode: int, stderr: str, expected: str) -> Row:
    """Whether a run that must fail ended in the one line starting with ``expected``
    (``check`` is filled in by the caller)."""
    lines = [line.rstrip() for line in stderr.splitlines() if line.strip()]
    hits = [line for line in lines if expected in line]
    tracebacks = sum(TRACEBACK in line for line in lines)
    last = lines[-1] if lines else "(no stderr)"
    if returncode == 0:
        return Row("", FAIL, f"exit code 0: it did not stop; last line: {_cut(last)}")
    if not hits:
        return Row("", FAIL, f"exit code {returncode}, no {expected!r} line; last: {_cut(last)}")
    if tracebacks:
        return Row(
            "",
            FAIL,
            f"exit code {returncode}: {tracebacks} traceback(s) ({len(lines)} stderr lines) "
            f"before the line: {_cut(hits[-1])}",
        )
    noise = len(lines) - 1
    return Row("", OK, f"exit code {returncode}: {_cut(hits[-1])} (+{noise} start-up log lines)")


def _cut(text: str, width: int = 220) -> str:
    text = text.strip()
    return text if len(text) <= width else text[: width - 3] + "..."


def probe_result(stdout: str) -> dict | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith(PROBE_PREFIX):
            return json.loads(line[len(PROBE_PREFIX) :])
    return None


def process_failure(returncode: int, stderr: str) -> str:
    """One line on why a probe process failed: its signal or exit code, and the last
    fatal (``F`` log) or error line of its stderr."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    fatal = [
        line for line in lines if re.search(r"(^F\d{4}|\] F | F external/|\bF tensorflow/)", line)
    ]
    last = fatal[-1] if fatal else (lines[-1] if lines else "(no stderr)")
    if returncode < 0:
        how = f"killed by {signal.Signals(-returncode).name}"
    elif returncode == 124:
        how = "timed out"
    else:
        how = f"exit code {returncode}"
    return f"{how}: {_cut(last)}"


# -- probes (each a fresh Python process) --------------------------------------------------

PROBE_TENSORFLOW = r"""
import importlib.metadata as md, json, os, sys, time
t0 = time.time()
import tensorflow as tf
seconds = time.time() - t0
def version(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None
out = {
    "version": tf.__version__,
    "seconds": round(seconds, 1),
    "build": {k: v for k, v in dict(tf.sysconfig.get_build_info()).items()},
    "dists": {n: version(n) for n in json.loads(sys.argv[1])},
    "requires": md.requires("qatflow") or [],
    "mapped_libtpu": sorted({l.split()[-1] for l in open("/proc/self/maps") if "libtpu" in l}),
}
if os.environ.get("CHECK_GPUS") == "1":
    out["gpus"] = len(tf.config.list_physical_devices("GPU"))
try:
    import libtpu
    out["libtpu_path"] = libtpu.get_library_path()
except Exception as exc:
    out["libtpu_path"] = None
    out["libtpu_error"] = repr(exc)
print("PROBE " + json.dumps(out, default=str))
"""

PROBE_LOADERS = r"""
import ctypes, json, os, sys
import tensorflow as tf
framework = ctypes.CDLL(os.path.join(os.path.dirname(tf.__file__), "libtensorflow_framework.so.2"))
def mapped():
    return {l.split()[-1] for l in open("/proc/self/maps") if ".so" in l.split()[-1]}
out = {}
for name, symbol in json.loads(sys.argv[1]):
    try:
        function = getattr(framework, symbol)
    except AttributeError:
        out[name] = {"missing": True}
        continue
    # absl::StatusOr<void*> is returned through a hidden pointer: status word, then value.
    function.restype, function.argtypes = None, [ctypes.c_void_p]
    buffer = (ctypes.c_uint64 * 4)()
    before = mapped()
    sys.stderr.write("LOADER-START %s\n" % name); sys.stderr.flush()
    function(ctypes.addressof(buffer))
    sys.stderr.write("LOADER-END %s\n" % name); sys.stderr.flush()
    after = mapped()
    out[name] = {"handle": bool(buffer[1]), "new": sorted(after - before), "mapped": sorted(after)}
print("PROBE " + json.dumps(out))
"""


def run(
    argv: Sequence[str], env: Mapping[str, str], timeout: float, cwd: str | None = None
) -> tuple[int, str, str, float]:
    t0 = time.time()
    try:
        proc = subprocess.run(
            list(argv), env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=timeout
        )
        code, out, err = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        code = 124
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
    return code, out, err, time.time() - t0


def check_tensorflow(kind: str, env: Mapping[str, str]) -> tuple[list[Row], dict | None]:
    names = sorted({"tensorflow", "tensorflow-tpu", *VERSIONS})
    code, out, err, _ = run(
        [sys.executable, "-c", PROBE_TENSORFLOW, json.dumps(names)],
        {**env, "TF_CPP_MIN_LOG_LEVEL": "0", "CHECK_GPUS": "1" if kind == "gpu" else "0"},
        timeout=600,
    )
    probe = probe_result(out) if code == 0 else None
    if probe is None:
        return [Row("tensorflow", FAIL, "import tensorflow: " + process_failure(code, err))], None
    dist = TF_DISTRIBUTION[kind]
    have, want = probe["dists"].get(dist), pinned_version(probe["requires"], dist)
    detail = f"{probe['version']} ({dist} {have}, qatflow pins {want}), import {probe['seconds']} s"
    status = OK if have and have == want and probe["version"] == have else FAIL
    if kind == "tpu" and probe["dists"].get("tensorflow"):
        status, detail = FAIL, f"{detail}; the tensorflow distribution is installed too"
    rows = [Row("tensorflow", status, detail)]
    versions = ", ".join(f"{n} {v}" for n in VERSIONS if (v := probe["dists"].get(n)))
    rows.append(Row("versions", INFO, versions))
    probe["stderr"] = err
    return rows, probe


def check_libtpu(probe: dict, env: Mapping[str, str]) -> Row:
    path = probe.get("libtpu_path")
    version = probe["dists"].get("libtpu")
    if not path:
        return Row("libtpu", FAIL, f"no libtpu package: {probe.get('libtpu_error')}")
    if env.get("TPU_LOAD_LIBRARY") == "0":
        return Row("libtpu", FAIL, "TPU_LOAD_LIBRARY=0 is set: TensorFlow does not load libtpu")
    failed = [
        line for line in probe["stderr"].splitlines() if "FindAndLoadTpuLibrary failed" in line
    ]
    if failed:
        return Row("libtpu", FAIL, _cut(failed[-1].split("] ", 1)[-1]))
    if not any(os.path.realpath(p) == os.path.realpath(path) for p in probe["mapped_libtpu"]):
        return Row("libtpu", FAIL, f"libtpu {version}: import tensorflow did not load {path}")
    size = os.path.getsize(path) / 1e6
    return Row(
        "libtpu",
        OK,
        f"libtpu {version}: loaded and initialised by import tensorflow "
        f"({_site_relative(path)}, {size:.0f} MB)",
    )


def check_cuda(probe: dict, env: Mapping[str, str]) -> list[Row]:
    build = probe["build"]
    cuda, cudnn = str(build.get("cuda_version") or ""), str(build.get("cudnn_version") or "")
    capabilities = build.get("cuda_compute_capabilities") or []
    if not build.get("is_cuda_build"):
        return [Row("CUDA build", FAIL, f"not a CUDA build: {build}")]
    rows = [
        Row(
            "CUDA build",
            OK,
            f"CUDA {cuda}, cuDNN {cudnn}, {' '.join(capabilities)}",
        )
    ]
    wanted = {"cudart": cuda.split(".")[0] or None, "cudnn": cudnn.split(".")[0] or None}
    calls = [[name, loader_symbol(name)] for name, _, _ in LOADERS]
    code, out, err, _ = run(
        [sys.executable, "-c", PROBE_LOADERS, json.dumps(calls)],
        {**env, "TF_CPP_MIN_LOG_LEVEL": "0", "TF_CPP_VMODULE": "dso_loader=2"},
        timeout=600,
    )
    result = probe_result(out) if code == 0 else None
    if result is None:
        return [*rows, Row("CUDA libraries", FAIL, process_failure(code, err))]
    logs = _split_loader_log(err)
    for name, library, required in LOADERS:
        entry = result.get(name, {})
        if entry.get("missing"):
            rows.append(Row(f"lib{library}", FAIL, f"TensorFlow has no {loader_symbol(name)}"))
            continue
        rows.append(
            library_row(
                library,
                required,
                entry.get("handle", False),
                entry.get("mapped", []),
                entry.get("new", []),
                parse_dso_log(logs.get(name, "")),
                wanted.get(library),
            )
        )
    return rows


def _split_loader_log(stderr: str) -> dict[str, str]:
    """stderr of PROBE_LOADERS cut into each loader call's part."""
    parts: dict[str, list[str]] = {}
    current = None
    for line in stderr.splitlines():
        if line.startswith("LOADER-START "):
            current = line.split(" ", 1)[1].strip()
            parts[current] = []
        elif line.startswith("LOADER-END "):
            current = None
        elif current:
            parts[current].append(line)
    return {k: "\n".join(v) for k, v in parts.items()}


def _qatflow(*args: str) -> list[str]:
    """The ``qatflow`` console script of this Python's environment (as a user runs it)."""
    script = os.path.join(os.path.dirname(sys.executable), "qatflow")
    if os.path.exists(script):
        return [script, *args]
    return [sys.executable, "-m", "pipeline.cli", *args]


def check_strategy(kind: str, env: Mapping[str, str], work: str) -> list[Row]:
    strategy, expected = STRATEGY[kind]
    rows = []
    data = os.path.join(work, "data")
    code, _, err, _ = run(_qatflow("demo-data", "--output", data, "--images", "8"), env, 300)
    if code:
        return [Row(f"strategy {strategy}", FAIL, "demo-data: " + process_failure(code, err))]
    tiny = [
        f"data.input={data}/images",
        f"data.annotations={data}/annotations.json",
        "model.image_size=128",
        "train.epochs=1",
        f"train.strategy={strategy}",
    ]
    sets = [arg for item in tiny for arg in ("--set", item)]

    # 1. The CLI, as on a laptop or a TPU VM.
    root = os.path.join(work, "run")
    code, _, err, seconds = run(
        _qatflow("run", *sets, "--set", f"runner.pipeline_root={root}"), env, 900, cwd=work
    )
    verdict = one_line_verdict(code, err, expected)
    rows.append(dataclasses.replace(verdict, check=f"strategy {strategy} (qatflow run)"))
    _save(work, "qatflow-run.stderr", err)

    # 2. The Trainer task of the compiled pipeline, as a Kubeflow pod runs it.
    rows.append(_strategy_kfp(strategy, expected, env, work, sets))
    return rows


def _strategy_kfp(
    strategy: str, expected: str, env: Mapping[str, str], work: str, sets: list[str]
) -> Row:
    check = f"strategy {strategy} (KFP Trainer)"
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import smoke  # containers/smoke.py: KFP's driver as the container smoke plays it

    pipeline = os.path.join(work, "pipeline.json")
    code, _, err, _ = run(
        _qatflow(
            "compile",
            *sets,
            "--set",
            f"kubeflow.pipeline_root={work}/root",
            "--set",
            "kubeflow.accelerator_count=0",
            "--output",
            pipeline,
        ),
        env,
        600,
        cwd=work,
    )
    if code:
        return Row(check, FAIL, "qatflow compile: " + process_failure(code, err))
    spec = smoke.load_spec(pipeline)
    task = "Trainer"
    task_spec, _, container = smoke.executor_container(spec, task)
    # The upstream Examples as KFP's launcher would have recorded them: the Trainer builds
    # its strategy before it reads any example.
    paths = smoke.Paths(work, work)
    for name, value in task_spec.get("inputs", {}).get("artifacts", {}).items():
        ref = value["taskOutputArtifact"]
        producer = spec["root"]["dag"]["tasks"][ref["producerTask"]]
        component = spec["components"][producer["componentRef"]["name"]]
        schema = component["outputDefinitions"]["artifacts"][ref["outputArtifactKey"]]
        record = {
            "artifacts": {
                ref["outputArtifactKey"]: {
                    "name": "1",
                    "type": schema["artifactType"],
                    "uri": os.path.join(work, "upstream", name),
                    "metadata": {"display_name": name},
                }
            },
            "parameters": {},
        }
        os.makedirs(paths.record_dir(ref["producerTask"]), exist_ok=True)
        _save(paths.record_dir(ref["producerTask"]), smoke.RECORD_FILE, json.dumps(record))
    payload, skip = smoke.executor_input(spec, task, paths, f"{work}/root", "check-run")
    if skip:
        return Row(check, FAIL, f"the Trainer task would be skipped: {skip}")
    outputs = os.path.join(work, "kfp_outputs")
    os.makedirs(outputs, exist_ok=True)
    payload["outputs"]["outputFile"] = os.path.join(outputs, "output_metadata.json")
    text = json.dumps(payload)
    args = [text if arg == smoke.PLACEHOLDER else arg for arg in container.get("args", [])]
    argv = [sys.executable if a == "python" else a for a in container["command"]] + args
    code, _, err, _ = run(argv, env, 900, cwd=work)
    _save(work, "kfp-trainer.stderr", err)
    return dataclasses.replace(one_line_verdict(code, err, expected), check=check)


def _save(folder: str, name: str, text: str) -> None:
    with open(os.path.join(folder, name), "w", encoding="utf-8") as fh:
        fh.write(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=KINDS, required=True)
    parser.add_argument(
        "--skip-strategy", action="store_true", help="leave out the strategy rows (minutes)"
    )
    parser.add_argument("--work", help="folder for the strategy checks' files (default: temp)")
    args = parser.parse_args(argv)

    env = dict(os.environ)
    if args.kind == "tpu":
        env.setdefault("TPU_SKIP_MDS_QUERY", "1")
    print(f"checking the {args.kind} image (python {sys.version.split()[0]})", flush=True)
    t0 = time.time()
    rows, probe = check_tensorflow(args.kind, env)
    if probe is not None and args.kind == "tpu":
        rows.append(check_libtpu(probe, env))
    if probe is not None and args.kind == "gpu":
        rows.extend(check_cuda(probe, env))
    gpus = (probe or {}).get("gpus", 0)
    if args.kind in STRATEGY and gpus:
        rows.append(Row("strategy", INFO, f"{gpus} GPU(s) here: the no-GPU message is not checked"))
    elif args.kind in STRATEGY and not args.skip_strategy:
        work = args.work or tempfile.mkdtemp(prefix="qatflow-check-")
        os.makedirs(work, exist_ok=True)
        rows.extend(check_strategy(args.kind, env, work))
        print(f"(strategy runs' stderr in {work})")
    print()
    print(format_table(rows))
    code = exit_code(rows)
    failed = sum(r.status == FAIL for r in rows)
    print(f"\n{args.kind} image: {failed} failed of {len(rows)} rows, {time.time() - t0:.0f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
