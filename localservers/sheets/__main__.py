"""``python -m localservers.sheets --host 127.0.0.1 --port 8601 [--seed ID:WORKSHEET=file.csv ...]``.

Seeds are parsed as USER_ENTERED (as if typed or pasted into Sheets): ``0812…`` becomes a number
(leading zero lost, as in Sheets); write ``'0812…`` or list the column in ``--text`` to keep text.
``--scientific ID:WORKSHEET=phone_number`` gives a column's numbers the scientific format.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import uvicorn

from . import store
from .app import Emulator, create_app
from .quota import Settings


def _target(value: str) -> tuple[str, str, str]:
    """``SPREADSHEET_ID:WORKSHEET=VALUE`` -> (id, worksheet, value)."""
    target, sep, rest = value.partition("=")
    sid, colon, title = target.partition(":")
    if not (sep and colon and sid and title and rest):
        raise argparse.ArgumentTypeError(f"expected SPREADSHEET_ID:WORKSHEET=VALUE, got {value!r}")
    return sid, title, rest


def _columns(values: list[tuple[str, str, str]]) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = {}
    for sid, title, names in values:
        out.setdefault((sid, title), []).extend(n.strip() for n in names.split(",") if n.strip())
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m localservers.sheets", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8601)
    parser.add_argument("--seed", type=_target, action="append", default=[], metavar="ID:WORKSHEET=CSV")
    parser.add_argument("--scientific", type=_target, action="append", default=[], metavar="ID:WORKSHEET=COLS")
    parser.add_argument("--text", type=_target, action="append", default=[], metavar="ID:WORKSHEET=COLS")
    parser.add_argument("--read-quota", type=int, default=60, help="read requests per minute per user")
    parser.add_argument("--write-quota", type=int, default=60, help="write requests per minute per user")
    parser.add_argument("--project-read-quota", type=int, default=300)
    parser.add_argument("--project-write-quota", type=int, default=300)
    parser.add_argument("--quota-window", type=float, default=60.0, help="seconds per quota window")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every API request")
    parser.add_argument("--allow-anonymous", action="store_true", help="accept requests without a token")
    parser.add_argument("--token", type=str, action="append", default=[], metavar="TOKEN=USER",
                        help="a fixed bearer token (spreadsheets scope) for curl or a demo")
    parser.add_argument("--state", type=Path, help="JSON file: loaded at start, saved at shutdown")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("the Sheets emulator serves loopback only (--host 127.0.0.1)")
    settings = Settings(
        read_per_user=args.read_quota,
        write_per_user=args.write_quota,
        read_per_project=args.project_read_quota,
        write_per_project=args.project_write_quota,
        window_seconds=args.quota_window,
        latency_ms=args.latency_ms,
        allow_anonymous=args.allow_anonymous,
    )
    emulator = Emulator(settings, args.state)
    scientific, text = _columns(args.scientific), _columns(args.text)
    for sid, title, csv_path in args.seed:
        book = emulator.books.setdefault(sid, store.Spreadsheet(sid, sid))
        store.sheet_from_rows(
            book, title, store.read_csv(Path(csv_path)), "USER_ENTERED",
            scientific.get((sid, title), ()), text.get((sid, title), ()),
        )
    for item in args.token:
        token, _, user = item.partition("=")
        emulator.tokens.add_static(token, user or "demo@example.iam.gserviceaccount.com")
    uvicorn.run(create_app(emulator), host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
