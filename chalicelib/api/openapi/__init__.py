"""The OpenAPI description of the HTTP API (GET /openapi.json)."""
