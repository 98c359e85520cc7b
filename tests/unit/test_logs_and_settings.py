import json
import logging

import pytest

from kubetask.logs import JsonFormatter, quiet_admission_refusals
from kubetask.settings import ApiSettings, GpuSettings, OperatorSettings


def test_json_log_lines_carry_extra_fields() -> None:
    record = logging.LogRecord("kubetask.operator", logging.INFO, __file__, 1, "admitted %s", ("t1",), None)
    record.task = "kubetask-alice/t1"
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "admitted t1"
    assert line["level"] == "info"
    assert line["task"] == "kubetask-alice/t1"


def test_admission_refusals_are_info_and_real_webhook_failures_stay_errors(
        caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("kopf.objects.test-refusals")
    quiet_admission_refusals(logger)
    quiet_admission_refusals(logger)
    assert len(logger.filters) == 1  # installed once
    logger.setLevel(logging.INFO)
    with caplog.at_level(logging.INFO, logger=logger.name):
        logger.error("Webhook 'rules' failed permanently: Too many pending tasks (max 2)")
        logger.error("Webhook 'rules' failed with an exception. Will stop.")
        logger.error("Handler 'tenant' failed permanently: boom")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "Webhook 'rules' failed permanently: Too many pending tasks (max 2)"),
        ("ERROR", "Webhook 'rules' failed with an exception. Will stop."),
        ("ERROR", "Handler 'tenant' failed permanently: boom"),
    ]
    caplog.clear()
    logger.setLevel(logging.WARNING)  # as the operator sets kopf.objects: refusals are not shown at all
    logger.error("Webhook 'defaults' failed permanently: kubetask admission probe: mutated=yes")
    assert caplog.records == []
    logger.filters.clear()


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBETASK_GPU_RESOURCE_NAME", "amd.com/gpu")
    monkeypatch.setenv("KUBETASK_OPERATOR_NAMESPACES", '["a", "b"]')
    monkeypatch.setenv("KUBETASK_API_DEFAULT_RATE_LIMIT_PER_MINUTE", "10")
    assert GpuSettings().resource_name == "amd.com/gpu"
    assert OperatorSettings().namespaces == ["a", "b"]
    assert ApiSettings().default_rate_limit_per_minute == 10


def test_settings_defaults_match_the_design() -> None:
    gpu = GpuSettings()
    assert (gpu.node_label_key, gpu.node_label_value) == ("nvidia.com/gpu.present", "true")
    assert gpu.taint_key == "nvidia.com/gpu"
    assert ApiSettings().default_rate_limit_per_minute == 600
