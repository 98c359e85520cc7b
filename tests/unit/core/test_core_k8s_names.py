"""Kubernetes' name rules (``kubetask.core.k8s_names``) on apimachinery's own test cases.

The success and error cases are those of ``content/kube_test.go`` (``TestIsLabelKey``,
``TestIsLabelValue``), ``content/dns_test.go`` and ``util/validation/validation_test.go``; the
exact messages are those kube-apiserver 1.36 answered for the same values (also checked live by
``tests/component/operator/test_poison_tasks.py``).
"""

from __future__ import annotations

import pytest

from kubetask.core.admission import HTTP_STATUS, Reason, pod_fields, validate_task
from kubetask.core.jobs import pod_field_errors
from kubetask.core.k8s_names import (
    TOTAL_ANNOTATION_SIZE_LIMIT_B,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_label_key,
    is_label_value,
    is_qualified_name,
    is_relaxed_env_var_name,
    validate_annotations,
    validate_labels,
    validate_tolerations,
)
from kubetask.core.rest.errors import RestError
from kubetask.core.rest.intake import BuildContext, build_task, check_pod_fields

LABEL_KEY_OK = [
    "simple", "now-with-dashes", "1-starts-with-num", "1234", "simple/simple", "now-with-dashes/simple",
    "now-with-dashes/now-with-dashes", "now.with.dots/simple", "now-with.dashes-and.dots/simple", "1-num.2-num/3-num",
    "1234/5678", "1.2.3.4/5678", "Uppercase_Is_OK_123", "example.com/Uppercase_Is_OK_123", "requests.storage-foo",
    "a" * 63, "a" * 253 + "/" + "b" * 63,
]
LABEL_KEY_BAD = [
    "nospecialchars%^=@", "cantendwithadash-", "-cantstartwithadash-", "only/one/slash", "Example.com/abc",
    "example_com/abc", "example.com/", "/simple", "a" * 64, "a" * 254 + "/abc",
]
LABEL_VALUE_OK = ["simple", "now-with-dashes", "1-starts-with-num", "end-with-num-1", "1234", "a" * 63, ""]
LABEL_VALUE_BAD = [
    "nospecialchars%^=@", "Tama-nui-te-rā.is.Māori.sun", "\\backslashes\\are\\bad", "-starts-with-dash",
    "ends-with-dash-", ".starts.with.dot", "ends.with.dot.", "a" * 64,
]
DNS_LABEL_OK = ["a", "ab", "abc", "a1", "a-1", "a--1--2--b", "0", "01", "012", "1a", "1-a", "1--a--b--2", "a" * 63]
DNS_LABEL_BAD = ["", "A", "ABC", "aBc", "A1", "A-1", "1-A", "-", "a-", "-a", "1-", "-1", "_", "a_", "_a", "a_b",
                 "1_", "_1", "1_2", ".", "a.", ".a", "a.b", "1.", ".1", "1.2", " ", "a ", " a", "a b", "1 ", " 1",
                 "1 2", "a" * 64]
DNS_SUBDOMAIN_OK = ["a", "ab", "abc", "a1", "a-1", "a--1--2--b", "0", "01", "012", "1a", "1-a", "1--a--b--2", "a.a",
                    "ab.a", "abc.a", "a1.a", "a-1.a", "a--1--2--b.a", "a.1", "ab.1", "abc.1", "a1.1", "a-1.1",
                    "a--1--2--b.1", "0.a", "01.a", "012.a", "1a.a", "1-a.a", "1--a--b--2", "0.1", "01.1", "012.1",
                    "1a.1", "1-a.1", "1--a--b--2.1", "a.b.c.d.e", "aa.bb.cc.dd.ee", "1.2.3.4.5", "11.22.33.44.55",
                    "a" * 253]
DNS_SUBDOMAIN_BAD = ["", "A", "ABC", "aBc", "A1", "A-1", "1-A", "-", "a-", "-a", "1-", "-1", "_", "a_", "_a", "a_b",
                     "1_", "_1", "1_2", ".", "a.", ".a", "a..b", "1.", ".1", "1..2", " ", "a ", " a", "a b", "1 ",
                     " 1", "1 2", "A.a", "aB.a", "ab.A", "A1.a", "a1.A", "A.1", "aB.1", "A1.1", "1A.1", "0.A",
                     "01.A", "012.A", "1A.a", "1a.A", "A.B.C.D.E", "AA.BB.CC.DD.EE", "a.B.c.d.e", "aa.bB.cc.dd.ee",
                     "a@b", "a,b", "a_b", "a;b", "a:b", "a%b", "a?b", "a$b", "a" * 254]

NAME_PART = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
             "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
             "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
LABEL_VALUE = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
               "start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used "
               "for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")


@pytest.mark.parametrize("value", LABEL_KEY_OK)
def test_label_keys_apimachinery_accepts(value: str) -> None:
    assert is_label_key(value) == []
    assert is_qualified_name(value) == []


@pytest.mark.parametrize("value", LABEL_KEY_BAD)
def test_label_keys_apimachinery_refuses(value: str) -> None:
    assert is_label_key(value)


@pytest.mark.parametrize("value", LABEL_VALUE_OK)
def test_label_values_apimachinery_accepts(value: str) -> None:
    assert is_label_value(value) == []


@pytest.mark.parametrize("value", LABEL_VALUE_BAD)
def test_label_values_apimachinery_refuses(value: str) -> None:
    assert is_label_value(value)


@pytest.mark.parametrize("value", DNS_LABEL_OK)
def test_dns1123_labels_accepted(value: str) -> None:
    assert is_dns1123_label(value) == []


@pytest.mark.parametrize("value", DNS_LABEL_BAD)
def test_dns1123_labels_refused(value: str) -> None:
    assert is_dns1123_label(value)


@pytest.mark.parametrize("value", DNS_SUBDOMAIN_OK)
def test_dns1123_subdomains_accepted(value: str) -> None:
    assert is_dns1123_subdomain(value) == []


@pytest.mark.parametrize("value", DNS_SUBDOMAIN_BAD)
def test_dns1123_subdomains_refused(value: str) -> None:
    assert is_dns1123_subdomain(value)


@pytest.mark.parametrize(("value", "messages"), [
    ("bad key", [NAME_PART]),
    ("/simple", ["prefix part must be non-empty"]),
    ("example.com/", ["name part must be non-empty", NAME_PART]),
    ("a" * 254 + "/abc", ["prefix part must be no more than 253 bytes"]),
    ("a" * 64, ["name part must be no more than 63 bytes"]),
    ("a/b/c", ["a valid label key must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
               "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
               "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and "
               "'/' (e.g. 'example.com/MyName')"]),
])
def test_label_key_messages_are_the_apiservers(value: str, messages: list[str]) -> None:
    assert is_label_key(value) == messages


def test_label_value_messages_are_the_apiservers() -> None:
    assert is_label_value("bad value") == [LABEL_VALUE]
    assert is_label_value("a" * 64) == ["must be no more than 63 bytes"]
    assert is_label_value("é") == [LABEL_VALUE]  # one character, but not ASCII
    assert is_label_value("ends-with-newline\n") == [LABEL_VALUE]  # Go's $ has no trailing-newline exception


def test_dns1123_label_with_dots_says_so() -> None:
    assert is_dns1123_label("a.b") == ["must not contain dots"]


def test_lengths_are_bytes() -> None:
    assert is_label_value("é" * 32)  # 64 bytes
    assert is_label_key("ü" * 40)


def test_env_names_follow_the_relaxed_rule() -> None:
    assert is_relaxed_env_var_name("1STARTS_WITH_DIGIT") == []
    assert is_relaxed_env_var_name("with space") == []
    assert is_relaxed_env_var_name("a=b") == ["a valid environment variable name must consist only of printable "
                                              "ASCII characters other than '='"]
    assert is_relaxed_env_var_name("") == ["environment variable name must be non-empty"]
    assert is_relaxed_env_var_name("naïve")


def test_labels_as_the_apiserver_words_them() -> None:
    errors = validate_labels({"good": "bad value", "-x": "ok"}, "spec.template.labels")
    assert [str(e) for e in errors] == [
        f'spec.template.labels: Invalid value: "-x": {NAME_PART}',
        f'spec.template.labels: Invalid value: "bad value": {LABEL_VALUE}',
    ]


def test_annotations_keys_ignore_case_and_size_is_bounded() -> None:
    assert validate_annotations({"Example.com/abc": "x", "kubetask.dev/sim-duration-seconds": "1"}, "a") == []
    assert [str(e) for e in validate_annotations({"bad key": "v"}, "a")] == [
        f'a: Invalid value: "bad key": {NAME_PART}']
    at_limit = {"k": "x" * (TOTAL_ANNOTATION_SIZE_LIMIT_B - 1)}
    assert validate_annotations(at_limit, "a") == []
    assert [str(e) for e in validate_annotations({"k": "x" * TOTAL_ANNOTATION_SIZE_LIMIT_B}, "a")] == [
        "a: Too long: may not be more than 262144 bytes"]


def test_tolerations_as_the_apiserver_words_them() -> None:
    errors = validate_tolerations([
        {"key": "bad key", "operator": "Exists"},
        {"operator": "Equal", "value": "x"},
        {"key": "k", "operator": "Exists", "value": "v"},
        {"key": "k2", "operator": "Equal", "value": "bad value"},
        {"key": "k3", "operator": "Exists", "effect": "NoSchedule"},
        {"operator": "Exists"},
    ], "spec.tolerations")
    assert [str(e) for e in errors] == [
        f'spec.tolerations[0].key: Invalid value: "bad key": {NAME_PART}',
        'spec.tolerations[1].operator: Invalid value: "Equal": operator must be Exists when `key` is empty, which '
        'means "match all values and all keys"',
        "spec.tolerations[2].operator: Invalid value: \"v\": value must be empty when `operator` is 'Exists'",
        f'spec.tolerations[3].operator: Invalid value: "bad value": {LABEL_VALUE}',
    ]


def test_pod_field_errors_name_the_task_fields() -> None:
    spec = {"image": "busybox", "podLabels": {"team": "ml ops"}, "podAnnotations": {"bad key": "1"},
            "nodeSelector": {"disk type": "ssd"}, "tolerations": [{"key": "gpu", "operator": "Exists", "value": "x"}],
            "env": [{"name": "A=B", "value": "1"}, {"name": "OK", "value": "2"}]}
    assert [e.field for e in pod_field_errors(spec)] == [
        "spec.podLabels", "spec.podAnnotations", "spec.nodeSelector", "spec.tolerations[0].operator",
        "spec.env[0].name"]
    assert pod_field_errors({"image": "busybox", "env": {"GOOD": "1"}, "podLabels": {"team": "ml"}}) == []


def test_pod_field_errors_count_the_task_name_annotation_in_the_size() -> None:
    almost = {"podAnnotations": {"k": "x" * (TOTAL_ANNOTATION_SIZE_LIMIT_B - 10)}}
    assert pod_field_errors(almost) == []
    assert [e.kind for e in pod_field_errors(almost, name="a-task-name")] == ["TooLong"]


def test_the_webhook_verdict_refuses_with_422_and_the_apiservers_words() -> None:
    spec = {"image": "busybox", "podAnnotations": {"bad key": "1"}}
    verdict = validate_task(spec, name="t", namespace="kubetask-alice")
    assert not verdict.allowed
    assert verdict.reason is Reason.INVALID_FIELD and HTTP_STATUS[Reason.INVALID_FIELD] == 422
    assert verdict.field == "spec.podAnnotations"
    assert verdict.message == f'Kubernetes would refuse this task\'s pod: spec.podAnnotations: Invalid value: ' \
                              f'"bad key": {NAME_PART}'
    assert pod_fields({"image": "busybox", "podAnnotations": {"example.com/Ok": "1"}}, "t") is None


def test_the_webhook_verdict_applies_to_updates_before_admission() -> None:
    old = {"spec": {"image": "busybox"}, "status": {"phase": "Queued"}}
    verdict = validate_task({"image": "busybox", "nodeSelector": {"a b": "c"}}, name="t", namespace="ns",
                            operation="UPDATE", old=old)
    assert verdict.reason is Reason.INVALID_FIELD and verdict.field == "spec.nodeSelector"


@pytest.mark.parametrize(("body", "spec", "field"), [
    ({"annotations": {"bad key": "1"}}, {"podAnnotations": {"bad key": "1"}}, "annotations"),
    ({"pod_labels": {"a": "b c"}}, {"podLabels": {"a": "b c"}}, "pod_labels"),
    ({"node_selector": {"a b": "c"}}, {"nodeSelector": {"a b": "c"}}, "node_selector"),
    ({"tolerations": [{"key": "x y"}]}, {"tolerations": [{"key": "x y"}]}, "tolerations[0].key"),
])
def test_rest_intake_answers_422_naming_the_request_field(body: dict[str, object], spec: dict[str, object],
                                                          field: str) -> None:
    with pytest.raises(RestError) as caught:
        check_pod_fields(body, {"image": "busybox", **spec})
    assert caught.value.status == 422
    assert caught.value.field == field
    assert caught.value.code == "VALIDATION_ERROR"
    assert "Invalid value" in caught.value.detail


def test_build_task_refuses_a_body_whose_pod_the_apiserver_would_refuse() -> None:
    context = BuildContext(user="alice", namespace="kubetask-alice")
    with pytest.raises(RestError) as caught:
        build_task({"name": "x", "image": "busybox", "node_selector": {"gpu type": "a100"}}, context)
    assert caught.value.status == 422 and caught.value.field == "node_selector"
    built = build_task({"name": "x", "image": "busybox", "annotations": {"example.com/Team": "ml"}}, context)
    assert built["spec"]["podAnnotations"] == {"example.com/Team": "ml"}
