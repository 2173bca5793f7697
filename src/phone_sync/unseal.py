"""Look inside one sealed XCom value while debugging, with the PHI key: ``phone-sync-unseal``.

The output holds patient data in clear: show it on your own screen only, never paste it into a ticket
or a chat. Who may hold the key is said in docs/security.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

from phone_sync.contracts import CONTRACTS, ContractError
from phone_sync.crypto import DEFAULT_KEY_CONN_ID, PhiKeyError, Sealer, new_key, sealer_for

KEY_ENV = "PHONE_SYNC_PHI_KEY"
TOKEN_ENV = "AIRFLOW_API_TOKEN"  # noqa: S105 - the name of the variable, not a token
PROG = "phone-sync-unseal"
DESCRIPTION = """\
Open one sealed phone-sync XCom value (a batch's rows, with identifiers and phone numbers) while
debugging, with the region's PHI key. The output holds patient data in clear: keep it on your own
screen, never paste it into a ticket or a chat (docs/security.md says who may hold the key)."""
EPILOG = f"""\
examples:
  {PROG} new-key                       a fresh key for the {DEFAULT_KEY_CONN_ID} connection
  {PROG} show value.json               a value copied from the UI's XCom tab (- reads stdin)
  {PROG} show --api https://airflow.example --dag-id DAG --run-id RUN --map-index 3
                                                  one batch's value, through the REST API

environment variables:
  {KEY_ENV}    the PHI key (comma-separated keys, newest first), unless --conn-id names
                        the Airflow connection that holds it
  {TOKEN_ENV}     a token for Airflow's REST API, sent with --api

--api must be https (plain http only to a loopback host): the token goes out, patient data comes back.
"""
TTY_WARNING = (
    "unseal: the output below holds patient data in clear; keep it on this screen, never paste it into a "
    "ticket or a chat."
)


def opened(value: Any, sealer: Sealer) -> Any:
    """The contract (or list of contracts) in ``value``, opened, as plain JSON; numbers (the batch indexes
    ``process_batch`` maps over) as they are."""
    if isinstance(value, int | float):
        return value
    if isinstance(value, list):
        return [opened(item, sealer) for item in value]
    if isinstance(value, dict) and "value" in value and "contract" not in value:  # the REST API's wrapper
        return opened(value["value"], sealer)
    if isinstance(value, str):
        return opened(json.loads(value), sealer)
    name = value.get("contract") if isinstance(value, dict) else None
    if name not in CONTRACTS:
        raise ContractError(f"not a phone-sync XCom contract (contract {name!r})")
    return CONTRACTS[name].from_xcom(value, sealer).model_dump(mode="json")


def fetch(args: argparse.Namespace) -> Any:
    """One XCom entry through Airflow's REST API v2 (a token from ``$AIRFLOW_API_TOKEN``)."""
    from phone_sync.http.airflow_api import AirflowApi

    path = (
        f"/api/v2/dags/{quote(args.dag_id)}/dagRuns/{quote(args.run_id, safe='')}"
        f"/taskInstances/{quote(args.task_id)}/xcomEntries/{quote(args.key)}"
    )
    with AirflowApi(args.api, token=os.environ.get(TOKEN_ENV), timeout=60) as api:
        answer = api.call("GET", path, params={"map_index": args.map_index, "deserialize": "true"})
        return answer.json()


def parser() -> argparse.ArgumentParser:
    found = argparse.ArgumentParser(
        prog=PROG, description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = found.add_subparsers(dest="command", required=True)
    commands.add_parser("new-key", help="print a fresh Fernet key")
    show = commands.add_parser(
        "show",
        help="open a sealed XCom value (prints patient data)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    show.add_argument("file", nargs="?", help="a file holding the value, or - for stdin (omit with --api)")
    show.add_argument("--conn-id", help=f"read the key from this Airflow connection (e.g. {DEFAULT_KEY_CONN_ID})")
    show.add_argument("--api", help=f"Airflow's base URL (https): fetch the value through the REST API (${TOKEN_ENV})")
    show.add_argument("--dag-id", help="with --api: the DAG, e.g. phone_sync__demo")
    show.add_argument("--run-id", help="with --api: the run")
    show.add_argument("--task-id", default="process_batch", help="with --api: the task (default process_batch)")
    show.add_argument("--map-index", type=int, default=-1, help="with --api: the batch's map index")
    show.add_argument("--key", default="return_value", help="with --api: XCom key (return_value, decided, ...)")
    return found


def main(argv: list[str] | None = None) -> int:
    from phone_sync.errors import SetupError
    from phone_sync.http.airflow_api import AirflowApiError

    arguments = parser()
    args = arguments.parse_args(argv)
    if args.command == "new-key":
        print(new_key())
        return 0
    try:
        sealer = sealer_for(args.conn_id) if args.conn_id else Sealer.from_text(os.environ.get(KEY_ENV), f"${KEY_ENV}")
        if args.api:
            if not (args.dag_id and args.run_id):
                arguments.error("--api needs --dag-id and --run-id")
            value = fetch(args)
        elif args.file:
            text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
            value = json.loads(text)
        else:
            arguments.error("give a file (or -) or --api")
        shown = json.dumps(opened(value, sealer), indent=2, ensure_ascii=False)
    except (PhiKeyError, ContractError, ValueError, AirflowApiError, SetupError) as exc:
        print(f"unseal: {exc}", file=sys.stderr)
        return 1
    if sys.stdout.isatty():
        print(TTY_WARNING, file=sys.stderr)
    print(shown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
