"""PRMs: the MLP trainer, the tabular and MLP PRMs on a real Taxi log, the calibration report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpseek_core.prm import MLPPRM
from training.config import PRMConfig
from training.mlp import class_weights, fit_mlp
from training.prm import main as prm_main
from training.steplog_io import read_steplog


def test_fit_mlp_is_deterministic_and_learns() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 3)).astype(np.float32)
    y = (x[:, 0] * x[:, 1] > 0).astype(np.float32)  # XOR-like: needs the hidden layer
    a = fit_mlp(x, y, hidden=(16, 16), epochs=25, lr=1e-2, batch_size=100, progress=False)
    b = fit_mlp(x, y, hidden=(16, 16), epochs=25, lr=1e-2, batch_size=100, progress=False)
    for wa, wb in zip(a.weights, b.weights, strict=True):
        np.testing.assert_array_equal(wa, wb)
    acc = np.mean((a.probability(x) > 0.5) == (y > 0.5))
    assert acc > 0.9, acc
    with pytest.raises(ValueError, match="y in"):
        fit_mlp(x, y * 2, progress=False)


def test_balanced_class_weights() -> None:
    y = np.array([1, 0, 0, 0])
    w = class_weights(y)
    assert w[y == 1].sum() == pytest.approx(w[y == 0].sum()) == pytest.approx(2.0)
    x = np.random.default_rng(1).normal(size=(400, 2)).astype(np.float32)
    yy = (np.arange(400) % 10 == 0).astype(np.float32)  # 10% positives, unlearnable
    plain = fit_mlp(x, yy, epochs=30, progress=False).probability(x).mean()
    balanced = (
        fit_mlp(x, yy, epochs=30, class_weight="balanced", progress=False).probability(x).mean()
    )
    assert plain < 0.25 < 0.35 < balanced


def test_prm_beats_constant_and_exports_to_core(taxi_log: Path, tmp_path: Path) -> None:
    out = prm_main(
        PRMConfig(log=taxi_log, out=tmp_path, epochs=8, progress=False), log_fn=lambda _: None
    )
    report = json.loads((out / "report.json").read_text())
    assert report["mlp"]["brier"] < report["constant"]["brier"] - 0.05
    assert report["tabular"]["brier"] < report["constant"]["brier"]
    assert report["mlp"]["ece"] < 0.05 and report["mlp"]["auroc"] > 0.8
    assert report["exact_mae"]["mlp"] < report["exact_mae"]["constant"]
    # the exported file is core's MLPPRM layout and scores like the report says
    with np.load(out / "prm.npz") as z:
        prm = MLPPRM.from_arrays(dict(z))
    test, _ = read_steplog(taxi_log, split="test")
    p = prm.score(test.features)[np.arange(len(test)), test.action.astype(int)]
    brier = float(np.mean((p - test.success) ** 2))
    assert brier == pytest.approx(report["mlp"]["brier"], abs=1e-6)
    assert "| mlp |" in (out / "report.md").read_text()
