"""A small client for a running ComfyUI: POST /prompt, the websocket, /history, /view (stdlib only)."""
from __future__ import annotations

import base64
import io
import json
import os
import socket
import struct
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid


class PromptRejected(Exception):
    """POST /prompt answered 400 (validation): ``.body`` is ComfyUI's JSON (error, node_errors)."""

    def __init__(self, body: dict):
        super().__init__(json.dumps(body)[:2000])
        self.body = body


class PromptFailed(Exception):
    """The prompt ran and a node raised: ``.error`` is the execution_error message's data."""

    def __init__(self, error: dict):
        super().__init__(f"{error.get('node_type')}: {error.get('exception_message')}")
        self.error = error


class WebSocket:
    """Enough of RFC 6455 to read ComfyUI's text messages (binary preview frames are skipped)."""

    def __init__(self, host: str, port: int, path: str, timeout: float = 600):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError("websocket handshake: connection closed")
            head += chunk
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise ConnectionError(f"websocket handshake refused: {head[:200]!r}")

    def _read(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("websocket closed")
            out += chunk
        return out

    def recv(self):
        """The next message: str (text) or bytes (binary)."""
        data, opcode = b"", None
        while True:
            b0, b1 = self._read(2)
            op = b0 & 0x0F
            length = b1 & 0x7F
            if length == 126:
                length = struct.unpack(">H", self._read(2))[0]
            elif length == 127:
                length = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            payload = self._read(length)
            if mask:
                payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
            if op in (0x9, 0xA):  # ping / pong: ignored (ComfyUI's server does not need an answer here)
                continue
            if op == 0x8:
                raise ConnectionError("websocket closed by the server")
            opcode = opcode if op == 0 else op
            data += payload
            if b0 & 0x80:
                return data.decode() if opcode == 1 else data

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Comfy:
    def __init__(self, url: str):
        self.url = url.rstrip("/")
        parsed = urllib.parse.urlparse(self.url)
        self.host, self.port = parsed.hostname, parsed.port or 80
        self.client_id = uuid.uuid4().hex

    def get_json(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=60) as r:
            return json.loads(r.read())

    def alive(self) -> bool:
        try:
            self.get_json("/system_stats")
            return True
        except (OSError, ValueError):
            return False

    def queue(self, prompt: dict) -> str:
        body = json.dumps({"prompt": prompt, "client_id": self.client_id}).encode()
        req = urllib.request.Request(self.url + "/prompt", data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return json.loads(r.read())["prompt_id"]
        except urllib.error.HTTPError as e:
            if e.code == 400:
                raise PromptRejected(json.loads(e.read())) from None
            raise

    def run(self, prompt: dict, timeout: float = 900) -> dict:
        """Queue, follow the websocket until this prompt finished, return its /history entry's outputs."""
        ws = WebSocket(self.host, self.port, f"/ws?clientId={self.client_id}", timeout=timeout)
        try:
            prompt_id = self.queue(prompt)
            for kind, data in _messages(ws, prompt_id, time.time() + timeout):
                if kind == "execution_error":
                    raise PromptFailed(data)
                if kind == "executing" and data.get("node") is None:
                    break
            else:
                raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout} s")
        finally:
            ws.close()
        for _ in range(100):  # the history entry lands right after the last message
            history = self.get_json(f"/history/{prompt_id}").get(prompt_id)
            if history is not None:
                break
            time.sleep(0.1)
        else:
            raise TimeoutError(f"prompt {prompt_id} finished but has no /history entry")
        if history["status"].get("status_str") != "success":
            raise PromptFailed({"exception_message": json.dumps(history["status"])[:2000]})
        return history["outputs"]

    def interrupt_when(self, prompt: dict, step: int, timeout: float = 900) -> str:
        """Queue, POST /interrupt once the sampler reported ``step`` (a websocket ``progress`` message), wait for
        ``execution_interrupted``; returns the last message type seen for this prompt."""
        ws = WebSocket(self.host, self.port, f"/ws?clientId={self.client_id}", timeout=timeout)
        try:
            prompt_id = self.queue(prompt)
            sent = False
            for kind, data in _messages(ws, prompt_id, time.time() + timeout):
                if kind == "progress" and data.get("value", 0) >= step and not sent:
                    urllib.request.urlopen(urllib.request.Request(self.url + "/interrupt", data=b"{}",
                                                                  headers={"Content-Type": "application/json"}))
                    sent = True
                if kind in ("execution_interrupted", "execution_error", "execution_success"):
                    return kind
            raise TimeoutError(f"prompt {prompt_id} did not end in {timeout} s")
        finally:
            ws.close()

    def view(self, item: dict) -> bytes:
        query = urllib.parse.urlencode({"filename": item["filename"], "subfolder": item.get("subfolder", ""),
                                        "type": item.get("type", "output")})
        with urllib.request.urlopen(f"{self.url}/view?{query}", timeout=60) as r:
            return r.read()

    def images(self, outputs: dict, node: str):
        """The images a SaveImage / PreviewImage node wrote, as uint8 numpy arrays (H, W, 3)."""
        import numpy as np
        from PIL import Image

        return [np.asarray(Image.open(io.BytesIO(self.view(item))).convert("RGB")) for item in outputs[node]["images"]]


def _messages(ws, prompt_id: str, deadline: float):
    """(type, data) of the websocket's JSON messages about ``prompt_id`` until ``deadline``."""
    while time.time() < deadline:
        message = ws.recv()
        if not isinstance(message, str):
            continue
        msg = json.loads(message)
        data = msg.get("data") or {}
        if data.get("prompt_id") == prompt_id:
            yield msg["type"], data
