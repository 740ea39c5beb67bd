"""Where int8 falls short of 2x: float32 vs ptq_int8 latency of each part of EfficientDet-Lite0.

Builds EfficientDet-Lite0 (default 320 px, 2 classes, untrained weights: latency
does not depend on the weight values) and cuts it into growing prefixes at its
part boundaries (``model.PART_PATTERNS``): the backbone (input normalisation
and EfficientNet-Lite0), the backbone and the BiFPN (with the extra levels'
resampling), and the whole network (raw class and box outputs, no NMS op).
Each prefix is converted to float32 and to PTQ int8 (uint8 input, int8
kernels, calibrated on raccoon images resized and padded, as the pipeline's
``ptq_int8``) and timed with LiteRT (XNNPACK) at each ``--threads`` count,
``--runs`` invocations after 3 warm-up runs, on one raccoon image. A part's
cost is the difference between consecutive prefixes; the int8 / float32 ratio
of each part shows which one keeps the whole file from 2x.

Prints a table; writes bench/results/int8_parts.json with machine details and
the load average.

Run: .venv/bin/python bench/bench_int8_parts.py [--image-size 320] [--runs 50]
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import sys

from bench_tflite_export import latency_parser, raccoon_images
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


def latency(content: bytes, image, threads: int, runs: int) -> float:
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    from model_maker.core.litert_detector import measure_latency

    interpreter = Interpreter(model_content=content, num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    pixels = np.asarray(image, np.float32)[None]
    if detail["dtype"] == np.uint8:
        pixels = np.clip(np.round(pixels), 0, 255).astype(np.uint8)
    interpreter.set_tensor(detail["index"], pixels)
    return measure_latency(interpreter.invoke, runs=runs, warmup=3, num_threads=threads).median_ms


def main(argv: list[str] | None = None) -> int:
    parser = latency_parser(__doc__.splitlines()[0])
    parser.add_argument("--calibration-images", type=int, default=16)
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
    rows = []
    for name, parts in PREFIXES.items():
        sub = prefix_model(model, parts)
        row = {"prefix": name, "outputs": len(sub.outputs), "ms": {}}
        for kind in ("float32", "ptq_int8"):
            content = convert(sub, kind == "ptq_int8", calibration)
            row["ms"][kind] = {str(t): latency(content, images[0], t, args.runs) for t in threads}
            row[f"{kind}_bytes"] = len(content)
            print(
                f"{name:16s} {kind:9s} "
                + "  ".join(f"{t}t {row['ms'][kind][str(t)]:7.2f} ms" for t in threads),
                flush=True,
            )
        rows.append(row)

    def part_ms(i: int, kind: str, t: int) -> float:
        now = rows[i]["ms"][kind][str(t)]
        return now - (rows[i - 1]["ms"][kind][str(t)] if i else 0.0)

    print(f"\nEfficientDet-Lite0 at {args.image_size} px, median of {args.runs} runs, ms")
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
    }
    pathlib.Path(args.output).write_text(json.dumps(document, indent=2))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
