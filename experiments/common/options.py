"""Option types shared by the command lines: ε and step sizes written as fractions (``8/255``)."""

from __future__ import annotations

import argparse
from fractions import Fraction

__all__ = ["parse_fraction"]


def parse_fraction(text) -> float:
    """``"8/255"`` or ``"0.03"`` → float (an ``argparse`` type: a bad value is a usage error).

    Raises
    ------
    argparse.ArgumentTypeError
        If ``text`` is neither a number nor a fraction.

    Examples
    --------
    >>> parse_fraction("8/255") == 8 / 255, parse_fraction("0.5")
    (True, 0.5)
    """
    try:
        return float(Fraction(str(text).strip()))
    except (ValueError, ZeroDivisionError):
        message = f"expected a number or a fraction like 8/255, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None
