"""The soak script stays runnable and finds no mismatch on a short run (the long run is in the README)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a soak, short as it is


def test_a_short_soak_with_faults_and_kills_has_no_mismatch():
    script = Path(__file__).parent.parent / "scripts" / "soak.py"
    result = subprocess.run([sys.executable, str(script), "--runs", "12", "--fault-rate", "0.08", "--kill-rate",
                             "0.25", "--seed", "3"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^mismatches +0$", result.stdout, re.M)
    assert int(re.search(r"^faults injected (\d+)", result.stdout, re.M).group(1)) > 0
    assert ": ok, " in result.stdout  # verify passed
