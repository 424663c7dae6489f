"""The contract's name rules (section 3) exist once per side: ``app/core/names.py`` for the
server, ``agent/names.py`` for the agent. One table of valid and invalid names, taken from the
contract's words, is fed to both, so the two can never drift apart."""

from __future__ import annotations

import pytest

import agent.names
import app.core.names

SIDES = {"server": app.core.names, "agent": agent.names}

# (rule, text, valid) — host: 1-128 of A-Z a-z 0-9 . _ -; metric: 1-128 of a-z 0-9 . _;
# tag keys: 1-64 of a-z 0-9 _ (host and time reserved); tag values: 1-128 printable characters.
TABLE = [
    ("host", "web-01", True),
    ("host", "Web_01.example.org", True),
    ("host", "h" * 128, True),
    ("host", "", False),
    ("host", "h" * 129, False),
    ("host", "web 01", False),
    ("host", "web/01", False),
    ("host", "wéb", False),
    ("host", "web-01\n", False),
    ("metric", "cpu.percent", True),
    ("metric", "gpu.mem_used.bytes", True),
    ("metric", "m" * 128, True),
    ("metric", "", False),
    ("metric", "m" * 129, False),
    ("metric", "CPU.percent", False),
    ("metric", "cpu-percent", False),
    ("metric", "cpu.percent\n", False),
    ("tag_key", "cpu", True),
    ("tag_key", "mount_point2", True),
    ("tag_key", "k" * 64, True),
    ("tag_key", "", False),
    ("tag_key", "k" * 65, False),
    ("tag_key", "Cpu", False),
    ("tag_key", "a.b", False),
    ("tag_key", "host", False),
    ("tag_key", "time", False),
    ("tag_key", "cpu\n", False),
    ("tag_value", "total", True),
    ("tag_value", "/srv/my data", True),
    ("tag_value", "ü-x <b>", True),
    ("tag_value", "v" * 128, True),
    ("tag_value", "", False),
    ("tag_value", "v" * 129, False),
    ("tag_value", "a\nb", False),
    ("tag_value", "tab\there", False),
]


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize(("rule", "text", "valid"), TABLE)
def test_both_sides_judge_every_name_alike(side, rule, text, valid):
    reason = getattr(SIDES[side], f"{rule}_error")(text)
    if valid:
        assert reason is None, (side, rule, text, reason)
    else:
        assert isinstance(reason, str) and reason, (side, rule, text)


def test_both_sides_allow_the_same_number_of_tags():
    assert app.core.names.MAX_TAGS == agent.names.MAX_TAGS == 8


@pytest.mark.parametrize(("rule", "text", "valid"), [r for r in TABLE if r[0] != "tag_value"])
def test_the_api_answers_as_the_rules_say(client, rule, text, valid):
    """The server's rules are the ones its schema applies to a request."""
    series = {"metric": "m.x", "tags": {}, "points": [[1_900_000_000, 1.0]]}
    host = "h1"
    if rule == "host":
        host = text
    elif rule == "metric":
        series["metric"] = text
    else:
        series["tags"] = {text: "v"}
    r = client.samples(host, [series])
    bad = {k for k in r.json.get("details", {}) if not k.startswith("series.0.points")}
    assert (not bad) == valid, (rule, text, r.json)
