"""The Makefile on a machine a newcomer brings: an old Python is named before pip runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_install_with_python_3_10_stops_first_and_says_what_is_needed(tmp_path: Path) -> None:
    # Python 3.10 as far as the Makefile can tell: this interpreter, reporting 3.10.14.
    old = tmp_path / "python3.10"
    real = getattr(sys, "_base_executable", sys.executable)
    old.write_text(
        "#!/bin/sh\n"
        f'[ "$1" = "-c" ] || exit 99\nexec {real} -c "import sys; sys.version_info = (3, 10, 14, \'final\', 0); '
        'sys.version = \'3.10.14\'; exec(sys.argv[1])" "$2"\n'
    )
    old.chmod(0o755)
    venv = tmp_path / "venv"
    result = subprocess.run(
        [shutil.which("make") or "make", "install", f"PYTHON={old}", f"VENV={venv}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert f"region phone-sync needs Python 3.11+, and {old} is Python 3.10.14" in result.stderr
    assert not venv.exists(), "it created the virtualenv before saying so"
