"""The date translator's data: formats write the date they are given, held-out dates and
formats stay out of training. (Its quick training run is part of `deepserve-train all
--quick`, in test_training_quick.py.)"""

from __future__ import annotations

import datetime as dt

import numpy as np

from deepserve.training import dates
from deepserve.training.date_translator import decode_tokens, encode_answers, encode_texts


def test_every_format_writes_the_date_it_is_given():
    day = dt.date(1979, 5, 3)
    written = {
        name: write(day)
        for name, write in {**dates.TRAIN_FORMATS, **dates.HELD_OUT_FORMATS}.items()
    }
    assert written == {name: name for name in written}  # each format is named by 3 May 1979
    assert [dates.ordinal(d) for d in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 31)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "31st",
    ]  # fmt: skip


def test_held_out_dates_never_reach_training():
    unseen = dates.held_out_dates(500, seed=3)
    pairs = dates.examples(5000, seed=3, formats=dates.TRAIN_FORMATS, exclude=unseen)
    assert not {dt.date.fromisoformat(iso) for _, iso in pairs} & unseen
    assert all(dates.FIRST <= dt.date.fromisoformat(iso) <= dates.LAST for _, iso in pairs)
    assert max(len(text.encode()) for text, _ in pairs) <= dates.MAX_TEXT
    assert not set(dates.TRAIN_FORMATS) & set(dates.HELD_OUT_FORMATS)


def test_texts_and_answers_encode_and_decode():
    text = encode_texts(["3rd of May 1979", "x" * 60])
    assert text.shape == (2, dates.MAX_TEXT) and text.dtype == np.uint8
    assert bytes(text[0][:15]) == b"3rd of May 1979" and not text[0][15:].any()
    tokens = encode_answers(["1979-05-03"])
    assert tokens.shape == (1, 11) and decode_tokens(tokens[0]) == "1979-05-03"


def test_indented_examples_are_the_same_dates_shifted_and_still_fit():
    plain = dates.examples(2000, seed=5, formats=dates.TRAIN_FORMATS)
    shifted = dates.examples(2000, seed=5, formats=dates.TRAIN_FORMATS, indent=6)
    indents = [len(text) - len(text.lstrip(" ")) for text, _ in shifted]
    assert set(indents) == set(range(7))  # every shift from none to six spaces
    assert max(len(text.encode()) for text, _ in shifted) <= dates.MAX_TEXT
    assert all(text.lstrip(" ") in _every_writing(iso) for text, iso in shifted)
    assert len(plain) == len(shifted)


def _every_writing(iso: str) -> set[str]:
    day = dt.date.fromisoformat(iso)
    return {write(day) for write in dates.TRAIN_FORMATS.values()}
