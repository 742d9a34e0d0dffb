"""The INT8 survey's figures file: surveying some families replaces their entries and keeps
the others' (the survey of one family after retraining it does not erase the rest)."""

from __future__ import annotations

import json
from pathlib import Path

from deepserve.training import int8_survey


def test_a_survey_of_one_family_keeps_the_others(tmp_path: Path) -> None:
    path = tmp_path / "int8-survey-cpu.json"
    first = [{"family": "word_embed", "fp32": 1.0}, {"family": "lstm_reader"}]
    int8_survey.write_survey(path, first)
    int8_survey.write_survey(path, [{"family": "word_embed", "fp32": 0.5}, {"family": "extra"}])
    written = json.loads(path.read_text())
    assert [r["family"] for r in written] == ["lstm_reader", "word_embed", "extra"]
    assert written[1]["fp32"] == 0.5  # replaced, in the families' order, the unknown last
