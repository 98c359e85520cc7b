"""The fake kubelet's log endpoint: ``kubectl logs`` and ``pods/log`` for pods on kwok nodes.

kwok plays the kubelet's status updates; the apiserver still proxies ``pods/{name}/log`` to
the node's kubelet port. This small HTTPS server answers there, with the text of the pod's
``kubetask.dev/sim-logs`` annotation as the container's output. ``follow=true`` holds the
stream open until the container ends, as a kubelet does.

Run as ``python -m kubetask.cluster.kubelet --port P --cert C --key K --apiserver URL --ca CA
--token-file T`` (the launcher does).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import ssl
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

LOGS_ANNOTATION = "kubetask.dev/sim-logs"
_PATH = re.compile(r"^/containerLogs/(?P<namespace>[^/]+)/(?P<pod>[^/]+)/(?P<container>[^/]+)$")
_FOLLOW_POLL_SECONDS = 0.2


class PodReader:
    """Reads pods from the apiserver as the launcher's admin."""

    def __init__(self, apiserver: str, ca_file: str, token: str) -> None:
        self.apiserver = apiserver.rstrip("/")
        self.context = ssl.create_default_context(cafile=ca_file)
        self.token = token

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        request = urllib.request.Request(f"{self.apiserver}/api/v1/namespaces/{namespace}/pods/{name}",
                                         headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=10) as response:
                pod: dict[str, Any] = json.loads(response.read())
                return pod
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise


def container_state(pod: dict[str, Any], container: str) -> dict[str, Any]:
    for status in (pod.get("status") or {}).get("containerStatuses") or ():
        if status.get("name") == container:
            state: dict[str, Any] = status.get("state") or {}
            return state
    return {}


def log_lines(pod: dict[str, Any], container: str, *, timestamps: bool, tail: int | None) -> list[str]:
    """The container's output as lines (each ending in ``\\n``)."""
    text = ((pod.get("metadata") or {}).get("annotations") or {}).get(LOGS_ANNOTATION, "")
    lines = text.splitlines() if text else []
    if tail is not None:
        lines = lines[-tail:] if tail > 0 else []
    if timestamps:
        state = container_state(pod, container)
        started = (state.get("running") or state.get("terminated") or {}).get("startedAt", "")
        stamp = started.replace("Z", ".000000000Z") if started and "." not in started else started
        return [f"{stamp} {line}\n" for line in lines]
    return [f"{line}\n" for line in lines]


def make_handler(reader: PodReader) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _send(self, code: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _chunk(self, data: bytes) -> None:
            if data:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path in ("/healthz", "/readyz", "/livez"):
                self._send(200, b"ok")
                return
            match = _PATH.match(url.path)
            if match is None:
                self._send(404, b"not found")
                return
            query = {key: values[-1] for key, values in parse_qs(url.query).items()}
            pod = reader.get(match["namespace"], match["pod"])
            if pod is None:
                self._send(404, f'pods "{match["pod"]}" not found'.encode())
                return
            container = match["container"]
            tail = int(query["tailLines"]) if query.get("tailLines", "").lstrip("-").isdigit() else None
            timestamps = query.get("timestamps") in ("true", "1")
            lines = log_lines(pod, container, timestamps=timestamps, tail=tail)
            body = "".join(lines).encode()
            if query.get("limitBytes", "").isdigit():
                body = body[: int(query["limitBytes"])]
            if query.get("follow") not in ("true", "1"):
                self._send(200, body)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self._chunk(body)
            # The whole output is known up front; following only means staying until the end.
            while pod is not None and "terminated" not in container_state(pod, container):
                time.sleep(_FOLLOW_POLL_SECONDS)
                pod = reader.get(match["namespace"], match["pod"])
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    return Handler


def serve(port: int, cert: str, key: str, reader: PodReader) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(reader))
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--apiserver", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--token-file", required=True)
    args = parser.parse_args(argv)
    with open(args.token_file) as handle:
        token = handle.read().strip()
    with contextlib.suppress(KeyboardInterrupt):
        serve(args.port, args.cert, args.key, PodReader(args.apiserver, args.ca, token))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
