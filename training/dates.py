"""Dates written the ways people write them, and the same date in ISO: the data the date
translator learns from, generated (no download), reproducible from a seed.

Numeric forms follow the two conventions people use: with slashes the month comes first
("05/03/79" is the 3rd of May, as in the US), with dots or dashes the day ("03.05.1979", as
in much of Europe). Two-digit years pivot at 30
(30..99 -> 1930..1999, 00..29 -> 2000..2029); dates range over 1930..2029. Some formats are
held out of training and only tested, so the metric says whether the model reads the pieces
of a date rather than memorising a layout.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable

MONTHS = [
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
]  # fmt: skip
FIRST, LAST = dt.date(1930, 1, 1), dt.date(2029, 12, 31)
MAX_TEXT = 40
"""Longest input text in bytes (the encoder's input length)."""


def ordinal(day: int) -> str:
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _month(date: dt.date) -> str:
    return MONTHS[date.month - 1]


def _weekday(date: dt.date) -> str:
    return date.strftime("%A")


Format = Callable[[dt.date], str]

TRAIN_FORMATS: dict[str, Format] = {
    "3rd of May 1979": lambda d: f"{ordinal(d.day)} of {_month(d)} {d.year}",
    "05/03/79": lambda d: f"{d.month:02d}/{d.day:02d}/{d.year % 100:02d}",
    "Thursday, May 3, 1979": lambda d: f"{_weekday(d)}, {_month(d)} {d.day}, {d.year}",
    "3 May 1979": lambda d: f"{d.day} {_month(d)} {d.year}",
    "May 3, 1979": lambda d: f"{_month(d)} {d.day}, {d.year}",
    "5/3/1979": lambda d: f"{d.month}/{d.day}/{d.year}",
    "03.05.1979": lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}",
    "3 may 79": lambda d: f"{d.day} {_month(d).lower()} {d.year % 100:02d}",
    "MAY 3 1979": lambda d: f"{_month(d).upper()} {d.day} {d.year}",
    "Thu 3 May 1979": lambda d: f"{_weekday(d)[:3]} {d.day} {_month(d)} {d.year}",
    "3 May '79": lambda d: f"{d.day} {_month(d)[:3]} '{d.year % 100:02d}",
    "1979-05-03": lambda d: d.isoformat(),
    "may 3rd 1979": lambda d: f"{_month(d).lower()} {ordinal(d.day)} {d.year}",
    "03-05-1979": lambda d: f"{d.day:02d}-{d.month:02d}-{d.year}",
    "03.05.79": lambda d: f"{d.day:02d}.{d.month:02d}.{d.year % 100:02d}",
    "3.5.1979": lambda d: f"{d.day}.{d.month}.{d.year}",
}
HELD_OUT_FORMATS: dict[str, Format] = {
    "the 3rd of May, 1979": lambda d: f"the {ordinal(d.day)} of {_month(d)}, {d.year}",
    "Thursday 3 May 1979": lambda d: f"{_weekday(d)} {d.day} {_month(d)} {d.year}",
    "3.5.79": lambda d: f"{d.day}.{d.month}.{d.year % 100:02d}",
}


def random_date(rng: random.Random) -> dt.date:
    return FIRST + dt.timedelta(days=rng.randrange((LAST - FIRST).days + 1))


def examples(
    count: int,
    seed: int,
    formats: dict[str, Format],
    exclude: set[dt.date] | None = None,
    indent: int = 0,
) -> list[tuple[str, str]]:
    """(text, ISO) pairs: random dates, each written in a random one of `formats`, after 0 to
    `indent` spaces: shifted copies teach the model to find the day, month and year by what
    they look like rather than where a layout puts them."""
    rng = random.Random(seed)
    names = sorted(formats)
    pairs = []
    while len(pairs) < count:
        date = random_date(rng)
        if exclude and date in exclude:
            continue
        text = formats[rng.choice(names)](date)
        pairs.append((" " * rng.randint(0, indent) + text, date.isoformat()))
    return pairs


def held_out_dates(count: int, seed: int) -> set[dt.date]:
    """Dates training never sees, in any format."""
    rng = random.Random(seed + 1_000_003)
    return {random_date(rng) for _ in range(count)}
