"""Privacy canaries: secrets planted in every part of a request that could reach Sentry."""

from __future__ import annotations

from typing import Any

#: Where each canary is planted → its value (distinct, and unlikely anywhere else).
CANARIES = {
    "cookie": "CANARYcookie7f3a9",
    "authorization": "CANARYauth41c0d",
    "api_key_header": "CANARYapikey9be2",
    "custom_header": "CANARYheader55e1",
    "query": "CANARYquery0c8d4",
    "json_body": "CANARYbody6a27f",
    "client_ip": "203.0.113.77",
    "local": "CANARYlocal2d9e1",
}


def canary_request(client: Any, path: str, rid: str) -> Any:
    """POST to ``path`` with every canary planted (the view plants the local variable)."""
    client.set_cookie("session", CANARIES["cookie"])
    return client.post(
        path,
        query_string={"token": CANARIES["query"], "page": "2"},
        json={"password": CANARIES["json_body"], "name": "someone"},
        headers={
            "X-Request-ID": rid,
            "Authorization": f"Bearer {CANARIES['authorization']}",
            "X-Api-Key": CANARIES["api_key_header"],
            "X-Customer-Note": CANARIES["custom_header"],
        },
        environ_base={"REMOTE_ADDR": CANARIES["client_ip"]},
    )


def leaked(raw: bytes) -> list[str]:
    """The canaries found in ``raw`` (a captured envelope, decompressed)."""
    return [name for name, value in CANARIES.items() if value.encode() in raw]
