"""agent.mapperclient: the one mapping of HTTP outcomes to errors (post_json) and the GraphQL
client over it, through plain transports (callables Request → Response): the seam itself."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from agent.mapperclient import (
    GraphQLErrors,
    HttpMapperClient,
    MapperRejected,
    MapperUnavailable,
    Request,
    Response,
    TransportError,
    TransportTimeout,
    post_json,
)

URL = "http://mapper.test/query"


class Answering:
    """A transport answering every request with ``response`` (or raising ``error``); keeps the requests."""

    def __init__(self, response: Response | None = None, error: Exception | None = None) -> None:
        self.response, self.error = response, error
        self.requests: list[Request] = []

    def __call__(self, request: Request) -> Response:
        self.requests.append(request)
        if self.error is not None:
            raise self.error
        assert self.response is not None
        return self.response


def _post(transport: Callable[[Request], Response], **kw: object) -> object:
    return post_json(
        transport,
        URL,
        b'{"a":1}',
        {"Content-Type": "application/json"},
        3.5,
        unavailable=MapperUnavailable,
        rejected=MapperRejected,
        **kw,  # type: ignore[arg-type]
    )


def test_post_json_sends_one_post_and_returns_the_json() -> None:
    transport = Answering(Response(200, {"content-type": "application/json"}, b'{"ok": [1, 2]}'))
    assert _post(transport) == {"ok": [1, 2]}
    assert transport.requests == [Request("POST", URL, {"Content-Type": "application/json"}, b'{"a":1}', 3.5)]


@pytest.mark.parametrize(
    ("answer", "error", "message"),
    [
        (Response(503), MapperUnavailable, "HTTP 503"),
        (Response(429), MapperUnavailable, "HTTP 429"),
        (Response(401, body=b'{"errors":[{"message":"unauthorized"}]}'), MapperRejected, "HTTP 401: {"),
        (Response(302, {"location": "http://elsewhere/"}), MapperRejected, "HTTP 302"),
        (
            Response(200, body=b"<html>proxy</html>"),
            MapperUnavailable,
            "HTTP 200 with a body that is not JSON",
        ),
        (Response(200, body=b"\xff\xfe"), MapperUnavailable, "not JSON"),
    ],
)
def test_post_json_maps_statuses_and_bodies(answer: Response, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message.replace("{", r"\{")):
        _post(Answering(answer))


def test_post_json_maps_no_answer_to_unavailable() -> None:
    with pytest.raises(MapperUnavailable, match=r"no answer within 3\.5s"):
        _post(Answering(error=TransportTimeout("no answer within 3.5s")))
    with pytest.raises(MapperUnavailable, match="ConnectionError: refused"):
        _post(Answering(error=TransportError("ConnectionError: refused")))


def test_post_json_ok_statuses_and_not_json_message_are_the_callers() -> None:
    with pytest.raises(MapperRejected, match="HTTP 201"):
        _post(Answering(Response(201, body=b"{}")), ok=(200,))
    with pytest.raises(MapperUnavailable, match="not the reply"):
        _post(Answering(Response(200, body=b"nope")), not_json="not the reply")


def _graphql(payload: object, status: int = 200) -> Answering:
    return Answering(Response(status, {"content-type": "application/json"}, json.dumps(payload).encode()))


def test_client_sends_the_document_and_token_and_returns_data() -> None:
    transport = _graphql({"data": {"health": True}})
    client = HttpMapperClient(URL, "t0ken", 2.0, transport=transport)
    assert client.execute("{ health }", {"x": 1}) == {"health": True}
    (request,) = transport.requests
    assert (request.method, request.url, request.timeout) == ("POST", URL, 2.0)
    assert request.headers == {"Content-Type": "application/json", "Authorization": "Bearer t0ken"}
    assert json.loads(request.body) == {"query": "{ health }", "variables": {"x": 1}}
    client.close()  # the transport passed in is not the client's to close: nothing happens to it


def test_client_without_a_token_sends_no_authorization() -> None:
    transport = _graphql({"data": {}})
    HttpMapperClient(URL, "", 2.0, transport=transport).execute("{ health }", {})
    assert "Authorization" not in transport.requests[0].headers


@pytest.mark.parametrize(
    ("payload", "error", "message"),
    [
        ({"errors": [{"message": "mapper busy, retry"}], "data": None}, GraphQLErrors, "mapper busy"),
        ({"errors": ["plain"]}, GraphQLErrors, "plain"),
        ([1, 2], MapperUnavailable, "not a JSON object"),
        ({"data": None}, MapperUnavailable, "no data"),
    ],
)
def test_client_maps_graphql_answers(payload: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        HttpMapperClient(URL, "t", 2.0, transport=_graphql(payload)).execute("{ health }", {})


def test_client_refuses_variables_that_are_not_json_without_sending() -> None:
    transport = _graphql({"data": {}})
    with pytest.raises(MapperUnavailable, match="InvalidJSONError"):
        HttpMapperClient(URL, "t", 2.0, transport=transport).execute("{ health }", {"x": float("nan")})
    assert transport.requests == []


def test_response_text_tolerates_bytes_that_are_not_utf8() -> None:
    assert Response(400, body=b"bad \xff").text == "bad \ufffd"
