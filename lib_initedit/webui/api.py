"""The API says no: a malformed InitEdit spec in ``alwayson_scripts`` is refused with HTTP 422 before sampling.

A1111's ``/sdapi/v1/txt2img`` copies each ``alwayson_scripts[<title>]["args"]`` into the script's positional
args (the title matched case-insensitively, the list cut to the script's length without a word), and the
script's ``process`` can then only go on without InitEdit. Here the route's ASGI app is wrapped once, at
``on_app_started``: the JSON body is read, every key matching "InitEdit" case-insensitively is checked with the
same ``args.spec_from_args`` (hence ``parse_spec``) that ``process`` runs, and a refusal answers
``422 {"detail": "<field>: <what is wrong>"}``; otherwise the body is handed, unchanged, to the real handler.

img2img: InitEdit does not apply there (the script says so and edits nothing), but a malformed InitEdit
entry in an img2img request is refused the same way, so a client learns of its mistake on either route.

Also ``POST /initedit/v1/validate`` ``{"spec": <text or object>}`` -> ``{"error": null | "<field>: ..."}``:
the accordion asks it while the user edits, so a bad field is flagged before Generate; the Python parser stays
the one authority.
"""
from __future__ import annotations

import base64
import binascii
import hmac
import json
from typing import Any, Callable

from ..spec import SpecError, show_value
from . import args as script_args
from .console import LOG_PREFIX

ROUTES = ("/sdapi/v1/txt2img", "/sdapi/v1/img2img")
VALIDATE_ROUTE = "/initedit/v1/validate"
SCRIPT_TITLE = "InitEdit"
_MARK = "_initedit_refuses_bad_specs"
# () -> why layout cannot run on the loaded model, or None; set by ``register`` (the running WebUI's host)
layout_check: Callable[[], str | None] | None = None


def refusal(body: bytes) -> str | None:
    """The message for a request body whose InitEdit entry is malformed, else None (also for a body that is
    not a JSON object: the WebUI's own validation answers that)."""
    try:
        request = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(request, dict) or not isinstance(request.get("alwayson_scripts"), dict):
        return None
    for name, entry in request["alwayson_scripts"].items():
        if not isinstance(name, str) or name.lower() != SCRIPT_TITLE.lower():
            continue
        where = f"alwayson_scripts.{name}"
        if not isinstance(entry, dict):
            return f"{where}: must be an object {{\"args\": [...]}}, got {show_value(entry)}"
        if "args" not in entry:
            continue  # no args: the script runs with its defaults (off), as the WebUI does
        try:
            enabled, spec, _ = script_args.spec_from_args(entry["args"])
        except SpecError as e:
            return str(e)
        model = (request.get("override_settings") or {}) if isinstance(request.get("override_settings"), dict) else {}
        if enabled and "sd_model_checkpoint" not in model:  # another model: the run says it (InitEdit note)
            return layout_refusal(spec)
    return None


def layout_refusal(spec) -> str | None:
    """``layout: <why>`` when the spec has layout boxes and the loaded model cannot run them (no UNet
    cross-attention: Flux, SD3, Anima ...; the message names the family), else None."""
    reason = layout_check() if spec.layout and layout_check is not None else None
    return f"layout: {reason} (region reroll and keep run on this model)" if reason else None


def parse_credentials(api_auth: str | None) -> dict[str, str]:
    """``--api-auth user:pass,user2:pass2`` as the WebUI reads it."""
    creds = {}
    for item in (api_auth or "").split(","):
        if ":" in item:
            user, password = item.split(":", 1)
            creds[user] = password
    return creds


def authorized(scope, credentials: dict[str, str]) -> bool:
    """Whether the request carries HTTP Basic credentials the WebUI's ``--api-auth`` accepts (always, without)."""
    if not credentials:
        return True
    header = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, password = base64.b64decode(token, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, ValueError):
        return False
    expected = credentials.get(user)
    return expected is not None and hmac.compare_digest(password.encode(), expected.encode())


def refusing(inner: Callable, credentials: dict[str, str] | None = None) -> Callable:
    """An ASGI app that answers 422 for a malformed InitEdit entry and otherwise calls ``inner`` with the body
    replayed exactly as it came. With ``--api-auth``, a request without valid credentials is left to the real
    route (which answers 401): the refusal never speaks before the WebUI's own authentication."""

    async def app(scope, receive, send):
        if scope.get("type") != "http" or not authorized(scope, credentials or {}):
            return await inner(scope, receive, send)
        messages, body = [], b""
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        error = refusal(body)
        if error is not None:
            print(f"{LOG_PREFIX} request refused (422): {error}")
            payload = json.dumps({"detail": error}).encode()
            await send({"type": "http.response.start", "status": 422,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(payload)).encode())]})
            await send({"type": "http.response.body", "body": payload})
            return

        async def replay():
            return messages.pop(0) if messages else await receive()

        await inner(scope, replay, send)

    setattr(app, _MARK, True)
    return app


def validate(body: dict) -> dict:
    """``{"spec": text | object}`` -> ``{"error": None | message}`` (the spec as the UI's textbox holds it)."""
    raw = body.get("spec") if isinstance(body, dict) else body
    try:
        _, spec, _ = script_args.spec_from_args([True, raw] if raw is not None else [])
    except SpecError as e:
        return {"error": str(e)}
    return {"error": layout_refusal(spec)}


def register(_demo, app) -> None:
    """``script_callbacks.on_app_started``: wrap the generation routes (once) and add the validate route."""
    global layout_check
    try:
        from .controller import host

        # only a loaded model that runs reroll but not layout refuses layout (none loaded yet: the run decides)
        layout_check = lambda: None if host.unsupported_reason("reroll") else host.unsupported_reason("layout")  # noqa: E731
    except Exception:  # noqa: BLE001 - no WebUI host here (the unit tests): specs are checked alone
        layout_check = None
    try:
        from modules import shared

        credentials = parse_credentials(getattr(shared.cmd_opts, "api_auth", None))
    except Exception:  # noqa: BLE001 - a host without the WebUI's options: no API authentication to honour
        credentials = {}
    for route in getattr(getattr(app, "router", None), "routes", []):
        if getattr(route, "path", None) in ROUTES and not getattr(route.app, _MARK, False):
            route.app = refusing(route.app, credentials)
    if not any(getattr(r, "path", None) == VALIDATE_ROUTE for r in app.router.routes):
        from fastapi import Body

        def validate_route(body: Any = Body(None)):  # noqa: B008 - FastAPI's way of reading a JSON body
            return validate(body)

        app.add_api_route(VALIDATE_ROUTE, validate_route, methods=["POST"])
