"""Structured logging for the operator, the API and ``kubetask dev``."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                payload[key] = value if isinstance(value, str | int | float | bool | None) else repr(value)
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload)


class AdmissionRefusalsAreInfo(logging.Filter):
    """Kopf logs every refused admission review as an ERROR ("Webhook 'rules' failed permanently: ..."): a Task
    over its tenant's pending limit, a bad spec, the start-up probe.  The refusal is the webhook doing its job
    (the user gets the message from the apiserver), so it is an INFO record, kept only where the logger shows
    INFO.  A webhook handler that really fails (any other exception) is logged by Kopf in other words, and
    stays an ERROR."""

    _REFUSAL = re.compile(r"Webhook '[^']+' failed permanently: ")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and self._REFUSAL.match(str(record.msg)):
            record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
            return logging.getLogger(record.name).isEnabledFor(logging.INFO)
        return True


def quiet_admission_refusals(logger: logging.Logger) -> None:
    """Install :class:`AdmissionRefusalsAreInfo` on ``logger`` (once)."""
    if not any(isinstance(f, AdmissionRefusalsAreInfo) for f in logger.filters):
        logger.addFilter(AdmissionRefusalsAreInfo())


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Install one stderr handler; ``fmt="json"`` for machine-read logs in clusters."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log, httpx's per-request lines and kopf's per-object chatter drown the signal at INFO.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("kopf.objects").setLevel(max(logging.INFO, root.level))
