"""argparse types for every numeric and list option: one clear message and exit 2 (EXIT_USAGE).

argparse turns the ArgumentTypeError raised here into
`nsgraph trace: error: argument --duration: must be a positive number of seconds, got 'nan'`
and exit status 2, before anything starts.
"""

from __future__ import annotations

import argparse
import math


def _number(text: str, kind=float):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError("%r is not %s" % (text, "a whole number" if kind is int else "a number"))
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError("%r is not a finite number" % text)
    return value


def positive_seconds(text: str) -> float:
    """A duration: finite and above zero (0 and nan would mean "forever", -1 "at once")."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds, got %r" % text)
    if value > 10 * 365 * 86400:
        raise argparse.ArgumentTypeError("%r seconds is more than ten years" % text)
    return value


def epoch_seconds(text: str) -> float:
    """A point in time, in seconds since the epoch (finite, not negative)."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be seconds since the epoch (0 or more), got %r" % text)
    return value


def int_range(low: int, high: int, what: str = "a whole number"):
    """An int between low and high, inclusive."""
    def parse(text: str) -> int:
        value = _number(text, int)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError("must be %s from %d to %d, got %r" % (what, low, high, text))
        return value
    parse.__name__ = "int_range"
    return parse


# The kernel's PID_MAX_LIMIT (4 194 304 on 64-bit); pid 0 is the idle task, never traced.
pid = int_range(1, 4 * 1024 * 1024, "a process id")


def power_of_two_pages(low: int, high: int):
    """A ring buffer size in pages: a power of two within [low, high]."""
    in_range = int_range(low, high, "a number of pages")

    def parse(text: str) -> int:
        value = in_range(text)
        if value & (value - 1):
            raise argparse.ArgumentTypeError("must be a power of two (e.g. %d), got %r"
                                             % (1 << (value.bit_length() - 1), text))
        return value
    parse.__name__ = "pages"
    return parse


def name_list(known=None, what: str = "name"):
    """A comma-separated list with at least one entry; with `known`, each must be one of them."""
    def parse(text: str) -> list:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError("needs at least one %s, got %r" % (what, text))
        if known is not None:
            unknown = [t for t in items if t not in known]
            if unknown:
                raise argparse.ArgumentTypeError("unknown %s %s (known: %s)" % (
                    what, ", ".join(unknown), ", ".join(known)))
        return items
    parse.__name__ = "list"
    return parse
