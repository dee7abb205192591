import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def pins(lines):
    return dict(line.strip().split("==") for line in lines if "==" in line and not line.startswith("#"))


def test_conda_env_pins_the_same_versions_as_requirements():
    requirements = pins((ROOT / "requirements.txt").read_text().splitlines())
    env = yaml.safe_load((ROOT / "envs/basins.yaml").read_text())
    pip_section = next(item["pip"] for item in env["dependencies"] if isinstance(item, dict))
    for name, version in pins(pip_section).items():
        assert requirements[name] == version, name
    assert requirements["torch"] == "2.13.0"


def test_every_rule_declares_the_pinned_env():
    for rules in (ROOT / "workflow/rules").glob("*.smk"):
        text = rules.read_text()
        n_rules = len(re.findall(r"^rule \w+:", text, flags=re.MULTILINE))
        assert n_rules == text.count('conda:\n        "../../envs/basins.yaml"'), rules
