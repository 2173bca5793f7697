"""Check docker-compose.yaml against the repository without a Docker engine.

``docker compose config`` proves the file is valid Compose; it does not notice a mount of a folder that
was renamed, a script that is not there, or a region whose connections the example env file forgets.
This does, on the resolved configuration (``docker compose config --format json``) or, without the
docker client, on the YAML itself with ``${VAR:-default}`` interpolated from defaults.

    python docker/check_compose.py            # exit 1 and one line per problem
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yaml"
ENV_EXAMPLE = ROOT / "docker" / ".env.example"
INIT = ROOT / "docker" / "init.sh"
PROFILES = ("demo", "hapi")
AIRFLOW_COMMANDS = {"api-server", "scheduler", "dag-processor", "triggerer", "celery worker", "celery flower"}
REQUIRED = {
    "postgres",
    "redis",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "airflow-init",
}
# Services that run the mounted local servers (development tools, not installed in the image).
DEV_TOOLING = ("phone-sync-demo",)
AIRFLOW_MOUNTS = {"/opt/airflow/dags": "dags", "/opt/airflow/include": "include"}
# The constraints file the official image ships, or the published one for 3.3.2.
CONSTRAINTS = re.compile(r'--constraint[ =]"?(\$\{HOME\}|\$HOME|/home/airflow)/constraints\.txt|constraints-3\.3\.2/')
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def compose_available() -> bool:
    """True when ``docker compose`` (the v2 plugin) runs here; no engine is needed for ``config``."""
    docker = shutil.which("docker")
    if docker is None:
        return False
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, check=False)
    return probe.returncode == 0


def docker_config(env_file: Path | None = None) -> dict[str, Any]:
    """The resolved configuration with every profile, from ``docker compose config``; raises on errors."""
    argv = [shutil.which("docker") or "docker", "compose", "--project-directory", str(ROOT), "-f", str(COMPOSE)]
    if env_file:
        argv += ["--env-file", str(env_file)]
    for profile in PROFILES:
        argv += ["--profile", profile]
    result = subprocess.run([*argv, "config", "--format", "json"], capture_output=True, text=True, check=False)
    if result.returncode:
        raise RuntimeError(f"docker compose config failed: {result.stderr.strip()}")
    return json.loads(result.stdout)


def yaml_config() -> dict[str, Any]:
    """The YAML with anchors merged and ``${VAR:-default}`` replaced by its default (or empty)."""
    text = _VAR.sub(lambda m: m.group(2) or "", COMPOSE.read_text(encoding="utf-8")).replace("$$", "$")
    return yaml.safe_load(text)


def _binds(service: dict[str, Any]) -> list[tuple[Path, str]]:
    """(host path, container path) of each bind mount, whichever form the configuration has."""
    found = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                found.append((Path(volume["source"]), volume["target"]))
        else:
            source, target = volume.split(":")[:2]
            if source.startswith((".", "/")):
                found.append(((ROOT / source).resolve() if source.startswith(".") else Path(source), target))
    return found


def _host_path(container_path: str, binds: list[tuple[Path, str]]) -> Path | None:
    for source, target in binds:
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return source / container_path[len(target) :].lstrip("/")
    return None


def _words(value: Any) -> list[str]:
    if value is None:
        return []
    return value.split() if isinstance(value, str) else [str(v) for v in value]


def check(config: dict[str, Any]) -> list[str]:
    """Every problem found, one line each, naming the service."""
    services: dict[str, Any] = config.get("services", {})
    problems = [f"missing service {name}" for name in sorted(REQUIRED - set(services))]
    profiles = {p for s in services.values() for p in s.get("profiles", [])}
    problems += [f"no service in profile {p!r}" for p in PROFILES if p not in profiles]
    for name, service in sorted(services.items()):
        binds = _binds(service)
        problems += [f"{name}: mount source {src} does not exist" for src, _ in binds if not src.exists()]
        build = service.get("build")
        if build:
            context = Path(build["context"]) if isinstance(build, dict) else Path(build)
            context = context if context.is_absolute() else (ROOT / context).resolve()
            dockerfile = context / (build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")
            if not dockerfile.exists():
                problems.append(f"{name}: Dockerfile {dockerfile} does not exist")
            else:
                problems += _check_dockerfile(name, dockerfile, context)
        entrypoint, command = _words(service.get("entrypoint")), _words(service.get("command"))
        argv = entrypoint + command
        is_airflow = "build" in service or str(service.get("image", "")).startswith("region-phone-sync/")
        known = " ".join(command[:2]) in AIRFLOW_COMMANDS or " ".join(command[:1]) in AIRFLOW_COMMANDS
        if is_airflow and not entrypoint and not known:
            problems.append(f"{name}: {' '.join(command)!r} is not an airflow component command")
        for index, word in enumerate(argv):
            if word.startswith("/opt/") and word.endswith((".sh", ".py")):
                host = _host_path(word, binds)
                if host is None:
                    problems.append(f"{name}: {word} is not inside any mount")
                elif not host.exists():
                    problems.append(f"{name}: {word} -> {host} does not exist")
            if word == "-m" and index + 1 < len(argv):
                problems += _check_module(name, argv[index + 1], binds)
        if is_airflow and name not in DEV_TOOLING and "PYTHONPATH" in str(service.get("environment", "")):
            problems.append(f"{name}: sets PYTHONPATH (the phone_sync package is installed in the image)")
        if is_airflow and name not in DEV_TOOLING:
            mounted = {target: src for src, target in binds}
            for target, folder in AIRFLOW_MOUNTS.items():
                if mounted.get(target) != (ROOT / folder).resolve():
                    problems.append(f"{name}: ./{folder} is not mounted at {target}")
    return problems


def _instructions(text: str) -> list[list[str]]:
    """Each instruction's words, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    return [line.split() for line in joined.splitlines() if line.strip()]


def _check_dockerfile(name: str, dockerfile: Path, context: Path) -> list[str]:
    """Built on the official image, installing this project with Airflow's constraints and nothing else."""
    problems = []
    text = dockerfile.read_text(encoding="utf-8")
    if "FROM apache/airflow:3.3.2" not in text:
        problems.append(f"{name}: {dockerfile.name} is not built FROM apache/airflow:3.3.2")
    copied_to = []
    installs = []
    for words in _instructions(text):
        if words[:1] == ["COPY"]:
            sources = [p for p in words[1:-1] if not p.startswith("--")]
            problems += [f"{name}: COPY source {s} missing" for s in sources if not (context / s).exists()]
            if "pyproject.toml" in sources:
                copied_to.append(words[-1].rstrip("/"))
        if words[:1] == ["RUN"]:
            installs += [cmd for cmd in " ".join(words[1:]).split("&&") if "pip install" in cmd]
        if words[:1] == ["ENV"] and "PYTHONPATH" in " ".join(words):
            problems.append(f"{name}: {dockerfile.name} sets PYTHONPATH (the package is installed)")
    if not copied_to:
        problems.append(f"{name}: {dockerfile.name} does not copy pyproject.toml (the project is not installed)")
    for cmd in installs:
        if not CONSTRAINTS.search(cmd):
            problems.append(f"{name}: pip install without Airflow's constraints (${{HOME}}/constraints.txt)")
        if '"apache-airflow==3.3.2"' not in cmd and " apache-airflow==3.3.2" not in cmd:
            problems.append(f"{name}: pip install does not name apache-airflow==3.3.2, so it may move Airflow")
        if re.search(r"(^|\s)(-r|--requirement)(\s|=)|requirements", cmd):
            problems.append(f"{name}: pip install of a requirements file (the lock is for .venv and CI only)")
    if not any(target in cmd for cmd in installs for target in copied_to):
        problems.append(f"{name}: no pip install of the project copied to {', '.join(copied_to) or '?'}")
    return problems


def _check_module(name: str, module: str, binds: list[tuple[Path, str]]) -> list[str]:
    relative = module.replace(".", "/")
    for source, _ in binds:
        for base in (source, source.parent):
            if (base / f"{relative}.py").exists() or (base / relative / "__main__.py").exists():
                return []
    return [f"{name}: module {module} is not found in any mount"]


def check_env_example(env_example: Path = ENV_EXAMPLE, init: Path = INIT) -> list[str]:
    """The example env file names both connections and the PHI key of every region file, the stack's init
    checks that they exist before the first run, and .env is git-ignored."""
    from phone_sync.regions import load_regions

    problems = []
    example = env_example.read_text(encoding="utf-8") if env_example.exists() else ""
    if not example:
        problems.append(f"{env_example} missing")
    configs, _ = load_regions(ROOT / "include" / "regions")
    for config in configs:
        for conn_id in (config.sheets.conn_id, config.fhir.conn_id, config.phi_key_conn_id):
            if f"AIRFLOW_CONN_{conn_id.upper()}=" not in example:
                problems.append(f"{env_example.name}: no AIRFLOW_CONN_{conn_id.upper()} for region {config.region}")
    if not re.search(r"^\s*phone-sync-check-regions .*--connections", init.read_text(encoding="utf-8"), re.MULTILINE):
        problems.append(f"{init.name} does not run phone-sync-check-regions --connections")
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    if ".env" not in ignored and "/.env" not in ignored:
        problems.append(".env is not in .gitignore")
    return problems


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="docker/check_compose.py", description=__doc__.split("\n\n")[0]).parse_args(argv)
    configs = {"yaml": yaml_config()}
    if compose_available():
        configs["docker compose config"] = docker_config()
        configs["docker compose config (.env.example)"] = docker_config(ENV_EXAMPLE)
    else:
        print("docker compose is not available: checked the YAML only", file=sys.stderr)
    problems = check_env_example()
    for source, config in configs.items():
        problems += [f"[{source}] {p}" for p in check(config)]
    for problem in problems:
        print(problem)
    print(f"{COMPOSE.name}: {len(problems)} problem(s) ({', '.join(configs)})", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
