"""Running a check as a user whom file modes bind, when the suite runs as root (as CI does).

Root reads and writes any file through the capabilities CAP_DAC_OVERRIDE and
CAP_DAC_READ_SEARCH, so a chmod 000 file or a read-only folder stops nobody. `setpriv` starts a
process without them, where root obeys the mode like any user.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

#: Command prefix that drops root's file-permission override.
SETPRIV = ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
           "--inh-caps=-dac_override,-dac_read_search"]

REPO = Path(__file__).resolve().parent.parent.parent


def without_root_override() -> list[str]:
    """The prefix under which a command obeys file modes: none for a normal user, `SETPRIV` for
    root; skips the test for root without setpriv."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: file modes cannot be made to bind")
    return SETPRIV


def python_without_root_override(code: str) -> subprocess.CompletedProcess[str]:
    """Run Python `code` in a new interpreter under `without_root_override`; text output."""
    return subprocess.run([*without_root_override(), sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=60, check=False)


def rerun_without_root_override(test_file: str, keyword: str) -> None:
    """Run the tests of `test_file` matching `keyword` in pytest under `SETPRIV` and check they
    pass and none skips: the permission tests skip for root, and this brings them back."""
    proc = subprocess.run(
        [*SETPRIV, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", keyword,
         test_file],
        capture_output=True, text=True, timeout=300, check=False, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "skipped" not in proc.stdout and " passed" in proc.stdout, proc.stdout[-3000:]


#: Mark for the test that calls `rerun_without_root_override`: it only means something for root.
only_for_root_with_setpriv = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="only root skips the permission tests; setpriv brings them back",
)
