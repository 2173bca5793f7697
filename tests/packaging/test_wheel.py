"""The built wheel is a working Airflow provider and DAG package, without this checkout on the path.

The wheel is built from the repository (hatchling from the locked dev set, no download) and installed,
without dependencies, into a fresh virtualenv. That virtualenv sees the already-installed Airflow and
dependencies of ``.venv`` as a second site directory, minus this project's editable install, so the
check takes seconds instead of a 4-minute install and still proves what the wheel itself carries: the
package, its provider entry point and its console scripts. An Airflow home holding only the DAG file and
the region files must then parse every region's DAG.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from phone_sync.config import REGIONS_DIR_ENV, load_regions

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "region_phone_sync"

pytestmark = pytest.mark.slow

# Run inside the fresh virtualenv: where phone_sync comes from, what Airflow finds, what the DagBag parses.
PROBE = textwrap.dedent(
    """
    import json, sys, warnings
    from importlib.metadata import distribution
    import phone_sync
    from airflow.dag_processing.dagbag import DagBag
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hook = manager.hooks["fhir"]
    bag = DagBag(dag_folder=sys.argv[1])
    print(json.dumps({
        "phone_sync": phone_sync.__file__,
        "dist_files": str(distribution("region-phone-sync").locate_file("")),
        "sys_path": sys.path,
        "provider_version": manager.providers["region-phone-sync"].version,
        "hook": hook.hook_class_name if hook else None,
        "dag_ids": sorted(bag.dag_ids),
        "import_errors": {k: str(v)[-300:] for k, v in bag.import_errors.items()},
    }))
    """
)


def _run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False, **kwargs)  # type: ignore[call-overload]
    assert result.returncode == 0, f"{argv[:4]} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


def _site_view(target: Path) -> Path:
    """``.venv``'s site-packages as symlinks, without this project (its dist-info and editable finder)."""
    site_packages = Path(sysconfig.get_paths()["purelib"])
    target.mkdir()
    for entry in site_packages.iterdir():
        if entry.name.startswith((PROJECT, f"_editable_impl_{PROJECT}", f"__editable__.{PROJECT}")):
            continue
        (target / entry.name).symlink_to(entry)
    return target


def test_wheel_installs_the_provider_and_parses_the_dags(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-qw", str(wheels), str(ROOT)])
    (wheel,) = wheels.glob(f"{PROJECT}-*.whl")

    venv = tmp_path / "venv"
    _run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    own_site = Path(_run([str(python), "-c", purelib]).stdout.strip())
    view = _site_view(tmp_path / "installed")
    (own_site / "zz_installed_deps.pth").write_text(f"import site; site.addsitedir({str(view)!r})\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)])
    _run([sys.executable, "-m", "pip", "--python", str(python), "check"])  # the wheel's requirements are met

    home = tmp_path / "airflow"
    (home / "dags").mkdir(parents=True)
    shutil.copy(ROOT / "dags" / "phone_sync_regions.py", home / "dags")
    shutil.copytree(ROOT / "include" / "regions", home / "include" / "regions")
    unset = ("PYTHONPATH", REGIONS_DIR_ENV)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW") and k not in unset}
    env |= {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
    }
    probe = _run([str(python), "-c", PROBE, str(home / "dags")], cwd=home, env=env)
    found = json.loads(probe.stdout.strip().splitlines()[-1])

    assert Path(found["phone_sync"]).is_relative_to(own_site), found["phone_sync"]
    assert Path(found["dist_files"]) == own_site
    assert not [p for p in found["sys_path"] if p.startswith(str(ROOT))], "the checkout is on the path"
    assert found["hook"] == "phone_sync.fhir.hook.FhirHook"
    assert found["provider_version"] == wheel.name.split("-")[1]
    assert found["import_errors"] == {}
    configs, errors = load_regions(ROOT / "include" / "regions")
    assert errors == []
    assert found["dag_ids"] == sorted(c.dag_id for c in configs)

    checked = _run([str(venv / "bin" / "phone-sync-check-regions"), str(home / "include" / "regions")], env=env)
    assert f"{len(configs)} valid, 0 invalid" in checked.stdout
