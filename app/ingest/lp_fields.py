"""Where the C line protocol parser differs from InfluxDB: a line naming one field twice keeps
the *first* value there, while InfluxDB (TSM) keeps the last. Such lines are rare and found
cheaply (more ``=`` than tags and fields); only they are split here, and each field is parsed
again alone by the C parser, so values keep its typing."""

from __future__ import annotations

from line_protocol_parser import parse_line


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


def _field_pieces(line: str) -> list[str]:
    """The ``key=value`` texts of the field set: split on commas outside quotes and escapes."""
    i, n = 0, len(line)
    while i < n and line[i] == " ":
        i += 1
    while i < n and line[i] != " ":  # measurement and tags end at the first unescaped space
        i += 2 if line[i] == "\\" else 1
    while i < n and line[i] == " ":
        i += 1
    pieces, start, quoted = [], i, False
    while i < n:
        c = line[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif not quoted and c in ", ":
            pieces.append(line[start:i])
            if c == " ":
                return pieces
            start = i + 1
        i += 1
    pieces.append(line[start:i])
    return pieces
