"""``GET /``: a placeholder page until the web console's static files land."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]  # powertools leaves __init__ bare

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>network-mapper cloud</title></head>
<body><h1>network-mapper cloud</h1>
<p>The web console lands here later. The API is described at <a href="/openapi.json">/openapi.json</a>.</p>
</body></html>
"""


@router.get("/", include_in_schema=False)
def console() -> Response[str]:
    return Response(200, "text/html; charset=utf-8", PAGE)
