"""``/_emulator/`` control routes: seed spreadsheets, read cells back typed, counts, quotas, operator edits.

Tests assert on what these return, never on what the client under test believes it wrote.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from . import cells, store
from .a1 import GridRange, RangeError, parse_range
from .responses import error_response as _error
from .responses import json_response as _json
from .store import ApiError, Spreadsheet, bad_request

if TYPE_CHECKING:
    from .app import Emulator


def seed_sheet(book: Spreadsheet, spec: dict[str, Any]) -> store.Sheet:
    """One worksheet from ``{"title", "rows" | "csv", "value_input", "scientific", "text_columns", ...}``."""
    rows = spec.get("rows")
    if rows is None:
        rows = store.parse_csv(spec.get("csv", ""))
    return store.sheet_from_rows(
        book,
        spec["title"],
        rows,
        spec.get("value_input", "USER_ENTERED"),
        spec.get("scientific", ()),
        spec.get("text_columns", ()),
        spec.get("row_count"),
        spec.get("col_count"),
    )


def add_control_routes(app: FastAPI, emulator: Emulator) -> None:
    async def body_of(request: Request) -> Any:
        raw = await request.body()
        return json.loads(raw) if raw else {}

    @app.get("/_emulator/health")
    async def health() -> Response:
        return _json({"status": "ok", "spreadsheets": len(emulator.books)})

    @app.post("/_emulator/spreadsheets")
    async def create_spreadsheet(request: Request) -> Response:
        """Create or replace a spreadsheet: ``{"spreadsheet_id", "title", "sheets": [...]}``."""
        spec = await body_of(request)
        try:
            sid = spec["spreadsheet_id"]
            book = Spreadsheet(sid, spec.get("title", sid), shared_with=spec.get("shared_with"))
            for sheet_spec in spec.get("sheets") or [{"title": "Sheet1", "rows": []}]:
                seed_sheet(book, sheet_spec)
        except ApiError as exc:
            return _error(exc)
        except (KeyError, TypeError) as exc:
            return _error(bad_request(f"bad spreadsheet spec: {exc}"))
        emulator.books[sid] = book
        return _json(book.metadata(str(request.base_url).rstrip("/")))

    @app.post("/_emulator/spreadsheets/{sid}/sheets")
    async def add_worksheet(sid: str, request: Request) -> Response:
        """Add one worksheet to a spreadsheet: the same spec as one of ``sheets`` at creation."""
        spec = await body_of(request)
        try:
            sheet = seed_sheet(emulator.book(sid), spec)
        except ApiError as exc:
            return _error(exc)
        return _json({"spreadsheet_id": sid, "properties": sheet.properties()})

    @app.put("/_emulator/spreadsheets/{sid}/sharing")
    async def share(sid: str, request: Request) -> Response:
        """``{"users": [...]}`` may open the spreadsheet (``null``: anyone), as its owner would share it."""
        spec = await body_of(request)
        try:
            emulator.book(sid).shared_with = spec.get("users")
        except ApiError as exc:
            return _error(exc)
        return _json({"spreadsheet_id": sid, "shared_with": spec.get("users")})

    @app.delete("/_emulator/spreadsheets/{sid}")
    async def delete_spreadsheet(sid: str) -> Response:
        emulator.books.pop(sid, None)
        return _json({})

    @app.get("/_emulator/spreadsheets/{sid}/sheets/{title}/cells")
    async def read_cells(sid: str, title: str, request: Request) -> Response:
        """Cells of a worksheet: ``view=typed`` (default), ``formatted`` or ``unformatted``; ``range=A1:C9``."""
        try:
            sheet = _sheet(emulator, sid, title)
            grid = _grid(request.query_params.get("range"))
        except ApiError as exc:
            return _error(exc)
        view = request.query_params.get("view", "typed")
        row2 = min(grid.row2 or len(sheet.rows), len(sheet.rows))
        col1, col2 = grid.col1 or 1, grid.col2
        out = []
        for row in range(grid.row1 or 1, row2 + 1):
            line = sheet.rows[row - 1][col1 - 1 : col2]
            if view == "typed":
                out.append([cells.typed(c) for c in line])
            elif view == "formatted":
                out.append([cells.formatted(c) for c in line])
            else:
                out.append([cells.render(c, "UNFORMATTED_VALUE", "SERIAL_NUMBER") for c in line])
        return _json({"title": sheet.title, "row_count": sheet.row_count, "col_count": sheet.col_count, "rows": out})

    @app.post("/_emulator/spreadsheets/{sid}/sheets/{title}/edits")
    async def operator_edits(sid: str, title: str, request: Request) -> Response:
        """An operator moves, inserts, deletes, sorts or types into rows: one edit or a list of edits."""
        edits = await body_of(request)
        try:
            sheet = _sheet(emulator, sid, title)
            for edit in edits if isinstance(edits, list) else [edits]:
                store.operator_edit(sheet, edit)
        except ApiError as exc:
            return _error(exc)
        except (KeyError, TypeError, ValueError) as exc:
            return _error(bad_request(f"bad edit: {exc}"))
        return _json({"row_count": sheet.row_count, "rows_with_data": len(sheet.rows)})

    @app.get("/_emulator/requests")
    async def request_counts() -> Response:
        return _json(emulator.quotas.stats.as_dict())

    @app.post("/_emulator/requests/reset")
    async def reset_counts() -> Response:
        emulator.quotas.reset_counts()
        return _json({})

    @app.get("/_emulator/config")
    async def get_config() -> Response:
        return _json(emulator.settings.as_dict())

    @app.put("/_emulator/config")
    async def set_config(request: Request) -> Response:
        """Quotas per user/project, window length, latency, anonymous access — at runtime."""
        try:
            emulator.settings.update(await body_of(request))
        except (ValueError, TypeError) as exc:
            return _error(bad_request(str(exc)))
        return _json(emulator.settings.as_dict())

    @app.post("/_emulator/tokens")
    async def issue_token(request: Request) -> Response:
        """A bearer token for ``{"user", "scopes"}`` without the JWT dance (for curl and the demo)."""
        spec = await body_of(request)
        scopes = spec.get("scopes") or ["https://www.googleapis.com/auth/spreadsheets"]
        return _json(emulator.tokens.issue(spec.get("user", "demo@example.iam.gserviceaccount.com"), set(scopes)))

    @app.post("/_emulator/save")
    async def save() -> Response:
        emulator.save()
        return _json({"saved": str(emulator.state_path) if emulator.state_path else None})

    @app.post("/_emulator/reset")
    async def reset() -> Response:
        emulator.books.clear()
        emulator.quotas.reset_counts()
        return _json({})


def _sheet(emulator: Emulator, sid: str, title: str) -> store.Sheet:
    sheet = emulator.book(sid).sheet(title)
    if sheet is None:
        raise ApiError(404, f"no worksheet {title!r} in spreadsheet {sid!r}", "NOT_FOUND")
    return sheet


def _grid(text: str | None) -> GridRange:
    if not text:
        return GridRange(None, None, None, None, None)
    try:
        return parse_range(text)
    except RangeError:
        raise bad_request(f"Unable to parse range: {text}") from None
