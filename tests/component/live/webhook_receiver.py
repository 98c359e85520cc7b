"""A real webhook receiver for the tests, run as its own process (so a test can kill and restart it).

    python webhook_receiver.py PORT SECRET STATE_DIR FAIL_FIRST

It verifies every request's signature with ``kubetask.core.notifications.verify_signature`` (what a receiver
written in Python would do), answers 503 to the first FAIL_FIRST requests it ever gets (the count survives
restarts: STATE_DIR/requests), and records each request it accepts in STATE_DIR/accepted.jsonl with whether
its delivery id was new (a receiver dedupes on it). Bad signatures get 401 and land in rejected.jsonl.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from kubetask.core.notifications import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, verify_signature

PORT, SECRET, STATE, FAIL_FIRST = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
LOCK = threading.Lock()


def _count() -> int:
    path = STATE / "requests"
    count = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(count))
    return count


def _seen_ids() -> set[str]:
    path = STATE / "accepted.jsonl"
    if not path.exists():
        return set()
    return {json.loads(line)["delivery_id"] for line in path.read_text().splitlines() if line}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with LOCK:
            number = _count()
            if number <= FAIL_FIRST:
                return self._answer(503, b"not yet")
            if not verify_signature(SECRET, body, self.headers.get(SIGNATURE_HEADER)):
                with (STATE / "rejected.jsonl").open("a") as out:
                    out.write(json.dumps({"headers": dict(self.headers)}) + "\n")
                return self._answer(401, b"bad signature")
            payload = json.loads(body)
            delivery = self.headers.get(DELIVERY_HEADER)
            record = {"delivery_id": delivery, "event": self.headers.get(EVENT_HEADER), "payload_id": payload["id"],
                      "type": payload["type"], "task_id": payload["data"]["task"]["id"],
                      "status": payload["data"]["task"].get("status"), "new": delivery not in _seen_ids(),
                      "attempt": self.headers.get("X-Kubetask-Attempt")}
            with (STATE / "accepted.jsonl").open("a") as out:
                out.write(json.dumps(record) + "\n")
        self._answer(204, b"")

    def _answer(self, code: int, text: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    (STATE / "ready").write_text(str(PORT))
    server.serve_forever()
