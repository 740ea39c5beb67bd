"""Where int8 falls short of 2x: float32 vs ptq_int8 latency of each part of EfficientDet-Lite0.

Builds EfficientDet-Lite0 (default 320 px, 2 classes, untrained weights: latency
does not depend on the weight values) and cuts it into growing prefixes at its
part boundaries (``model.PART_PATTERNS``): the backbone (input normalisation
and EfficientNet-Lite0), the backbone and the BiFPN (with the extra levels'
resampling), and the whole network (raw class and box outputs, no NMS op).
Each prefix is converted to float32 and to PTQ int8 (uint8 input, int8
kernels, calibrated on raccoon images resized and padded, as the pipeline's
``ptq_int8``) and timed with LiteRT (XNNPACK) at each ``--threads`` count,
``--runs`` invocations after 3 warm-up runs, on one raccoon image, interleaved
(``--rounds`` passes over every file, as in bench_tflite_export). A part's
cost is the difference between consecutive prefixes; the int8 / float32 ratio
of each part shows which one keeps the whole file from 2x.

Then, by kind of convolution: every Conv2D and DepthwiseConv2D call of the
model (a shared head layer once per level) is converted alone, float32 and
int8 (int8 input and output, so no QUANTIZE op is timed), the distinct ones
timed interleaved at 1 thread, and each kind's latency
summed over its calls: depthwise convs, 1x1 convs and the rest (the 3x3 stem).
The cost of an invoke itself (a 1x1x8 depthwise conv, timed in the same
passes) is subtracted from each call, so that ~180 tiny calls do not pull the
sums' ratios towards 1.
This shows which XNNPACK kernels keep the network from 2x on this CPU
(``--skip-layers`` leaves the section out).

Prints the tables; writes bench/results/int8_parts.json with machine details and
the load average.

Run: .venv/bin/python bench/bench_int8_parts.py [--image-size 320] [--runs 50] [--rounds 5]
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import sys
from collections import Counter
from dataclasses import asdict, dataclass

from bench_tflite_export import interleaved_latency, latency_parser, raccoon_images
from machine_info import machine_info

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "bench" / "results" / "int8_parts.json"

#: Prefixes of the network, by the parts (``model.PART_PATTERNS`` keys) they hold;
#: None: the whole model (raw outputs).
PREFIXES: dict[str, tuple[str, ...] | None] = {
    "backbone": ("backbone",),
    "backbone+bifpn": ("backbone", "fpn"),
    "backbone+bifpn+heads": None,
}


def prefix_model(model, parts: tuple[str, ...] | None):
    """The sub-model of ``model`` holding the layers of ``parts`` (and the input
    normalisation); its outputs are the tensors those layers pass to the rest."""
    import tensorflow as tf
    import tf_keras as keras

    from model_maker.object_detector.model import PART_PATTERNS

    if parts is None:
        return model
    patterns = [re.compile(PART_PATTERNS[part]) for part in parts]
    inside = {
        layer.name
        for layer in model.layers
        if isinstance(layer, keras.layers.InputLayer)
        or layer.name == "input_normalization"
        or any(p.search(layer.name) for p in patterns)
    }
    outputs, seen = [], set()
    for layer in model.layers:
        if layer.name in inside:
            continue
        for node in layer.inbound_nodes:
            for parent in tf.nest.flatten(node.inbound_layers):
                if parent.name in inside and parent.name not in seen:
                    seen.add(parent.name)
                    outputs.append(parent.output)
    return keras.Model(model.inputs, outputs, name=f"prefix_{len(parts)}")


def convert(model, int8: bool, calibration) -> bytes:
    from model_maker.core.quantization import get_default_quantization_config
    from model_maker.core.tflite_convert import convert_keras_model

    config = get_default_quantization_config(calibration) if int8 else None
    return convert_keras_model(model, config)


def invoker(content: bytes, threads: int, image=None):
    """The ``invoke`` of a LiteRT interpreter of ``content`` holding ``image`` (ones
    of the input's shape and type when None)."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content, num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    if image is None:
        pixels = np.ones(detail["shape"], detail["dtype"])
    else:
        pixels = np.asarray(image, np.float32)[None]
        if detail["dtype"] == np.uint8:
            pixels = np.clip(np.round(pixels), 0, 255).astype(np.uint8)
    interpreter.set_tensor(detail["index"], pixels)
    return interpreter.invoke


@dataclass(frozen=True)
class ConvSpec:
    """What one convolution's kernel sees: ``kind`` (``depthwise``, ``1x1 conv`` or
    ``KxK conv``), input shape (H, W, C), kernel, strides, padding and output
    channels (None for a depthwise conv)."""

    kind: str
    input_shape: tuple[int, ...]
    kernel: tuple[int, ...]
    strides: tuple[int, ...] = (1, 1)
    padding: str = "same"
    filters: int | None = None


#: A convolution with next to no work: its time is the cost of an invoke itself.
EMPTY_CONV = ConvSpec("depthwise", (1, 1, 8), (1, 1))


def conv_calls(model) -> Counter:
    """How many times each ConvSpec is called in ``model`` and its nested models
    (a shared layer once per call)."""
    import tf_keras as keras

    calls: Counter = Counter()

    def walk(container) -> None:
        for layer in container.layers:
            if isinstance(layer, keras.Model):
                walk(layer)
            elif isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
                depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
                kernel = tuple(layer.kernel_size)
                kind = (
                    "depthwise"
                    if depthwise
                    else "1x1 conv"
                    if kernel == (1, 1)
                    else f"{kernel[0]}x{kernel[1]} conv"
                )
                for i in range(len(layer.inbound_nodes)):
                    shape = tuple(layer.get_input_shape_at(i)[1:])
                    filters = None if depthwise else layer.filters
                    calls[
                        ConvSpec(kind, shape, kernel, tuple(layer.strides), layer.padding, filters)
                    ] += 1

    walk(model)
    return calls


def single_conv_file(spec: ConvSpec, int8: bool) -> bytes:
    """``spec``'s convolution alone (with bias, no activation) as a TFLite file:
    float32, or int8 with int8 input and output calibrated on random inputs."""
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    inputs = keras.Input(spec.input_shape, batch_size=1)
    options = dict(strides=spec.strides, padding=spec.padding)
    if spec.kind == "depthwise":
        layer = keras.layers.DepthwiseConv2D(spec.kernel, **options)
    else:
        layer = keras.layers.Conv2D(spec.filters, spec.kernel, **options)
    converter = tf.lite.TFLiteConverter.from_keras_model(keras.Model(inputs, layer(inputs)))
    if int8:
        rng = np.random.default_rng(0)
        shape = (1, *spec.input_shape)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: (
            [rng.normal(size=shape).astype(np.float32)] for _ in range(4)
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def time_conv_kinds(calls: Counter, runs: int, rounds: int) -> tuple[list[dict], dict[str, float]]:
    """Times every spec's float32 and int8 file (1 thread, interleaved); returns a
    row per spec (its fields, ``calls``, and ``float32_ms`` and ``int8_ms`` of one
    call less the cost of an invoke) and that cost per kind of file (EMPTY_CONV,
    timed in the same passes)."""
    invokes = {}
    specs = [*calls, EMPTY_CONV]
    for done, spec in enumerate(specs, 1):
        for kind in ("float32", "int8"):
            invokes[spec, kind] = invoker(single_conv_file(spec, kind == "int8"), 1)
        print(f"  converted {done}/{len(specs)} files", end="\r", flush=True)
    print()
    timed = interleaved_latency(invokes, runs, rounds)
    invoke_ms = {kind: timed[EMPTY_CONV, kind][0] for kind in ("float32", "int8")}
    layers = [
        {
            **asdict(spec),
            "calls": count,
            "float32_ms": timed[spec, "float32"][0] - invoke_ms["float32"],
            "int8_ms": timed[spec, "int8"][0] - invoke_ms["int8"],
        }
        for spec, count in calls.items()
    ]
    return layers, invoke_ms


def kind_totals(layers: list[dict]) -> list[dict]:
    """Per kind of convolution: calls, summed float32 and int8 ms, their ratio."""
    totals: dict[str, dict] = {}
    for layer in layers:
        row = totals.setdefault(
            layer["kind"], {"kind": layer["kind"], "calls": 0, "float32_ms": 0.0, "int8_ms": 0.0}
        )
        row["calls"] += layer["calls"]
        row["float32_ms"] += layer["calls"] * layer["float32_ms"]
        row["int8_ms"] += layer["calls"] * layer["int8_ms"]
    rows = sorted(totals.values(), key=lambda r: -r["float32_ms"])
    for row in rows:
        row["ratio"] = row["float32_ms"] / row["int8_ms"]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = latency_parser(__doc__.splitlines()[0])
    parser.add_argument("--calibration-images", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing passes")
    parser.add_argument(
        "--skip-layers", action="store_true", help="leave out the per-convolution section"
    )
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    info = machine_info("tensorflow", "ai-edge-litert")

    import numpy as np

    from model_maker.object_detector.model import build_efficientdet_lite
    from model_maker.object_detector.model_config import get_model_config

    config = get_model_config("efficientdet-lite0", image_size=args.image_size)
    model = build_efficientdet_lite(config, args.num_classes)
    images = raccoon_images(args.image_size, args.calibration_images + 1)
    calibration = [np.asarray(im, np.float32)[None] for im in images[1:]]
    rows, calls = [], {}
    for name, parts in PREFIXES.items():
        sub = prefix_model(model, parts)
        row = {"prefix": name, "outputs": len(sub.outputs), "ms": {}}
        for kind in ("float32", "ptq_int8"):
            content = convert(sub, kind == "ptq_int8", calibration)
            row[f"{kind}_bytes"] = len(content)
            for t in threads:
                calls[name, kind, t] = invoker(content, t, images[0])
        rows.append(row)
        print(f"  converted {name}", flush=True)
    timed = interleaved_latency(calls, args.runs, args.rounds)
    for row in rows:
        for kind in ("float32", "ptq_int8"):
            row["ms"][kind] = {str(t): timed[row["prefix"], kind, t][0] for t in threads}

    def part_ms(i: int, kind: str, t: int) -> float:
        now = rows[i]["ms"][kind][str(t)]
        return now - (rows[i - 1]["ms"][kind][str(t)] if i else 0.0)

    print(
        f"\nEfficientDet-Lite0 at {args.image_size} px, median of {args.runs} runs"
        f" in {args.rounds} interleaved rounds, ms"
    )
    print(f"{'part':16s} {'threads':>7s} {'float32':>8s} {'ptq_int8':>8s} {'ratio':>6s}")
    parts_table = []
    for i, row in enumerate(rows):
        label = row["prefix"] if i == 0 else f"+ {row['prefix'].split('+')[-1]}"
        for t in threads:
            f32, i8 = part_ms(i, "float32", t), part_ms(i, "ptq_int8", t)
            ratio = f32 / i8 if i8 > 0 else float("nan")
            parts_table.append(
                {"part": label, "threads": t, "float32_ms": f32, "ptq_int8_ms": i8, "ratio": ratio}
            )
            print(f"{label:16s} {t:7d} {f32:8.2f} {i8:8.2f} {ratio:6.2f}")
    layers, kinds, invoke_ms = [], [], {}
    if not args.skip_layers:
        specs = conv_calls(model)
        print(f"\ntiming {len(specs)} distinct convolutions alone, float32 and int8, 1 thread")
        layers, invoke_ms = time_conv_kinds(specs, args.runs, args.rounds)
        kinds = kind_totals(layers)
        print(
            f"\nEvery convolution of Lite0 at {args.image_size} px alone, summed per kind, ms"
            f" (an invoke's own {invoke_ms['float32'] * 1000:.1f} / "
            f"{invoke_ms['int8'] * 1000:.1f} us taken off each call)"
        )
        print(f"{'kind':12s} {'calls':>5s} {'float32':>8s} {'int8':>8s} {'ratio':>6s}")
        for row in kinds:
            print(
                f"{row['kind']:12s} {row['calls']:5d} {row['float32_ms']:8.2f} "
                f"{row['int8_ms']:8.2f} {row['ratio']:6.2f}"
            )
        print("\nthe five depthwise convolutions with the most int8 time")
        depthwise = [layer for layer in layers if layer["kind"] == "depthwise"]
        for layer in sorted(depthwise, key=lambda r: -r["calls"] * r["int8_ms"])[:5]:
            shape = "x".join(str(d) for d in layer["input_shape"])
            print(
                f"  {shape:>12s} k{layer['kernel'][0]} s{layer['strides'][0]} x{layer['calls']}: "
                f"float32 {layer['float32_ms']:.3f} int8 {layer['int8_ms']:.3f} ms "
                f"({layer['float32_ms'] / layer['int8_ms']:.2f}x)"
            )
    document = {
        "benchmark": "int8_parts",
        "model": "efficientdet-lite0",
        "image_size": args.image_size,
        "num_classes": args.num_classes,
        "runs": args.runs,
        "machine": info,
        "load_average_at_end": list(os.getloadavg()),
        "prefixes": rows,
        "parts": parts_table,
        "rounds": args.rounds,
        "conv_invoke_ms": invoke_ms,
        "conv_kinds": kinds,
        "convolutions": layers,
    }
    pathlib.Path(args.output).write_text(json.dumps(document, indent=2))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
