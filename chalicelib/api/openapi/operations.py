"""Building blocks of an OpenAPI operation, shared by every part of the document: a
JSON response, a parameter, and an operation with the error answers it can give."""

from __future__ import annotations

from typing import Any

from chalicelib.api.openapi.schemas import Schema, ref

_ERROR_TEXT = {
    400: "Invalid JSON, or a field failed validation",
    401: "Missing, malformed, expired or forged token",
    403: "The token's role does not allow this",
    404: "No such resource",
    405: "Method not allowed on this resource",
    409: "The current state does not allow this",
    413: "Body or payload too large",
    415: "A body with a content type other than JSON",
    429: "Rate limited; see Retry-After",
    503: "Redis or PostgreSQL unavailable; nothing was written",
}


def resp(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def param(name: str, where: str, schema: Schema, required: bool = False) -> Schema:
    return {"name": name, "in": where, "required": required, "schema": schema}


def op(
    op_id: str,
    summary: str,
    ok: dict[int, Schema],
    *,
    errors: tuple[int, ...] = (),
    body: Schema | None = None,
    params: list[Schema] | None = None,
    public: bool = False,
    tag: str = "tasks",
) -> Schema:
    """One operation; the error answers every operation can give are added here."""
    codes = {503, 405, *errors}
    if not public:
        codes |= {401, 403}
    if body is not None:
        codes |= {400, 413, 415}
    responses: dict[str, Any] = {str(code): answer for code, answer in ok.items()}
    for code in sorted(codes - set(ok)):
        error = resp(ref("Error"), _ERROR_TEXT[code])
        if code == 429:
            retry = {"type": "integer", "minimum": 1}
            error["headers"] = {"Retry-After": {"schema": retry, "description": "seconds"}}
        responses[str(code)] = error
    operation: Schema = {"operationId": op_id, "summary": summary, "tags": [tag]}
    operation["security"] = [] if public else [{"bearer": []}]
    if params:
        operation["parameters"] = params
    if body is not None:
        content = {"application/json": {"schema": body}}
        operation["requestBody"] = {"required": True, "content": content}
    operation["responses"] = responses
    return operation
