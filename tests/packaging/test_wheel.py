"""The built wheel is a working Airflow provider and DAG package, without this checkout on the path, installed
the way docs/install.md tells an operator to install it into the Airflow they run.

``make wheel`` builds it (hatchling from the locked dev set, no download). It goes into a fresh virtualenv
that sees the already-installed Airflow and dependencies of ``.venv`` as a second site directory, minus this
project's editable install: that stands for the operator's existing deployment, and keeps the check to
seconds instead of a 4-minute, 2 GB install. The install is docs/install.md's command, dependencies
included: ``pip install <wheel> "apache-airflow==X" --constraint <constraints>``, with ``--no-index``, so pip
must satisfy every requirement of the wheel from what is installed, within the constraints, or fail.

What is proven: the wheel's requirements resolve within the pins of this lock for every package Airflow's
constraints pin (the lock minus what Airflow does not pin: gspread, fhir.resources, phonenumbers), and a
constraint that our ranges exclude makes that same command fail. What is not: Airflow's published
``constraints-3.3.2/constraints-3.11.txt`` itself (it cannot be downloaded here, only PyPI is reachable); its
pins can differ from the lock's. The image (docker/Dockerfile) is built with that published file.
An Airflow home holding only the DAG file and the region files must then parse every region's DAG.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from phone_sync.regions import REGIONS_DIR_ENV, load_regions

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "region_phone_sync"
# Packages Airflow's constraints file does not pin (the Dockerfile resolves them from our ranges), and us.
NOT_PINNED_BY_AIRFLOW = {"region-phone-sync", "gspread", "fhir-resources", "fhir-core", "phonenumbers"}

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


def _locked_pins() -> dict[str, str]:
    text = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    return {name.lower(): version for name, version in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", text, re.MULTILINE)}


def _constraints(path: Path, **changed: str) -> Path:
    """A constraints file as Airflow publishes one: a pin for every package it pins (here: the lock's pins)."""
    pins = {name: v for name, v in _locked_pins().items() if name not in NOT_PINNED_BY_AIRFLOW} | changed
    path.write_text("".join(f"{name}=={version}\n" for name, version in sorted(pins.items())))
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``make wheel``'s wheel, and a fresh virtualenv that sees the deployment's packages but not this project."""
    tmp = tmp_path_factory.mktemp("wheel")
    make = shutil.which("make") or "make"
    _run([make, "wheel", f"DIST={tmp / 'dist'}", f"PY={sys.executable}", f"STAMP={tmp / 'no-install'}"], cwd=ROOT)
    (wheel,) = (tmp / "dist").glob(f"{PROJECT}-*.whl")
    venv = tmp / "venv"
    _run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    own_site = Path(_run([str(python), "-c", purelib]).stdout.strip())
    view = _site_view(tmp / "installed")
    (own_site / "zz_installed_deps.pth").write_text(f"import site; site.addsitedir({str(view)!r})\n")
    return wheel, venv


def _install(venv: Path, wheel: Path, constraints: Path) -> subprocess.CompletedProcess[str]:
    """docs/install.md's command, offline: every requirement must come from what is installed. pip's report
    (what it installed) is written beside the constraints file."""
    airflow = f"apache-airflow=={_locked_pins()['apache-airflow']}"
    argv = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-index"]
    argv += ["--constraint", str(constraints), "--report", str(constraints.with_suffix(".json")), str(wheel), airflow]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)


def test_a_constraint_our_ranges_exclude_makes_the_install_fail(built: tuple[Path, Path], tmp_path: Path) -> None:
    """The negative control: the install below would notice a pin of Airflow's that our ranges refuse."""
    wheel, venv = built
    refused = _install(venv, wheel, _constraints(tmp_path / "constraints.txt", tenacity="8.5.0"))
    assert refused.returncode != 0
    assert "region-phone-sync 0.1.0 depends on tenacity" in refused.stdout, refused.stdout[-2000:]
    assert not list((venv / "lib").glob(f"python*/site-packages/{PROJECT}-*.dist-info"))


def test_wheel_installs_the_provider_and_parses_the_dags(built: tuple[Path, Path], tmp_path: Path) -> None:
    wheel, venv = built
    python = venv / "bin" / "python"
    own_site = Path(
        _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    )
    installed = _install(venv, wheel, _constraints(tmp_path / "constraints.txt"))
    assert installed.returncode == 0, installed.stdout[-2000:] + installed.stderr[-2000:]
    report = json.loads((tmp_path / "constraints.json").read_text())
    assert [item["metadata"]["name"] for item in report["install"]] == ["region-phone-sync"], "it moved a pin"
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
