"""The Prometheus files in observability/ pass Prometheus's own checker, and the alerting
rules fire on the series their unit tests give them, and only then."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

OBSERVABILITY = Path(__file__).resolve().parents[2] / "observability"
PROMTOOL = shutil.which("promtool")

pytestmark = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (Debian: prometheus)"
)


def promtool(*args: str) -> str:
    assert PROMTOOL is not None
    result = subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, check=False, cwd=OBSERVABILITY
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


@pytest.mark.parametrize("config", ["prometheus-local.yml", "prometheus.yml"])
def test_the_scrape_configs_are_valid(config: str) -> None:
    assert "SUCCESS" in promtool("check", "config", "--syntax-only", config)


def test_the_alerting_rules_are_valid() -> None:
    assert "SUCCESS: 6 rules found" in promtool("check", "rules", "alerts.yml")


def test_the_alerting_rules_pass_their_unit_tests() -> None:
    assert "SUCCESS" in promtool("test", "rules", "alerts.test.yml")
