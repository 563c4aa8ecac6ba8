"""Checks for every numeric and list option: one line saying what is wrong, exit 2 (EXIT_USAGE).

Each check takes the parsed value and returns None when it is fine, else the problem;
`first_problem` runs a command's checks in order.  argparse has already turned the text
into a number (or said it could not); these catch what a number can still be:
nan, infinity, 0 or negative where that would mean "forever" or "at once", out of
range, or a list with nothing in it (`--type ,,,` would otherwise filter out everything).
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Optional

# The kernel's PID_MAX_LIMIT on 64-bit; pid 0 is the idle task, never traced.
PID_MAX = 4 * 1024 * 1024
TEN_YEARS_S = 10 * 365 * 86400
# A task's comm is 16 bytes with its NUL: a longer --comm could never match.
COMM_MAX = 15

Check = Callable[[object], Optional[str]]


def seconds(value) -> Optional[str]:
    """A duration: finite and above zero (0 and nan would mean "forever", -1 "at once")."""
    if not math.isfinite(value) or value <= 0:
        return "must be a positive number of seconds, not %s" % value
    if value > TEN_YEARS_S:
        return "must be at most ten years (%d seconds), not %s" % (TEN_YEARS_S, value)
    return None


def epoch(value) -> Optional[str]:
    if not math.isfinite(value) or value < 0:
        return "must be a time in seconds since the epoch (0 or more), not %s" % value
    return None


def days(value) -> Optional[str]:
    if not math.isfinite(value) or not 0 < value <= 3650:
        return "must be a number of days above 0 and at most 3650, not %s" % value
    return None


def size_mb(value) -> Optional[str]:
    if not math.isfinite(value) or value < 1:
        return "must be a size of at least 1 MB, not %s" % value
    return None


def int_range(low: int, high: int) -> Check:
    def check(value) -> Optional[str]:
        if not low <= value <= high:
            return "must be from %d to %d, not %s" % (low, high, value)
        return None
    return check


def pages(low: int, high: int) -> Check:
    """A buffer size in pages: a power of two within [low, high]."""
    def check(value) -> Optional[str]:
        if value < 1 or value & (value - 1):
            return "must be a power of two (e.g. 512), not %s" % value
        if not low <= value <= high:
            return "must be a power of two from %d to %d (%d MiB of memory), not %s" % (
                low, high, high * 4 // 1024, value)
        return None
    return check


def each(check: Check) -> Check:
    """The check applied to every value of a repeatable option."""
    def check_all(values) -> Optional[str]:
        for value in values:
            problem = check(value)
            if problem:
                return problem
        return None
    return check_all


def pid(value) -> Optional[str]:
    if not 1 <= value <= PID_MAX:
        return "must be a process id from 1 to %d, not %s" % (PID_MAX, value)
    return None


def comm(value) -> Optional[str]:
    if not value:
        return "must not be empty"
    if len(value.encode("utf-8", "replace")) > COMM_MAX:
        return ("%r is longer than the kernel's %d-byte command names, so it could never match; use its "
                "first %d bytes" % (value, COMM_MAX, COMM_MAX))
    return None


def not_empty(value) -> Optional[str]:
    return "must not be empty" if not value or not str(value).strip() else None


def name_list(text) -> Optional[str]:
    """A comma-separated list with at least one entry."""
    if not [t for t in str(text).split(",") if t.strip()]:
        return "needs at least one name, got %r" % text
    return None


def first_problem(args, rules: Iterable[tuple]) -> Optional[str]:
    """rules: (attribute, option, check); the first "OPTION problem" found, or None.
    Options that were not given (None) are not checked."""
    for attribute, option, check in rules:
        value = getattr(args, attribute, None)
        if value is None:
            continue
        problem = check(value)
        if problem:
            return "%s %s" % (option, problem)
    return None
