"""Schemathesis hooks for the mesh's conformance run (tests/tests/conformance.rs).

Authentication: every operation gets a real session's access token, logged in once through
the router (`MESH_URL`) as `MESH_EMAIL` / `MESH_PASSWORD`. `POST /v1/auth/logout` revokes the
session it is called with, so it gets a fresh session each time: otherwise the first logout
would revoke the token every later case uses, and the run would test only 401s.
"""

import itertools
import json
import os
import urllib.request

import schemathesis

BASE = os.environ["MESH_URL"].rstrip("/")
EMAIL = os.environ["MESH_EMAIL"]
PASSWORD = os.environ["MESH_PASSWORD"]

_fresh = itertools.count()


def _login() -> str:
    body = json.dumps({"email": EMAIL, "password": PASSWORD}).encode()
    request = urllib.request.Request(
        f"{BASE}/v1/auth/login", data=body, headers={"content-type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["access_token"]


def _session_key(case, context) -> str:
    if case.operation.method.upper() == "POST" and case.operation.path == "/v1/auth/logout":
        return f"logout-{next(_fresh)}"
    return "session"


@schemathesis.auth(cache_by_key=_session_key, refresh_interval=600)
class Session:
    def get(self, case, context):
        return _login()

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"
