"""Look inside one sealed XCom value while debugging, with the PHI key: ``python -m phone_sync.unseal``.

    python -m phone_sync.unseal new-key                    # a fresh key for the phone_sync_phi_key connection
    python -m phone_sync.unseal show value.json            # a value copied from the UI's XCom tab (or - for stdin)
    python -m phone_sync.unseal show --api https://airflow.example --dag-id phone_sync__demo \\
        --run-id manual__2026-11-29T01:00:00+00:00 --task-id process_batch --map-index 3 --key return_value

The key comes from ``$PHONE_SYNC_PHI_KEY`` or, with ``--conn-id``, from the Airflow connection as the
tasks read it. The output holds patient data in clear: show it on your own screen only, never paste it
into a ticket or a chat. Who may hold the key is said in docs/security.md.
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


def opened(value: Any, sealer: Sealer) -> Any:
    """The contract (or list of contracts) in ``value``, opened, as plain JSON."""
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
    import requests

    url = (
        f"{args.api.rstrip('/')}/api/v2/dags/{quote(args.dag_id)}/dagRuns/{quote(args.run_id, safe='')}"
        f"/taskInstances/{quote(args.task_id)}/xcomEntries/{quote(args.key)}"
    )
    token = os.environ.get(TOKEN_ENV)
    response = requests.get(
        url,
        params={"map_index": args.map_index, "deserialize": "true"},
        headers={"Authorization": f"Bearer {token}"} if token else {},
        timeout=60,
    )
    response.raise_for_status()
    return response.json()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m phone_sync.unseal", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("new-key", help="print a fresh Fernet key")
    show = commands.add_parser("show", help="open a sealed XCom value (prints patient data)")
    show.add_argument("file", nargs="?", help="a file holding the value, or - for stdin (omit with --api)")
    show.add_argument("--conn-id", help=f"read the key from this Airflow connection (e.g. {DEFAULT_KEY_CONN_ID})")
    show.add_argument("--api", help="Airflow's base URL: fetch the value through the REST API")
    show.add_argument("--dag-id")
    show.add_argument("--run-id")
    show.add_argument("--task-id", default="process_batch")
    show.add_argument("--map-index", type=int, default=-1)
    show.add_argument("--key", default="return_value", help="XCom key (return_value, decided, ...)")
    args = parser.parse_args(argv)

    if args.command == "new-key":
        print(new_key())
        return 0
    try:
        sealer = sealer_for(args.conn_id) if args.conn_id else Sealer.from_text(os.environ.get(KEY_ENV), f"${KEY_ENV}")
        if args.api:
            if not (args.dag_id and args.run_id):
                parser.error("--api needs --dag-id and --run-id")
            value = fetch(args)
        elif args.file:
            text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
            value = json.loads(text)
        else:
            parser.error("give a file (or -) or --api")
        print(json.dumps(opened(value, sealer), indent=2, ensure_ascii=False))
    except (PhiKeyError, ContractError, ValueError) as exc:
        print(f"unseal: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
