"""Where the C line protocol parser differs from InfluxDB, wrapped: a line naming one field
twice keeps the *first* value there, while InfluxDB (TSM) keeps the last; and floats below
the normal range (subnormals such as 1e-310) are refused, while Go's ParseFloat takes them.
Such lines are rare and found cheaply; only they are split here, and each field is parsed again
alone by the C parser, so values keep its typing."""

from __future__ import annotations

import re

from line_protocol_parser import LineFormatError, parse_line

_FLOAT = re.compile(r"-?(?:\d+\.?\d*|\.\d+)[eE]-\d+")


def needs_recount(line: str, parsed: dict) -> bool:
    """True when the line may name a field twice: every tag and field has one ``=``, so more
    of them means an escaped or quoted ``=``, or a repeated field."""
    return line.count("=") > len(parsed["tags"]) + len(parsed["fields"])


def fields_last_wins(line: str, fields: dict) -> dict:
    """The line's fields with InfluxDB's rule for a repeated field: the last value wins."""
    pieces = _field_pieces(line)
    if len(pieces) == len(fields):
        return fields
    out: dict = {}
    for piece in pieces:
        one = parse_line("m " + piece)["fields"]
        for k, v in one.items():
            out.pop(k, None)
            out[k] = v
    return out


def parse_small_floats(line: str) -> dict:
    """Parse a line the C parser refused, if its only fault is a float with a large negative
    exponent: those values are parsed by Python. Raises LineFormatError otherwise."""
    text, small = line, {}
    for start, end in reversed(_field_spans(line)):
        piece = line[start:end]
        key, _, value = piece.rpartition("=")
        if key and _FLOAT.fullmatch(value):
            try:
                parse_line("m " + piece)
            except LineFormatError:
                name = next(iter(parse_line(f"m {key}=0")["fields"]))
                small[name] = float(value)
                text = text[:start] + f"{key}=0" + text[end:]  # right to left: spans hold
    if not small:
        raise LineFormatError("failed to parse type of field value")
    p = parse_line(text)
    p["fields"].update(small)
    return p


def _field_pieces(line: str) -> list[str]:
    """The ``key=value`` texts of the field set."""
    return [line[a:b] for a, b in _field_spans(line)]


def _field_spans(line: str) -> list[tuple[int, int]]:
    """Where the field set's ``key=value`` texts lie: split on commas outside quotes/escapes."""
    i, n = 0, len(line)
    while i < n and line[i] == " ":
        i += 1
    while i < n and line[i] != " ":  # measurement and tags end at the first unescaped space
        i += 2 if line[i] == "\\" else 1
    while i < n and line[i] == " ":
        i += 1
    pieces, start, in_value = [], i, False
    while i < n:
        c = line[i]
        if c == "\\":
            i += 2
            continue
        if not in_value and c == "=":  # a quote is literal in a key, special only here
            in_value = True
            if i + 1 < n and line[i + 1] == '"':
                i = _string_end(line, i + 2)
                continue
        elif c in ", ":
            pieces.append((start, i))
            if c == " ":
                return pieces
            start, in_value = i + 1, False
        i += 1
    pieces.append((start, i))
    return pieces


def _string_end(line: str, i: int) -> int:
    """The index just past the closing quote of a string value opened before ``i``."""
    n = len(line)
    while i < n:
        if line[i] == "\\":
            i += 2
        elif line[i] == '"':
            return i + 1
        else:
            i += 1
    return n
