"""Kubernetes' own name and metadata rules (pure), ported from k8s.io/apimachinery.

The apiserver refuses a Job whose pod template carries a label, annotation, nodeSelector or
toleration it deems invalid; a Task that would build such a Job can never run.  These are the
apiserver's rules and words, so admission refuses such a Task up front with the message the
apiserver would have given:

* :func:`is_label_key` / :func:`is_qualified_name`, :func:`is_label_value`, :func:`is_dns1123_label`,
  :func:`is_dns1123_subdomain` and :func:`is_relaxed_env_var_name` port
  ``k8s.io/apimachinery/pkg/api/validate/content`` (``IsLabelKey``, ``IsLabelValue``, …) and
  ``pkg/util/validation`` (``IsRelaxedEnvVarName``) with their regexes and messages;
* :func:`validate_labels`, :func:`validate_annotations` and :func:`validate_tolerations` port
  ``ValidateLabels`` (meta/v1/validation), ``ValidateAnnotations`` (api/validation) and
  ``ValidateTolerations`` (pkg/apis/core/validation), returning :class:`FieldError` s that read
  like the apiserver's ``field.Error`` (``<path>: Invalid value: "<value>": <detail>``).

Lengths are in bytes (UTF-8) as Go's ``len`` counts them; the regexes are matched against the whole
string (Go's ``^…$`` has no trailing-newline exception, hence ``fullmatch``).  The messages are
those of kube-apiserver 1.36 (``must be no more than 63 bytes``; ``RegexError``'s
``'a',  or 'b', regex used …`` spacing included): checked against the real apiserver by
``tests/component/operator/test_poison_tasks.py``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

LABEL_KEY_CHAR_FMT = "[A-Za-z0-9]"
LABEL_KEY_EXT_CHAR_FMT = "[-A-Za-z0-9_.]"
LABEL_KEY_FMT = "(" + LABEL_KEY_CHAR_FMT + LABEL_KEY_EXT_CHAR_FMT + "*)?" + LABEL_KEY_CHAR_FMT
LABEL_KEY_ERR_MSG = ("must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
                     "alphanumeric character")
LABEL_KEY_MAX_LENGTH = 63

LABEL_VALUE_FMT = "(" + LABEL_KEY_FMT + ")?"
LABEL_VALUE_ERR_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
                       "and must start and end with an alphanumeric character")
LABEL_VALUE_MAX_LENGTH = 63

DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_LABEL_ERR_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
                         "must start and end with an alphanumeric character")
DNS1123_LABEL_MAX_LENGTH = 63
DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + "(\\." + DNS1123_LABEL_FMT + ")*"
DNS1123_SUBDOMAIN_ERR_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
                             "or '.', and must start and end with an alphanumeric character")
DNS1123_SUBDOMAIN_MAX_LENGTH = 253

RELAXED_ENV_VAR_NAME_ERR_MSG = "a valid environment variable name must consist only of printable ASCII characters " \
                               "other than '='"

TOTAL_ANNOTATION_SIZE_LIMIT_B = 256 * (1 << 10)
"""``TotalAnnotationSizeLimitB``: keys and values of one object's annotations, together."""

_LABEL_KEY = re.compile(LABEL_KEY_FMT)
_LABEL_VALUE = re.compile(LABEL_VALUE_FMT)
_DNS1123_LABEL = re.compile(DNS1123_LABEL_FMT)
_DNS1123_SUBDOMAIN = re.compile(DNS1123_SUBDOMAIN_FMT)


# ---------------------------------------------------------------------- messages (content/errors.go)


def max_len_error(length: int) -> str:
    return f"must be no more than {length} bytes"


def empty_error() -> str:
    return "must be non-empty"


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    """``RegexError``: the message, the examples and the regex, worded (and spaced) as apimachinery does."""
    if not examples:
        return msg + " (regex used for validation is '" + fmt + "')"
    msg += " (e.g. "
    for i, example in enumerate(examples):
        if i > 0:
            msg += " or "
        msg += "'" + example + "', "
    return msg + "regex used for validation is '" + fmt + "')"


def _size(value: str) -> int:
    return len(value.encode())


# ---------------------------------------------------------------------- string rules


def is_dns1123_label(value: str) -> list[str]:
    errs = []
    if _size(value) > DNS1123_LABEL_MAX_LENGTH:
        errs.append(max_len_error(DNS1123_LABEL_MAX_LENGTH))
    if not _DNS1123_LABEL.fullmatch(value):
        if _DNS1123_SUBDOMAIN.fullmatch(value):
            errs.append("must not contain dots")  # a valid subdomain; the length was checked: it is the dots
        else:
            errs.append(regex_error(DNS1123_LABEL_ERR_MSG, DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def is_dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if _size(value) > DNS1123_SUBDOMAIN_MAX_LENGTH:
        errs.append(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH))
    if not _DNS1123_SUBDOMAIN.fullmatch(value):
        errs.append(regex_error(DNS1123_SUBDOMAIN_ERR_MSG, DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_label_key(value: str) -> list[str]:
    """``IsLabelKey`` (a.k.a. ``IsQualifiedName``): an optional DNS-subdomain prefix and ``/``, then a name."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part " + empty_error())
        else:
            errs += ["prefix part " + msg for msg in is_dns1123_subdomain(prefix)]
    else:
        return ["a valid label key " + regex_error(LABEL_KEY_ERR_MSG, LABEL_KEY_FMT, "MyName", "my.name", "123-abc")
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if not name:
        errs.append("name part " + empty_error())
    elif _size(name) > LABEL_KEY_MAX_LENGTH:
        errs.append("name part " + max_len_error(LABEL_KEY_MAX_LENGTH))
    if not _LABEL_KEY.fullmatch(name):
        errs.append("name part " + regex_error(LABEL_KEY_ERR_MSG, LABEL_KEY_FMT, "MyName", "my.name", "123-abc"))
    return errs


is_qualified_name = is_label_key


def is_label_value(value: str) -> list[str]:
    errs = []
    if _size(value) > LABEL_VALUE_MAX_LENGTH:
        errs.append(max_len_error(LABEL_VALUE_MAX_LENGTH))
    if not _LABEL_VALUE.fullmatch(value):
        errs.append(regex_error(LABEL_VALUE_ERR_MSG, LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def is_relaxed_env_var_name(value: str) -> list[str]:
    """``IsRelaxedEnvVarName``, the rule kube-apiserver applies to container env names since 1.34."""
    errs = []
    if not value:
        errs.append("environment variable name " + empty_error())
    if any(ord(ch) > 127 or not ch.isprintable() or ch == "=" for ch in value):
        errs.append(RELAXED_ENV_VAR_NAME_ERR_MSG)
    return errs


# ---------------------------------------------------------------------- field errors


def go_quote(value: Any) -> str:
    """Roughly Go's ``%q`` of the offending value, as ``field.Invalid`` prints it."""
    return json.dumps(value if isinstance(value, str) else str(value), ensure_ascii=False)


@dataclass(frozen=True)
class FieldError:
    """One ``field.Error``: where, the offending value and why."""

    field: str
    value: Any
    detail: str
    kind: str = "Invalid"
    """``Invalid`` (``Invalid value: "<v>": <detail>``), ``TooLong`` (``Too long: <detail>``) or ``NotSupported``."""

    def __str__(self) -> str:
        if self.kind == "TooLong":
            return f"{self.field}: Too long: {self.detail}"
        if self.kind == "NotSupported":
            return f"{self.field}: Unsupported value: {go_quote(self.value)}: {self.detail}"
        return f"{self.field}: Invalid value: {go_quote(self.value)}: {self.detail}"


def validate_label_name(name: str, path: str) -> list[FieldError]:
    return [FieldError(path, name, msg) for msg in is_label_key(name)]


def validate_labels(labels: Mapping[str, Any], path: str) -> list[FieldError]:
    """``ValidateLabels``: every key a label key, every value a label value (sorted, unlike Go's map order)."""
    errs: list[FieldError] = []
    for key in sorted(labels):
        value = str(labels[key])
        errs += validate_label_name(str(key), path)
        errs += [FieldError(path, value, msg) for msg in is_label_value(value)]
    return errs


def annotations_size(annotations: Mapping[str, Any]) -> int:
    return sum(_size(str(k)) + _size(str(v)) for k, v in annotations.items())


def validate_annotations(annotations: Mapping[str, Any], path: str) -> list[FieldError]:
    """``ValidateAnnotations``: keys are label keys, case aside; keys and values total at most 256 KiB."""
    errs: list[FieldError] = []
    for key in sorted(annotations):
        errs += [FieldError(path, str(key), msg) for msg in is_qualified_name(str(key).lower())]
    if annotations_size(annotations) > TOTAL_ANNOTATION_SIZE_LIMIT_B:
        errs.append(FieldError(path, "", f"may not be more than {TOTAL_ANNOTATION_SIZE_LIMIT_B} bytes", "TooLong"))
    return errs


_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def validate_tolerations(tolerations: Sequence[Mapping[str, Any]], path: str) -> list[FieldError]:
    """``ValidateTolerations`` for the operators and effects a Task may use (``Equal``/``Exists``)."""
    errs: list[FieldError] = []
    for i, toleration in enumerate(tolerations):
        at = f"{path}[{i}]"
        key = str(toleration.get("key") or "")
        operator = str(toleration.get("operator") or "")
        value = str(toleration.get("value") or "")
        effect = str(toleration.get("effect") or "")
        if key:
            errs += validate_label_name(key, f"{at}.key")
        if not key and operator != "Exists":
            errs.append(FieldError(f"{at}.operator", operator,
                                   'operator must be Exists when `key` is empty, which means "match all values and '
                                   'all keys"'))
        if toleration.get("tolerationSeconds") is not None and effect != "NoExecute":
            errs.append(FieldError(f"{at}.effect", effect,
                                   "effect must be 'NoExecute' when `tolerationSeconds` is set"))
        if operator in ("Equal", ""):
            if problems := is_label_value(value):
                errs.append(FieldError(f"{at}.operator", value, ";".join(problems)))
        elif operator == "Exists":
            if value:
                errs.append(FieldError(f"{at}.operator", value, "value must be empty when `operator` is 'Exists'"))
        else:
            errs.append(FieldError(f"{at}.operator", operator, 'supported values: "Equal", "Exists"', "NotSupported"))
        if effect and effect not in _EFFECTS:
            errs.append(FieldError(f"{at}.effect", effect, 'supported values: "NoExecute", "NoSchedule", '
                                                           '"PreferNoSchedule"', "NotSupported"))
    return errs


__all__ = ["TOTAL_ANNOTATION_SIZE_LIMIT_B", "FieldError", "annotations_size", "is_dns1123_label",
           "is_dns1123_subdomain", "is_label_key", "is_label_value", "is_qualified_name", "is_relaxed_env_var_name",
           "regex_error", "validate_annotations", "validate_label_name", "validate_labels", "validate_tolerations"]
