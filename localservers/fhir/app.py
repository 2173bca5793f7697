"""The ASGI application: FHIR routes, the OAuth2 token endpoint, ``/_admin`` and the fault/log layer.

Handlers are ``async`` and call the store directly: SQLite work per request is milliseconds, and the
injected latency (``asyncio.sleep``) then overlaps across concurrent clients as it would on a real server.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from localservers.fhir.auth import (
    SATUSEHAT_BAD_CLIENT,
    SATUSEHAT_RATE_LIMIT,
    Auth,
    bearer_of,
    satusehat_grant,
    satusehat_refusal,
    token_hash,
)
from localservers.fhir.errors import FhirServerError, operation_outcome
from localservers.fhir.faults import Faults
from localservers.fhir.interactions import Interactions, Result
from localservers.fhir.store import Store, now_iso

FHIR_JSON = "application/fhir+json"
JSON_PATCH = "application/json-patch+json"
TRANSPORT_KEY = "localservers.transport"
MAX_LOG = 200_000


@dataclass
class ServerState:
    store: Store
    auth: Auth
    faults: Faults
    interactions: Interactions
    base_path: str = ""
    log: list[dict[str, Any]] = field(default_factory=list)
    seq: int = 0

    def record(self, entry: dict[str, Any]) -> None:
        self.seq += 1
        entry["seq"] = self.seq
        self.log.append(entry)
        if len(self.log) > MAX_LOG:
            del self.log[: len(self.log) - MAX_LOG]

    def stats(self) -> dict[str, Any]:
        by_interaction: Counter[str] = Counter()
        by_status: Counter[str] = Counter()
        by_token: Counter[str] = Counter()
        by_interaction_status: Counter[str] = Counter()
        faults: Counter[str] = Counter()
        entries: Counter[str] = Counter()
        for item in self.log:
            by_interaction[item["interaction"]] += 1
            by_status[str(item["status"])] += 1
            by_token[item["token"] or "none"] += 1
            by_interaction_status[f"{item['interaction']} {item['status']}"] += 1
            if item.get("fault"):
                faults[item["fault"]] += 1
            for method, count in (item.get("entries") or {}).items():
                entries[method] += count
        return {
            "total": len(self.log),
            "by_interaction": dict(by_interaction),
            "by_status": dict(by_status),
            "by_token": dict(by_token),
            "by_interaction_status": dict(by_interaction_status),
            "faults": dict(faults),
            "bundle_entries": dict(entries),
            "patients": self.store.count(),
            "tokens_issued": self.auth.issued_count,
            "token_refusals": dict(self.auth.refusals),
        }


def fhir_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    content = b"" if body is None else json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(content=content, status_code=status, headers=headers or {}, media_type=FHIR_JSON)


def outcome_response(status: int, diagnostics: str, code: str = "processing", headers: dict | None = None) -> Response:
    return fhir_response(status, operation_outcome(diagnostics, code), headers)


def _is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def classify(method: str, path: str, query: str, body: bytes, base_path: str) -> tuple[str, dict[str, int] | None]:
    """Interaction name for the request log, and per-method entry counts for Bundles."""
    rel = path[len(base_path) :] if base_path and path.startswith(base_path) else path
    parts = [part for part in rel.strip("/").split("/") if part]
    if parts == ["metadata"]:
        return "metadata", None
    if not parts:
        if method == "GET":
            return ("page" if "_getpages" in query else "system"), None
        try:
            bundle = json.loads(body or b"{}")
            kind = bundle.get("type") or "bundle"
            entries = Counter(str((e.get("request") or {}).get("method", "?")).upper() for e in bundle.get("entry", []))
            return str(kind), dict(entries)
        except (ValueError, AttributeError, TypeError):
            return "bundle", None
    if parts[0] != "Patient":
        return "other", None
    if len(parts) == 1:
        return ("create" if method == "POST" else "search" if method == "GET" else "other"), None
    if parts[1] == "_search":
        return "search", None
    if len(parts) == 2:
        return {"GET": "read", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method, "other"), None
    return ("history" if len(parts) == 3 else "vread"), None


class FaultLayer:
    """Outermost ASGI layer: latency, faults, bearer auth and the request log for every FHIR request."""

    def __init__(self, app: ASGIApp, state: ServerState, token_path: str) -> None:
        self.app = app
        self.state = state
        self.token_path = token_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_admin"):
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        body = await _read_body(receive)
        method, path = scope["method"], scope["path"]
        query = scope.get("query_string", b"").decode("latin-1")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        token = bearer_of(headers.get("authorization"))
        interaction, entries = classify(method, path, query, body, self.state.base_path)
        if path == self.token_path:
            interaction = "token"
        entry: dict[str, Any] = {
            "at": time.time(),
            "method": method,
            "path": path,
            "interaction": interaction,
            "token": token_hash(token),
            "entries": entries,
            "status": 0,
            "fault": None,
        }
        knobs = self.state.faults.knobs
        if knobs.latency_ms:
            await asyncio.sleep(knobs.latency_ms / 1000)
        spared = interaction in ("metadata", "token")
        fault = None if spared else self.state.faults.decide(query.encode() + b"\n" + unquote(query).encode() + body)
        response: Response | None = None
        if fault is not None:
            entry["fault"] = fault.kind
            if fault.kind == "drop":
                transport = scope.get(TRANSPORT_KEY)
                entry["status"] = "dropped"
                self.state.record(entry)
                if transport is not None:
                    transport.abort()
                    await asyncio.sleep(0)  # let the server notice the disconnect before we return
                    return
                # No transport handle (another HTTP implementation): start a response and break it off.
                await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]})
                raise ConnectionAbortedError("fault injection: dropped connection")
            extra = {}
            if fault.retry_after is not None:
                extra["Retry-After"] = _retry_after_text(fault.retry_after)
            if fault.kind == "outage":
                response = outcome_response(503, "HAPI-0000: Service temporarily unavailable", "transient", extra)
            else:
                response = outcome_response(429, "Rate limit exceeded, slow down", "throttled", extra)
        elif not spared and not self.state.auth.allows(token):
            response = outcome_response(
                401, "HAPI-0644: Missing or invalid bearer token", "login", {"WWW-Authenticate": 'Bearer realm="fhir"'}
            )
        elif not spared and knobs.forbidden:
            response = outcome_response(403, "HAPI-0334: Access denied by rule: Deny all", "forbidden")
        elif not spared and interaction in knobs.refuse:
            diagnostics = f"HAPI-1861: Failed to process the request: {knobs.quote}".rstrip(": ")
            response = outcome_response(knobs.refuse[interaction], diagnostics, "invalid")
        if response is not None:
            entry["status"] = response.status_code
            entry["ms"] = round((time.monotonic() - started) * 1000, 1)
            self.state.record(entry)
            await response(scope, _replay(b""), send)
            return

        async def logging_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
                entry["ms"] = round((time.monotonic() - started) * 1000, 1)
                self.state.record(entry)
            await send(message)

        await self.app(scope, _replay(body, receive), logging_send)


def _retry_after_text(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:.3f}"


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def _replay(body: bytes, upstream: Receive | None = None) -> Receive:
    """Hand the already-read body to the app once, then pass on the connection's own messages."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        if upstream is None:
            return {"type": "http.disconnect"}
        return await upstream()

    return receive


def capability_statement(state: ServerState, base: str) -> dict[str, Any]:
    """What the server says it takes: what its knobs allow, or everything when it hides its refusals."""
    knobs = state.faults.knobs
    claims = knobs.capability_hides_refusals
    patient_interactions = ["read", "vread", "create", "search-type", "history-instance"]
    patient_interactions += ["update"] if knobs.put_enabled or claims else []
    patient_interactions += ["patch"] if knobs.patch_enabled or claims else []
    system = ["batch", "transaction"] if knobs.batch_enabled or claims else []
    rest: dict[str, Any] = {
        "mode": "server",
        "resource": [
            {
                "type": "Patient",
                "versioning": "versioned",
                "readHistory": True,
                "updateCreate": True,
                "conditionalUpdate": False,
                "interaction": [{"code": code} for code in patient_interactions],
                "searchParam": [
                    {"name": "identifier", "type": "token"},
                    {"name": "_id", "type": "token"},
                ],
            }
        ],
        "interaction": [{"code": code} for code in system],
    }
    if state.auth.enabled:
        rest["security"] = {
            "service": [{"coding": [{"system": "http://hl7.org/fhir/restful-security-service", "code": "OAuth"}]}]
        }
    statement = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": now_iso(),
        "kind": "instance",
        "software": {"name": "phone-sync local FHIR server", "version": "1"},
        "implementation": {"description": "Local HAPI-like FHIR R4 server for tests", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [rest],
    }
    if knobs.patch_enabled or claims:
        statement["patchFormat"] = [JSON_PATCH]
    return statement


def _base(request: Request, state: ServerState) -> str:
    return str(request.base_url).rstrip("/") + state.base_path


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw or b"null")
    except ValueError:
        raise FhirServerError(400, "HAPI-1861: Failed to parse request body as JSON resource", "invalid") from None


def _answer(result: Result) -> Response:
    status, body, headers = result
    return fhir_response(status, body, headers)


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status, media_type="application/json", headers=headers)


async def _admin_update(request: Request, apply: Callable[[dict[str, Any]], Any]) -> Response:
    """Apply a JSON object of changes to an admin setting; a bad one is a 400, as from a FHIR server."""
    try:
        return _json(200, apply(json.loads(await request.body() or b"{}")))
    except (ValueError, TypeError) as exc:
        return outcome_response(400, str(exc), "invalid")


def _token_answer(auth: Auth, raw: bytes, query: Any, headers: Any) -> Response:
    """``POST <token path>``: client credentials, answered in the policy's style (see ``auth``)."""
    form = dict(parse_qsl(raw.decode(), keep_blank_values=True))
    client_id, secret = form.get("client_id"), form.get("client_secret")
    basic = headers.get("authorization", "")
    if basic.lower().startswith("basic "):
        try:
            client_id, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
        except ValueError:
            client_id = secret = None
    satusehat = auth.policy.style == "satusehat"
    grant_type = query.get("grant_type") if satusehat else form.get("grant_type")
    if grant_type != "client_credentials":
        if satusehat:  # assumed: the query parameter is required (Apigee's wording)
            return _json(400, satusehat_refusal("Required param : grant_type"))
        return _json(400, {"error": "unsupported_grant_type"})
    decision = auth.decide(client_id, secret)
    if decision.outcome == "invalid_client":
        return _json(401, satusehat_refusal(SATUSEHAT_BAD_CLIENT) if satusehat else {"error": "invalid_client"})
    if decision.outcome == "rate_limited":
        if satusehat:
            return _json(auth.policy.rate_limit_status, satusehat_refusal(SATUSEHAT_RATE_LIMIT))
        wait = str(max(1, math.ceil(decision.retry_after or 1)))
        body = {"error": "temporarily_unavailable", "error_description": "token rate limit for this client"}
        return _json(429, body, {"Retry-After": wait})
    assert decision.token is not None
    if satusehat:
        body = satusehat_grant(decision.token, client_id or "", auth.expires_in)
    else:
        body = {"access_token": decision.token, "token_type": "Bearer", "expires_in": auth.expires_in}
        if form.get("scope"):
            body["scope"] = form["scope"]
    return _json(200, body, {"Cache-Control": "no-store"})


def create_app(state: ServerState, token_path: str = "/oauth2/token") -> ASGIApp:  # noqa: S107
    """The FHIR server as an ASGI app wrapped in the fault/log layer."""
    api = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    base = state.base_path
    ix = state.interactions

    @api.exception_handler(FhirServerError)
    async def _fhir_error(_: Request, exc: FhirServerError) -> Response:
        return outcome_response(exc.status, exc.diagnostics, exc.code)

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> Response:
        return outcome_response(exc.status_code, f"HAPI-0302: {exc.detail}", "not-supported")

    @api.get(base + "/metadata")
    async def metadata(request: Request) -> Response:
        return fhir_response(200, capability_statement(state, _base(request, state)))

    @api.post(token_path)
    async def token(request: Request) -> Response:
        return _token_answer(state.auth, await request.body(), request.query_params, request.headers)

    @api.get(base + "/Patient")
    async def search_get(request: Request) -> Response:
        return _answer(ix.search(request.query_params.multi_items(), _base(request, state)))

    @api.post(base + "/Patient/_search")
    async def search_post(request: Request) -> Response:
        if not state.faults.knobs.search_post_enabled:  # a gateway that passes GET searches only
            refusal = "Method POST is not allowed for Patient/_search; search with GET"
            return outcome_response(405, refusal, "not-supported", {"Allow": "GET"})
        form = parse_qsl((await request.body()).decode(), keep_blank_values=True)
        return _answer(ix.search([*request.query_params.multi_items(), *form], _base(request, state)))

    @api.post(base + "/Patient")
    async def create(request: Request) -> Response:
        return _answer(ix.create(await _json_body(request), _base(request, state)))

    @api.get(base + "/Patient/{patient_id}")
    async def read(patient_id: str) -> Response:
        return _answer(ix.read(patient_id))

    @api.put(base + "/Patient/{patient_id}")
    async def update(patient_id: str, request: Request) -> Response:
        body = await _json_body(request)
        status, stored, headers = ix.update(patient_id, body, request.headers.get("if-match"), _base(request, state))
        minimal = "return=minimal" in request.headers.get("prefer", "")
        return fhir_response(status, None if minimal else stored, headers)

    @api.patch(base + "/Patient/{patient_id}")
    async def patch(patient_id: str, request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip() != JSON_PATCH:
            raise FhirServerError(415, f"HAPI-1270: PATCH takes {JSON_PATCH} only", "not-supported")
        operations = await _json_body(request)
        if_match = request.headers.get("if-match")
        status, stored, headers = ix.patch(patient_id, operations, if_match, _base(request, state))
        minimal = "return=minimal" in request.headers.get("prefer", "")
        return fhir_response(status, None if minimal else stored, headers)

    @api.put(base + "/Patient")
    async def conditional_update() -> Response:
        raise FhirServerError(400, "HAPI-0929: Conditional update is not supported by this server", "not-supported")

    @api.get(base + "/Patient/{patient_id}/_history")
    async def history(patient_id: str, request: Request) -> Response:
        return _answer(ix.history(patient_id, _base(request, state)))

    @api.get(base + "/Patient/{patient_id}/_history/{version}")
    async def vread(patient_id: str, version: str) -> Response:
        return _answer(ix.vread(patient_id, version))

    @api.post(base or "/")
    async def system_bundle(request: Request) -> Response:
        minimal = "return=minimal" in request.headers.get("prefer", "")
        return _answer(ix.bundle(await _json_body(request), _base(request, state), minimal))

    @api.get(base or "/")
    async def system_get(request: Request) -> Response:
        params = request.query_params
        if "_getpages" not in params:
            raise FhirServerError(400, "HAPI-0418: Missing _getpages parameter", "invalid")
        return _answer(
            ix.page(
                params["_getpages"],
                params.get("_getpagesoffset", "0"),
                params.get("_count", str(ix.default_page_size)),
                _base(request, state),
            )
        )

    _admin_routes(api, state)
    return FaultLayer(api, state, token_path)


def _admin_routes(api: FastAPI, state: ServerState) -> None:
    def loopback_only(request: Request) -> None:
        if not _is_loopback(request.client.host if request.client else None):
            raise FhirServerError(403, "admin endpoints answer on loopback only", "forbidden")

    @api.get("/_admin/stats")
    async def stats(request: Request) -> dict[str, Any]:
        loopback_only(request)
        return state.stats()

    @api.post("/_admin/reset-stats")
    async def reset_stats(request: Request) -> dict[str, Any]:
        loopback_only(request)
        state.log.clear()
        return state.stats()

    @api.get("/_admin/requests")
    async def requests_log(request: Request, since: int = 0) -> list[dict[str, Any]]:
        loopback_only(request)
        return [item for item in state.log if item["seq"] > since]

    @api.get("/_admin/faults")
    async def get_faults(request: Request) -> dict[str, Any]:
        loopback_only(request)
        return state.faults.snapshot()

    @api.post("/_admin/faults")
    async def set_faults(request: Request) -> Response:
        loopback_only(request)
        return await _admin_update(request, state.faults.update)

    @api.delete("/_admin/faults")
    async def reset_faults(request: Request) -> dict[str, Any]:
        loopback_only(request)
        return state.faults.reset()

    @api.get("/_admin/token-policy")
    async def get_token_policy(request: Request) -> dict[str, Any]:
        loopback_only(request)
        return state.auth.policy_snapshot()

    @api.post("/_admin/token-policy")
    async def set_token_policy(request: Request) -> Response:
        loopback_only(request)
        return await _admin_update(request, state.auth.set_policy)

    @api.post("/_admin/revoke-tokens")
    async def revoke(request: Request) -> dict[str, int]:
        loopback_only(request)
        return {"revoked": state.auth.revoke_all()}
