"""The HTTP surface: Sheets API v4 routes gspread calls, the token endpoint, and ``/_emulator/`` controls.

API paths are dispatched from the raw (still percent-encoded) path, because a range such as
``Sheet1!A1:B2`` and a custom method such as ``:append`` share one path segment.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

from fastapi import FastAPI, Request
from fastapi.responses import Response

from . import store
from .auth import OAuthError, TokenStore
from .control import add_control_routes
from .quota import Quotas, Settings
from .responses import error_response as _error
from .responses import json_response as _json
from .store import ApiError, Spreadsheet, bad_request

API_PREFIX = "/v4/spreadsheets/"
RENDER_OPTIONS = ("FORMATTED_VALUE", "UNFORMATTED_VALUE", "FORMULA")


class Emulator:
    """All state of one emulator process: spreadsheets, tokens, quotas and counters."""

    def __init__(self, settings: Settings | None = None, state_path: Path | None = None) -> None:
        self.settings = settings or Settings()
        self.quotas = Quotas(self.settings)
        self.tokens = TokenStore()
        self.books: dict[str, Spreadsheet] = {}
        self.state_path = state_path
        if state_path and state_path.exists():
            self.books = store.load_state(state_path)

    def book(self, spreadsheet_id: str) -> Spreadsheet:
        book = self.books.get(spreadsheet_id)
        if book is None:
            raise ApiError(404, "Requested entity was not found.", "NOT_FOUND")
        return book

    def check_access(self, spreadsheet_id: str, user: str) -> None:
        """Google answers 403 to a caller the spreadsheet is not shared with (404 when it does not exist)."""
        book = self.book(spreadsheet_id)
        if book.shared_with is not None and user not in book.shared_with:
            raise ApiError(403, "The caller does not have permission", "PERMISSION_DENIED")

    def save(self) -> None:
        if self.state_path:
            store.dump_state(self.books, self.state_path)

    # --- API methods ---------------------------------------------------------------------

    def spreadsheets_get(self, sid: str, base_url: str, params: Any) -> object:
        return self.book(sid).metadata(base_url)

    def values_get(self, sid: str, range_text: str, params: Any) -> object:
        sheet, grid = self.book(sid).resolve(range_text)
        label, values = store.read_values(sheet, grid, *_render(params), params.get("majorDimension", "ROWS"))
        out: dict[str, object] = {"range": label, "majorDimension": params.get("majorDimension", "ROWS")}
        if values:
            out["values"] = values
        return out

    def values_batch_get(self, sid: str, params: Any) -> object:
        book = self.book(sid)
        ranges = params.getlist("ranges")
        if not ranges:
            raise bad_request("At least one range must be specified.")
        major = params.get("majorDimension", "ROWS")
        value_ranges = []
        for range_text in ranges:
            sheet, grid = book.resolve(range_text)
            label, values = store.read_values(sheet, grid, *_render(params), major)
            value_ranges.append({"range": label, "majorDimension": major, **({"values": values} if values else {})})
        return {"spreadsheetId": sid, "valueRanges": value_ranges}

    def values_update(self, sid: str, range_text: str, params: Any, body: dict[str, Any]) -> object:
        sheet, grid = self.book(sid).resolve(range_text)
        option = _input_option(params.get("valueInputOption"))
        result = store.write_values(
            sheet, grid, body.get("values") or [], option, body.get("majorDimension", "ROWS"), range_text
        )
        return {"spreadsheetId": sid, **result}

    def values_batch_update(self, sid: str, body: dict[str, Any]) -> object:
        book = self.book(sid)
        option = _input_option(body.get("valueInputOption"))
        data = body.get("data") or []
        targets = []
        for item in data:  # validate everything first: a batch is applied all or nothing
            sheet, grid = book.resolve(str(item.get("range", "")))
            args = (sheet, grid, item.get("values") or [], option, item.get("majorDimension", "ROWS"), item["range"])
            store.write_values(*args, dry_run=True)
            targets.append(args)
        responses = [{"spreadsheetId": sid, **store.write_values(*args)} for args in targets]
        return {
            "spreadsheetId": sid,
            "totalUpdatedRows": sum(int(r.get("updatedRows", 0)) for r in responses),
            "totalUpdatedColumns": sum(int(r.get("updatedColumns", 0)) for r in responses),
            "totalUpdatedCells": sum(int(r.get("updatedCells", 0)) for r in responses),
            "totalUpdatedSheets": len({r["updatedRange"].rsplit("!", 1)[0] for r in responses}),
            "responses": responses,
        }

    def values_append(self, sid: str, range_text: str, params: Any, body: dict[str, Any]) -> object:
        sheet, grid = self.book(sid).resolve(range_text)
        option = _input_option(params.get("valueInputOption"))
        insert = params.get("insertDataOption", "OVERWRITE") == "INSERT_ROWS"
        return {"spreadsheetId": sid, **store.append_values(sheet, grid, body.get("values") or [], option, insert)}

    def values_clear(self, sid: str, range_text: str) -> object:
        sheet, grid = self.book(sid).resolve(range_text)
        row2 = min(grid.row2 or sheet.row_count, len(sheet.rows))
        col2 = grid.col2 or sheet.col_count
        for row in range(grid.row1 or 1, row2 + 1):
            for col in range(grid.col1 or 1, col2 + 1):
                sheet.set_cell(row, col, None)
        return {"spreadsheetId": sid, "clearedRange": range_text}

    def batch_update(self, sid: str, body: dict[str, Any]) -> object:
        book = self.book(sid)
        replies = [self._sheet_request(book, request) for request in body.get("requests") or []]
        return {"spreadsheetId": sid, "replies": replies}

    def _sheet_request(self, book: Spreadsheet, request: dict[str, Any]) -> dict[str, object]:
        if "addSheet" in request:
            props = request["addSheet"].get("properties", {})
            grid = props.get("gridProperties", {})
            sheet = book.add_sheet(
                props.get("title") or f"Sheet{len(book.sheets) + 1}",
                int(grid.get("rowCount", store.DEFAULT_ROWS)),
                int(grid.get("columnCount", store.DEFAULT_COLS)),
            )
            return {"addSheet": {"properties": sheet.properties()}}
        if "updateSheetProperties" in request:
            props = request["updateSheetProperties"].get("properties", {})
            sheet = _sheet_by_id(book, props.get("sheetId", 0))
            grid = props.get("gridProperties", {})
            if "title" in props:
                sheet.title = props["title"]
            sheet.row_count = int(grid.get("rowCount", sheet.row_count))
            sheet.col_count = int(grid.get("columnCount", sheet.col_count))
            del sheet.rows[sheet.row_count :]
            return {}
        if "appendDimension" in request:
            spec = request["appendDimension"]
            sheet = _sheet_by_id(book, spec.get("sheetId", 0))
            if spec.get("dimension") == "COLUMNS":
                sheet.col_count += int(spec.get("length", 0))
            else:
                sheet.row_count += int(spec.get("length", 0))
            return {}
        raise bad_request(f"The emulator does not implement this request: {sorted(request)}")


def _sheet_by_id(book: Spreadsheet, sheet_id: int) -> store.Sheet:
    for sheet in book.sheets:
        if sheet.sheet_id == int(sheet_id):
            return sheet
    raise bad_request(f"No grid with id: {sheet_id}")


def _render(params: Any) -> tuple[str, str]:
    option = params.get("valueRenderOption", "FORMATTED_VALUE")
    if option not in RENDER_OPTIONS:
        raise bad_request(f"Invalid valueRenderOption: {option}")
    return option, params.get("dateTimeRenderOption", "SERIAL_NUMBER")


def _input_option(option: str | None) -> str:
    if not option:
        raise bad_request("'valueInputOption' is required but not specified")
    if option not in ("RAW", "USER_ENTERED"):
        raise bad_request(f"Invalid value at 'value_input_option' ({option})")
    return option


def _route(method: str, raw_rest: str) -> tuple[str, str, str | None]:
    """(api method name, spreadsheet id, range) from the encoded path after ``/v4/spreadsheets/``."""
    parts = raw_rest.split("/")
    sid_part = unquote(parts[0])
    if len(parts) == 1:
        if sid_part.endswith(":batchUpdate") and method == "POST":
            return "spreadsheets.batchUpdate", sid_part.removesuffix(":batchUpdate"), None
        if method == "GET":
            return "spreadsheets.get", sid_part, None
    elif len(parts) == 2 and parts[1].startswith("values:"):
        custom = parts[1].removeprefix("values:")
        name = {("GET", "batchGet"), ("POST", "batchUpdate"), ("POST", "batchClear")}
        if (method, custom) in name:
            return f"values.{custom}", sid_part, None
    elif len(parts) >= 3 and parts[1] == "values":
        encoded = "/".join(parts[2:])
        head, sep, tail = encoded.rpartition(":")
        if sep and tail in ("append", "clear") and method == "POST":
            return f"values.{tail}", sid_part, unquote(head)
        if method in ("GET", "PUT"):
            return ("values.get" if method == "GET" else "values.update"), sid_part, unquote(encoded)
    raise ApiError(404, f"Method not found: {method} {API_PREFIX}{raw_rest}", "NOT_FOUND")


def create_app(emulator: Emulator) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        emulator.save()  # with --state, what tests or the demo wrote survives a restart

    app = FastAPI(
        title="Sheets API v4 emulator",
        docs_url="/_emulator/docs",
        openapi_url="/_emulator/openapi.json",
        lifespan=lifespan,
    )
    app.state.emulator = emulator

    @app.api_route("/v4/spreadsheets/{rest:path}", methods=["GET", "POST", "PUT"], include_in_schema=False)
    async def sheets_api(request: Request, rest: str) -> Response:
        raw_path = request.scope.get("raw_path", b"").decode("latin-1").split("?", 1)[0]
        raw_rest = raw_path[raw_path.find(API_PREFIX) + len(API_PREFIX) :]
        body_bytes = await request.body()
        try:
            name, sid, range_text = _route(request.method, raw_rest)
            kind = "read" if request.method == "GET" else "write"
            user = emulator.tokens.identify(
                request.headers.get("authorization"), emulator.settings.allow_anonymous, kind
            )
            if emulator.settings.latency_ms:
                await asyncio.sleep(emulator.settings.latency_ms / 1000)
            emulator.quotas.admit(user, kind, name, len(body_bytes))
            emulator.check_access(sid, user)
            if len(body_bytes) > emulator.settings.max_request_bytes:
                raise bad_request(
                    f"Request payload size exceeds the limit: {emulator.settings.max_request_bytes} bytes."
                )
            body = json.loads(body_bytes) if body_bytes else {}
            params = request.query_params
            result = _dispatch(emulator, name, sid, range_text, params, body, str(request.base_url).rstrip("/"))
        except ApiError as exc:
            emulator.quotas.stats.statuses[exc.code] += 1
            return _error(exc)
        except json.JSONDecodeError:
            emulator.quotas.stats.statuses[400] += 1
            return _error(bad_request("Invalid JSON payload received."))
        emulator.quotas.stats.statuses[200] += 1
        return _json(result)

    @app.post("/token", include_in_schema=False)
    async def token(request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        try:
            return _json(emulator.tokens.grant_jwt_bearer(form))
        except OAuthError as exc:
            return _json({"error": exc.error, "error_description": exc.description}, 400)

    add_control_routes(app, emulator)
    return app


def _dispatch(
    emulator: Emulator, name: str, sid: str, range_text: str | None, params: Any, body: dict[str, Any], base: str
) -> object:
    if name == "spreadsheets.get":
        return emulator.spreadsheets_get(sid, base, params)
    if name == "spreadsheets.batchUpdate":
        return emulator.batch_update(sid, body)
    if name == "values.batchGet":
        return emulator.values_batch_get(sid, params)
    if name == "values.batchUpdate":
        return emulator.values_batch_update(sid, body)
    if name == "values.batchClear":
        for range_text_item in body.get("ranges") or []:
            emulator.values_clear(sid, range_text_item)
        return {"spreadsheetId": sid, "clearedRanges": body.get("ranges") or []}
    assert range_text is not None
    if name == "values.get":
        return emulator.values_get(sid, range_text, params)
    if name == "values.update":
        return emulator.values_update(sid, range_text, params, body)
    if name == "values.append":
        return emulator.values_append(sid, range_text, params, body)
    return emulator.values_clear(sid, range_text)
