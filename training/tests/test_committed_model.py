"""The committed models/wafer-fault artifacts are consistent with each other and with onnxruntime."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import check_model_dir

MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "wafer-fault"


@pytest.mark.skipif(not (MODEL_DIR / "model.onnx").exists(), reason="no committed model")
def test_committed_model_card_and_golden():
    card = check_model_dir(MODEL_DIR)
    assert card["training"]["rows"] > 1000
    assert len(card["training"]["features_used"]) >= 1
