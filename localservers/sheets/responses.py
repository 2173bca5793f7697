"""JSON responses shaped like Google's, shared by the API and control routes."""

from __future__ import annotations

import json

from fastapi.responses import Response

from .store import ApiError


def json_response(data: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(data, separators=(",", ":")), status, headers, media_type="application/json")


def error_response(exc: ApiError) -> Response:
    """``{"error": {"code", "message", "status"}}``, as gspread's APIError expects."""
    body = {"error": {"code": exc.code, "message": exc.message, "status": exc.status}}
    return json_response(body, exc.code, exc.headers)
