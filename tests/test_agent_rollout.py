"""The rollout recipes in deploy/ (cloud-init user-data, Ansible playbook): parsed, checked
against the systemd unit they install, and their agent.toml loaded by the agent itself."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from agent.config import load

ROOT = Path(__file__).resolve().parent.parent
USER_DATA = ROOT / "deploy" / "cloud-init" / "user-data.yaml"
PLAYBOOK = ROOT / "deploy" / "ansible" / "fleetpulse-agent.yml"
UNIT = ROOT / "deploy" / "fleetpulse-agent.service"
VALUES = {
    "FLEETPULSE_URL": "https://metrics.example.com",
    "FLEETPULSE_ENROLL_TOKEN": "enroll-abc123",
    "FLEETPULSE_WHEEL_URL": "https://artifacts.example.com/fleetpulse-0.1.0-py3-none-any.whl",
}


def rendered() -> str:
    """The user-data as the README renders it (envsubst where installed, else the same here)."""
    raw = USER_DATA.read_text()
    envsubst = shutil.which("envsubst")
    if envsubst is None:
        return re.sub(r"\$\{(\w+)\}", lambda m: VALUES[m.group(1)], raw)
    names = " ".join(f"${k}" for k in VALUES)
    return subprocess.run(
        [envsubst, names], input=raw, env=VALUES, capture_output=True, text=True, check=True
    ).stdout


def files(doc: dict) -> dict[str, dict]:
    return {f["path"]: f for f in doc["write_files"]}


def test_cloud_init_user_data_installs_the_unit_and_an_enrolling_config(tmp_path):
    raw = USER_DATA.read_text()
    assert raw.startswith("#cloud-config\n")
    assert set(re.findall(r"\$\{(\w+)\}", raw)) == set(VALUES)  # nothing else is replaced
    doc = yaml.safe_load(rendered())
    written = files(doc)
    assert written["/etc/systemd/system/fleetpulse-agent.service"]["content"] == UNIT.read_text()
    config = written["/etc/fleetpulse-agent/agent.toml"]
    assert config["permissions"] == "0600" and config["owner"] == "root:root"
    path = tmp_path / "agent.toml"
    path.write_text(config["content"])
    cfg = load(path, environ={}, hostname="web-01")
    assert cfg.url == VALUES["FLEETPULSE_URL"] and cfg.enroll_token == "enroll-abc123"
    assert not cfg.token  # the host enrolls itself
    commands = [" ".join(c) for c in doc["runcmd"]]
    assert any(
        c.startswith("useradd --system") and c.endswith("fleetpulse-agent") for c in commands
    )
    assert "chmod 0640 /etc/fleetpulse-agent/agent.toml" in commands
    pip = "/opt/fleetpulse-agent/venv/bin/pip install --quiet "
    assert pip + VALUES["FLEETPULSE_WHEEL_URL"] in commands
    assert commands[-1] == "systemctl enable --now fleetpulse-agent.service"
    assert "python3-venv" in doc["packages"]


def test_cloud_init_schema_where_cloud_init_is_installed(tmp_path):
    exe = shutil.which("cloud-init")
    if exe is None:
        pytest.skip("cloud-init is not installed here: the YAML is checked by the test above")
    path = tmp_path / "user-data.yaml"
    path.write_text(rendered())
    run = subprocess.run([exe, "schema", "--config-file", str(path)], capture_output=True,
                         text=True, check=False)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr


def test_ansible_playbook_installs_the_same_unit_and_hides_the_token():
    (play,) = yaml.safe_load(PLAYBOOK.read_text())
    tasks = {t["name"]: t for t in play["tasks"]}
    unit = tasks["The systemd unit"]["ansible.builtin.copy"]
    assert unit["src"].endswith("/deploy/fleetpulse-agent.service")
    assert unit["dest"] == "/etc/systemd/system/fleetpulse-agent.service"
    config = tasks["The configuration, with the enrollment token"]
    assert config["no_log"] is True and config["ansible.builtin.copy"]["mode"] == "0640"
    assert tomllib.loads(
        config["ansible.builtin.copy"]["content"].replace("{{ ", "").replace(" }}", "")
    ) == {"url": "fleetpulse_url", "enroll_token": "fleetpulse_enroll_token"}
    assert "FLEETPULSE_ENROLL_TOKEN" in play["vars"]["fleetpulse_enroll_token"]
    started = tasks["Started now and at every boot"]["ansible.builtin.systemd_service"]
    assert started["enabled"] is True and started["state"] == "started"


def test_ansible_playbook_syntax_check(tmp_path):
    exe = Path(sys.executable).parent / "ansible-playbook"
    if not exe.exists():
        exe = shutil.which("ansible-playbook")  # type: ignore[assignment]
    if exe is None:
        pytest.skip("ansible-core is not installed (requirements-dev.txt pins it)")
    run = subprocess.run(
        [str(exe), "-i", "localhost,", "--syntax-check", str(PLAYBOOK)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
        env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path),
             "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible")},
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
