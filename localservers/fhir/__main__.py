"""``python -m localservers.fhir --host 127.0.0.1 --port N --db FILE [knobs]``: run the local FHIR server."""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from pathlib import Path

import uvicorn

from localservers.fhir.app import TRANSPORT_KEY, ServerState, create_app
from localservers.fhir.auth import Auth, TokenPolicy
from localservers.fhir.faults import GATEWAY, OR_LISTS, Faults, Knobs
from localservers.fhir.interactions import Interactions
from localservers.fhir.store import Store

try:  # uvicorn's default HTTP implementation when httptools is installed
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _BaseProtocol
except ImportError:  # pragma: no cover
    _BaseProtocol = None


def _protocol() -> type | str:
    """An HTTP protocol that puts its transport in the ASGI scope, so a fault can drop the connection."""
    if _BaseProtocol is None:
        return "auto"

    class DroppableProtocol(_BaseProtocol):  # type: ignore[misc, valid-type]
        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.scope[TRANSPORT_KEY] = self.transport  # type: ignore[literal-required]

    return DroppableProtocol


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m localservers.fhir", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--db", type=Path, default=Path("var/fhir.sqlite"), help="SQLite file (kept across restarts)")
    parser.add_argument("--base-path", default="", help="FHIR base path, e.g. /fhir (default: server root)")
    parser.add_argument("--token", action="append", default=[], help="accepted static bearer token (repeatable)")
    parser.add_argument("--token-file", type=Path, help="file with one accepted bearer token per line")
    parser.add_argument(
        "--oauth-client", action="append", default=[], metavar="ID:SECRET", help="OAuth2 client credentials"
    )
    parser.add_argument("--token-expires-in", type=int, default=3600, help="lifetime of issued tokens (s)")
    parser.add_argument("--token-path", default="/oauth2/token", help="SATUSEHAT: /oauth2/v1/accesstoken")
    parser.add_argument(
        "--token-style",
        choices=("oauth2", "satusehat"),
        default="oauth2",
        help="token endpoint answers: RFC 6749, or SATUSEHAT's (grant_type in the query, string fields)",
    )
    parser.add_argument("--token-grant-limit", type=int, default=0, help="tokens per client id per window (0: off)")
    parser.add_argument("--token-grant-window", type=float, default=60.0, help="grant limit window (s)")
    parser.add_argument(
        "--token-rate-limit-status", type=int, default=429, help="status of SATUSEHAT-style rate-limit answers"
    )
    parser.add_argument("--page-size", type=int, default=20, help="default search page size (HAPI: 20)")
    parser.add_argument("--max-page-size", type=int, default=500)
    parser.add_argument("--conflict-status", type=int, choices=(409, 412), default=409)
    parser.add_argument("--no-batch", action="store_true", help="refuse batch/transaction Bundles")
    parser.add_argument("--no-search-post", action="store_true", help="refuse POST Patient/_search (405)")
    parser.add_argument(
        "--or-lists", choices=OR_LISTS, default="understood",
        help="OR lists in a search parameter: understood, refused (400 not-supported) or misread silently",
    )
    parser.add_argument("--no-put", action="store_true", help="refuse PUT, in batch Bundles too (405)")
    parser.add_argument("--no-patch", action="store_true", help="refuse PATCH (405)")
    parser.add_argument("--page-size-cap", type=int, default=0, help="no page holds more entries (0: off)")
    parser.add_argument(
        "--capability-hides-refusals", action="store_true", help="the CapabilityStatement claims every interaction"
    )
    gateway = ", ".join(f"{knob}={value}" for knob, value in GATEWAY.items())
    parser.add_argument("--gateway", action="store_true", help=f"a gateway refusing all it can: {gateway}")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--throttle-every", type=int, default=0, help="answer every Nth request with 429")
    parser.add_argument("--throttle-rps", type=float, default=0.0, help="429 above this many requests per second")
    parser.add_argument("--throttle-for", type=float, default=0.0, help="429 everything for the first S seconds")
    parser.add_argument("--retry-after", type=float, default=1.0, help="Retry-After seconds sent with 429")
    parser.add_argument("--outage-for", type=float, default=0.0, help="503 everything for the first S seconds")
    parser.add_argument("--drop-every", type=int, default=0, help="drop every Nth connection without answering")
    parser.add_argument("--log-level", default="warning")
    return parser.parse_args(argv)


def build_state(args: argparse.Namespace) -> ServerState:
    tokens = set(args.token)
    if args.token_file:
        tokens |= {line.strip() for line in args.token_file.read_text().splitlines() if line.strip()}
    clients = dict(item.split(":", 1) for item in args.oauth_client)
    knobs = Knobs(
        latency_ms=args.latency_ms,
        throttle_every=args.throttle_every,
        throttle_rps=args.throttle_rps,
        throttle_for_seconds=args.throttle_for,
        retry_after=args.retry_after,
        outage_for_seconds=args.outage_for,
        drop_every=args.drop_every,
        conflict_status=args.conflict_status,
        batch_enabled=not args.no_batch,
        search_post_enabled=not args.no_search_post,
        or_lists=args.or_lists,
        put_enabled=not args.no_put,
        patch_enabled=not args.no_patch,
        page_size_cap=args.page_size_cap,
        capability_hides_refusals=args.capability_hides_refusals,
    )
    if args.gateway:
        knobs = replace(knobs, **GATEWAY)
    args.db.parent.mkdir(parents=True, exist_ok=True)
    store = Store(args.db)
    faults = Faults(knobs)
    return ServerState(
        store=store,
        auth=Auth(
            static_tokens=tokens,
            clients=clients,
            expires_in=args.token_expires_in,
            policy=TokenPolicy(
                style=args.token_style,
                grant_limit=args.token_grant_limit,
                window_seconds=args.token_grant_window,
                rate_limit_status=args.token_rate_limit_status,
            ),
        ),
        faults=faults,
        interactions=Interactions(store, faults, args.page_size, args.max_page_size),
        base_path="/" + args.base_path.strip("/") if args.base_path.strip("/") else "",
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper())
    state = build_state(args)
    config = uvicorn.Config(
        create_app(state, args.token_path),
        host=args.host,
        port=args.port,
        http=_protocol(),
        log_level=args.log_level,
        access_log=False,
        lifespan="off",
    )
    try:
        uvicorn.Server(config).run()
    finally:
        state.store.close()


if __name__ == "__main__":
    main()
