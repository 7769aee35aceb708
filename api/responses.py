"""A JSON response serialised by orjson from rows already shaped like the response schema
(the route keeps `response_model` for the OpenAPI document): for the large, hot read paths."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import Response


def json_response(content: Any) -> Response:
    return Response(orjson.dumps(content), media_type="application/json")
