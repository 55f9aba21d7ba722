"""The Conformance Statement agrees with the code: runs conformance/check_conformance.py.

Run: python3 -m pytest tests/test_conformance.py
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_conformance_statement_matches_code():
    run = subprocess.run(
        [sys.executable, "conformance/check_conformance.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, f"check_conformance.py failed:\n{run.stdout}\n{run.stderr}"
