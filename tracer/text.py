"""Text that is safe to print on a terminal line."""

_CONTROL = {i: "\\x%02x" % i for i in range(32)}
_CONTROL.update({ord("\n"): "\\n", ord("\t"): "\\t", 127: "\\x7f"})


def printable(text: str) -> str:
    """One terminal line: command lines and comm may hold newlines or escape sequences."""
    return text.translate(_CONTROL)
