"""ISO 8601 text -> UTC microseconds, held to an independent calendar computation."""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transforms.timeparse import InvalidTime, parse_instant_us

_OFFSETS = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes)))


def _expected_us(moment: datetime) -> int:
    """UTC microseconds by the calendar, not by datetime subtraction."""
    return calendar.timegm(moment.utctimetuple()) * 1_000_000 + moment.microsecond


def _text(moment: datetime, extra_digit: int | None, zulu: bool) -> str:
    text = moment.replace(tzinfo=None).isoformat(timespec="microseconds")
    if extra_digit is not None:
        text += str(extra_digit)  # .NET's 7th digit: a tenth of a microsecond, truncated
    offset = moment.utcoffset()
    if zulu and offset == timedelta(0):
        return text + "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{text}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


@given(st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2200, 1, 1),
                    timezones=st.one_of(st.just(timezone.utc), _OFFSETS)),
       st.one_of(st.none(), st.integers(0, 9)), st.booleans())
def test_any_instant_with_any_offset_parses_to_its_utc_microseconds(moment, extra_digit, zulu):
    assert parse_instant_us(_text(moment, extra_digit, zulu)) == _expected_us(moment)


def test_text_without_offset_is_utc_and_before_the_epoch_counts_down():
    assert parse_instant_us("1970-01-01T00:00:00") == 0
    assert parse_instant_us("1969-12-31T23:59:59.999999Z") == -1
    assert parse_instant_us("1969-12-31T23:00:00-01:00") == 0


@pytest.mark.parametrize("text", ["", "yesterday", "2025-13-01T00:00:00Z", "2025-01-01T25:00:00Z",
                                  "2025-01-01T00:00:00+24:00", 1735689600, None])
def test_what_is_not_an_instant_raises_invalid_time(text):
    with pytest.raises(InvalidTime):
        parse_instant_us(text)
