"""`make run` itself: the shipped demo config, at full size, reaches its accuracy target.

Marked e2e (about 8 minutes on 2 cores, after `make pretrained`): `make test-all`
runs it, `make test` does not. It calls `make run` with a temporary RUN_ROOT, so
the Makefile's demo-data arguments and configs/demo.yaml are what is tested.
"""

import json
import pathlib
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
VARIANTS = ("keras_float", "float32", "ptq_int8", "qat_int8")


@pytest.mark.e2e
def test_make_run_demo_float_ap50_at_least_half_and_int8_variants_measured(tmp_path):
    root = tmp_path / "demo"
    done = subprocess.run(
        ["make", "--no-print-directory", "run", f"RUN_ROOT={root}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30 * 60,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    latest = json.loads((root / "latest_run.json").read_text())
    metrics = json.loads((pathlib.Path(latest["evaluation"]) / "metrics.json").read_text())
    by_name = {v["variant"]: v for v in metrics["variants"]}
    assert set(VARIANTS) <= set(by_name), sorted(by_name)
    eval_images = {v["num_images"] for v in by_name.values()}
    assert len(eval_images) == 1 and eval_images.pop() >= 30  # 200 demo images, 0.2 eval
    ap = {name: by_name[name]["metrics"]["AP"] for name in VARIANTS}
    ap50 = {name: by_name[name]["metrics"]["AP50"] for name in VARIANTS}
    # The bar: float AP50 >= 0.5 on the demo eval split.
    assert ap50["keras_float"] >= 0.5, ap50
    # The TFLite float32 file is the Keras model (same op, same NMS settings).
    assert abs(ap["float32"] - ap["keras_float"]) < 0.01, ap
    # Both int8 files still detect the shapes: a broken conversion or QAT lands near 0.
    assert ap50["ptq_int8"] >= 0.5 and ap50["qat_int8"] >= 0.5, ap50
    # The printed table names every variant with its AP (in COCO points).
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| ")]
    header = next([c.strip() for c in row] for row in rows if row[0].strip() == "variant")
    shown = {r[0].strip(): r[header.index("AP")].strip() for r in rows if r[0].strip() in VARIANTS}
    for name in VARIANTS:
        assert float(shown[name]) == pytest.approx(100 * ap[name], abs=0.006), shown
    # The gate follows the numbers (default rule: qat_int8 AP >= float AP - 1 point);
    # QAT varies by a few points from run to run, so either outcome can happen.
    blessed = ap["qat_int8"] >= ap["keras_float"] - 0.01
    assert latest["blessed"] == blessed, (latest, ap)
    if blessed:
        assert pathlib.Path(latest["pushed"]).is_dir(), latest
    else:
        assert not latest["pushed"] and "not blessed" in latest["push_reason"], latest
