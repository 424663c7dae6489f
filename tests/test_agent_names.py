"""The agent's copy of the API's name rules (agent/names.py), and that the agent obeys it."""

import pytest

from agent import names
from agent.batcher import Batcher
from agent.config import ConfigError, load
from agent.samples import Sample


@pytest.mark.parametrize(
    ("fn", "good", "bad"),
    [
        (names.host_error, ["web-01.example_A", "h" * 128], ["", "h" * 129, "a b", "ü", "a/b"]),
        (names.metric_error, ["cpu.percent", "a_b.9"], ["", "m" * 129, "CPU", "a-b", "a b"]),
        (names.tag_key_error, ["cpu", "k" * 64], ["", "k" * 65, "Key", "a.b", "host", "time"]),
        (names.tag_value_error, ["/srv/my data", "ü-x", "v" * 128], ["", "v" * 129, "a\nb"]),
    ],
)
def test_valid_texts_give_none_and_invalid_ones_a_reason(fn, good, bad):
    assert [fn(text) for text in good] == [None] * len(good)
    for text in bad:
        reason = fn(text)
        assert isinstance(reason, str) and reason, text


def test_exactly_the_contracts_names():
    public = {n for n in vars(names) if not n.startswith("_") and n != "annotations"}
    assert public - {"re"} == {
        "MAX_TAGS", "host_error", "metric_error", "tag_key_error", "tag_value_error",
    }  # fmt: skip
    assert names.MAX_TAGS == 8


def test_config_and_batcher_apply_the_same_rules():
    with pytest.raises(ConfigError, match="host"):
        load(environ={"FLEETPULSE_HOST": "a" * 129})
    b = Batcher("h", 30.0)
    tags = {f"k{i}": "v" for i in range(names.MAX_TAGS)}
    b.add([Sample("ok", tags, "", 1.0, 1.0), Sample("ok", {**tags, "k9": "v"}, "", 2.0, 1.0)])
    assert b.rejected == 1 and b.accepted == 1
