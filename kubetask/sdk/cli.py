"""The ``kubetask tasks|templates|queue`` commands (over the SDK).

``register(subparsers)`` adds them to the ``kubetask`` console script; every leaf
command sets ``func(args) -> int`` (the exit code).  Configuration: ``--url`` /
``$KUBETASK_URL`` and ``--api-key`` / ``$KUBETASK_API_KEY`` (or ``--token`` /
``$KUBETASK_TOKEN``).  Output is a table unless ``--output json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from kubetask.sdk.client import KubetaskClient, TaskEvent
from kubetask.sdk.errors import KubetaskError, WaitTimeout
from kubetask.sdk.models import Task

Handler = Callable[[argparse.Namespace], int]


# --------------------------------------------------------------------------- output


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))[:60]
    return str(value)


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], out: TextIO | None = None) -> None:
    out = out or sys.stdout
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c.upper())] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip(), file=out)
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip(), file=out)


def print_json(value: Any, out: TextIO | None = None) -> None:
    print(json.dumps(value, indent=2, default=str), file=out or sys.stdout)


def _dump(model: Any) -> Any:
    return model.model_dump(mode="json") if hasattr(model, "model_dump") else model


TASK_COLUMNS = ("id", "name", "status", "priority", "queue_name", "template", "worker_id", "created_at")


def print_task(task: Task, output: str) -> None:
    if output == "json":
        print_json(_dump(task))
        return
    data = _dump(task)
    keys = ("id", "name", "status", "priority", "queue_name", "user_id", "template", "task_type", "model_name",
            "depends_on", "created_at", "started_at", "completed_at", "worker_id", "retry_count",
            "queue_position", "estimated_start_time", "waiting_reason", "error", "result")
    width = max(len(k) for k in keys)
    for key in keys:
        if data.get(key) not in (None, [], {}):
            value = data[key]
            text = json.dumps(value, default=str) if isinstance(value, dict | list) else str(value)
            print(f"{key.ljust(width)}  {text}")


# --------------------------------------------------------------------------- helpers


def client_from(args: argparse.Namespace) -> KubetaskClient:
    return KubetaskClient(args.url, api_key=args.api_key, token=getattr(args, "token", None),
                          timeout=getattr(args, "http_timeout", 30.0))


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _pairs(items: Sequence[str] | None, what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"error: {what} must look like key=value (got {item!r})")
        out[key] = _parse_value(value)
    return out


def _json_arg(text: str | None, what: str) -> Any:
    if text is None:
        return None
    if text.startswith("@"):
        text = Path(text[1:]).read_text()
    try:
        return json.loads(text)
    except ValueError as error:
        raise SystemExit(f"error: {what} is not valid JSON: {error}") from None


def _guard(func: Handler) -> Handler:
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except WaitTimeout as error:
            print(f"error: {error.detail}", file=sys.stderr)
            return 3
        except KubetaskError as error:
            where = f" (field: {error.field})" if error.field else ""
            print(f"error: {error.status_code} {error.code or ''} {error.detail}{where}".replace("  ", " "),
                  file=sys.stderr)
            return 1
    return run


# --------------------------------------------------------------------------- commands


def cmd_submit(args: argparse.Namespace) -> int:
    body: dict[str, Any] = dict(_json_arg(args.json, "--json") or {})
    params = dict(_json_arg(args.parameters, "--parameters") or {})
    params.update(_pairs(args.param, "--param"))
    fields: dict[str, Any] = {
        "name": args.name, "template": args.template, "priority": args.priority, "queue_name": args.queue,
        "timeout_seconds": args.timeout, "max_retries": args.max_retries, "gpus": args.gpus,
        "gpu_type": args.gpu_type, "task_type": args.task_type, "model_name": args.model_name,
        "image": args.image, "scheduled_at": args.scheduled_at, "description": args.description,
    }
    if params:
        fields["parameters"] = params
    if args.input is not None:
        fields["input_data"] = _json_arg(args.input, "--input")
    if args.script:
        fields["script_content"] = Path(args.script).read_text() if args.script != "-" else sys.stdin.read()
        fields["script_type"] = args.script_type or ("bash" if args.script.endswith(".sh") else "python")
    elif args.script_type:
        fields["script_type"] = args.script_type
    command = list(args.argv or [])
    if command[:1] == ["--"]:
        command = command[1:]
    if command and args.shell_command:
        raise SystemExit("error: give the command either after -- or with --command, not both")
    if command:
        fields["command"] = command
    elif args.shell_command:
        fields["command"] = args.shell_command  # one string: the API runs it with /bin/sh -c
    if args.depends_on:
        fields["depends_on"] = args.depends_on
    if args.annotation:
        # Annotation values are strings on the wire: keep JSON-looking values as JSON text.
        fields["annotations"] = {k: v if isinstance(v, str) else json.dumps(v)
                                 for k, v in _pairs(args.annotation, "--annotation").items()}
    if args.tag:
        fields["tags"] = args.tag
    body.update({k: v for k, v in fields.items() if v is not None})
    with client_from(args) as kt:
        task = kt.submit(body)
        if not args.wait:
            if args.quiet:  # scriptable: ID=$(kubetask tasks submit ... -q)
                print(task.id)
            elif args.output == "json":
                print_json(_dump(task))
            else:
                print_table([_dump(task)], TASK_COLUMNS)
            return 0
        return _wait(kt, task.id, args)


def cmd_list(args: argparse.Namespace) -> int:
    filters = {"status": args.status, "template": args.template, "queue_name": args.queue,
               "search": args.search, "sort_by": args.sort_by, "sort_order": args.order, "tag": args.tag,
               "page": args.page}
    with client_from(args) as kt:
        page = kt.list(limit=args.limit, offset=args.offset, **{k: v for k, v in filters.items() if v})
    if args.output == "json":
        print_json(_dump(page))
        return 0
    print_table([_dump(t) for t in page.tasks], TASK_COLUMNS)
    print(f"({len(page.tasks)} of {page.total})", file=sys.stderr)
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    with client_from(args) as kt:
        print_task(kt.get(args.task_id), args.output)
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    with client_from(args) as kt:
        result = kt.cancel(args.task_id)
    if args.output == "json":
        print_json(_dump(result))
    else:
        print(f"{result.task_id} {result.status} at {result.cancelled_at}")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    with client_from(args) as kt:
        if args.follow:
            for chunk in kt.follow_logs(args.task_id, tail=args.tail):
                sys.stdout.write(chunk)
                sys.stdout.flush()
        else:
            sys.stdout.write(kt.logs(args.task_id, tail=args.tail))
    return 0


def _progress(task: Task) -> None:
    bits = [f"{task.id}: {task.status}"]
    if task.queue_position is not None:
        bits.append(f"position {task.queue_position}")
    if task.estimated_start_time:
        bits.append(f"est. start {task.estimated_start_time}")
    if task.waiting_reason:
        bits.append(f"({task.waiting_reason})")
    if task.worker_id and task.status == "running":
        bits.append(f"on {task.worker_id}")
    print(" ".join(bits), file=sys.stderr, flush=True)


def _wait(kt: KubetaskClient, task_id: str, args: argparse.Namespace) -> int:
    task = kt.wait(task_id, timeout=args.timeout_wait, poll_interval=args.interval,
                   on_progress=None if args.quiet else _progress)
    if args.output == "json":
        print_json(_dump(task))
    elif task.result is not None:
        print(json.dumps(task.result, indent=2, default=str) if not isinstance(task.result, str) else task.result)
    else:
        print(f"{task.id} {task.status}")
    if task.status != "completed":
        if task.error:
            print(f"error: task {task.id} {task.status}: {task.error}", file=sys.stderr)
        return 2
    return 0


def cmd_wait(args: argparse.Namespace) -> int:
    with client_from(args) as kt:
        return _wait(kt, args.task_id, args)


def _watch_line(event: TaskEvent) -> str:
    task = event.task
    if task is None:
        return f"! {event.kind}: {event.detail}"
    bits = [f"{event.kind:<8} {task.id}: {task.status}"]
    if task.queue_position is not None:
        bits.append(f"position {task.queue_position}")
    if task.estimated_start_time and task.status in ("pending", "queued"):
        bits.append(f"est. start {task.estimated_start_time}")
    if task.waiting_reason:
        bits.append(f"({task.waiting_reason})")
    if task.worker_id and task.status == "running":
        bits.append(f"on {task.worker_id}")
    if task.error:
        bits.append(f"error: {task.error}")
    return " ".join(bits)


WATCH_COLUMNS = ("id", "status", "queue_position", "estimated_start_time", "worker_id", "waiting_reason")


def cmd_watch(args: argparse.Namespace) -> int:
    """A live progress view from the SSE stream: a table redrawn in place on a terminal, one line per change
    otherwise; following one task, it ends when the task does (exit 0 if completed, 2 if not)."""
    live = sys.stdout.isatty() and args.output != "json"
    rows: dict[str, dict[str, Any]] = {}
    last: Task | None = None
    with client_from(args) as kt:
        try:
            for event in kt.watch(args.task_id, status=args.status, tag=args.tag, template=args.template,
                                  snapshot=not args.no_snapshot, timeout=args.timeout_wait):
                if args.output == "json":
                    print(json.dumps({"event": event.kind, "id": event.id, "detail": event.detail,
                                      "task": _dump(event.task) if event.task else None}, default=str), flush=True)
                elif not live:
                    print(_watch_line(event), flush=True)
                if event.task is not None:
                    last = event.task
                    if event.kind == "deleted":
                        rows.pop(event.task.id, None)
                    else:
                        rows[event.task.id] = _dump(event.task)
                if live:
                    sys.stdout.write("\x1b[H\x1b[2J")  # redraw in place
                    print(f"kubetask: {len(rows)} task(s), live (Ctrl-C to stop)   last: {_watch_line(event)}")
                    print_table(list(rows.values())[-40:], WATCH_COLUMNS)
                    sys.stdout.flush()
        except KeyboardInterrupt:
            return 130
    if args.task_id:
        return 0 if last is not None and last.status == "completed" else 2
    return 0


def cmd_templates_list(args: argparse.Namespace) -> int:
    with client_from(args) as kt:
        items = kt.templates()
    if args.output == "json":
        print_json([_dump(t) for t in items])
        return 0
    rows = [{"name": t.name, "parameters": ", ".join(str(p.get("name")) for p in t.parameters),
             "task_types": ", ".join(t.task_types), "description": (t.description or "")[:60]} for t in items]
    print_table(rows, ("name", "parameters", "task_types", "description"))
    return 0


def cmd_templates_get(args: argparse.Namespace) -> int:
    with client_from(args) as kt:
        template = kt.template(args.name)
    if args.output == "json":
        print_json(_dump(template))
        return 0
    print(f"{template.name}: {template.description or ''}")
    print_table(template.parameters, ("name", "type", "required", "default", "description"))
    return 0


def cmd_queue(args: argparse.Namespace) -> int:
    with client_from(args) as kt:
        status = kt.queue_status()
    if args.output == "json":
        print_json(_dump(status))
        return 0
    data = _dump(status)
    limit = data.get("max_concurrent")
    print(f"running {data['running']}/{limit if limit is not None else '∞'}   pending {data['pending']}/"
          f"{data.get('max_pending')}   GPU-hours {data.get('monthly_hours_used')}/"
          f"{data.get('monthly_hours_limit') if data.get('monthly_hours_limit') is not None else '∞'}")
    if data.get("pending_tasks"):
        print_table(data["pending_tasks"], ("position", "task_id", "name", "priority", "status",
                                            "estimated_start_time", "waiting_reason"))
    return 0


# --------------------------------------------------------------------------- wiring


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=None, help="API base URL (default $KUBETASK_URL or http://127.0.0.1:8000)")
    common.add_argument("--api-key", default=None, help="API key (default $KUBETASK_API_KEY)")
    common.add_argument("--token", default=None, help="Kubernetes bearer token (default $KUBETASK_TOKEN)")
    common.add_argument("-o", "--output", choices=("table", "json"), default="table",
                        help="output format (default table)")
    return common


def _wait_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout-wait", type=float, default=None, metavar="SECONDS",
                        help="give up waiting after this long (exit 3; default: wait for ever)")
    parser.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                        help="poll interval in seconds (default 1)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="print only the task id (submit); no progress lines on stderr (wait)")


def register(subparsers: Any) -> None:
    """Add ``tasks``, ``templates`` and ``queue`` to the ``kubetask`` command."""
    common = _common()

    tasks = subparsers.add_parser("tasks", help="submit, list, show, cancel, wait for tasks and print their logs",
                                  description="Tasks: submit, list, get, cancel, logs, wait.")
    tsub = tasks.add_subparsers(dest="tasks_command", required=True, metavar="ACTION")

    submit = tsub.add_parser(
        "submit", parents=[common], help="create a task",
        description="Create a task. Say what runs with ONE of --template (+ --param), --task-type "
                    "(+ --model-name, --input), --script, or --image (+ the command after --), e.g. "
                    "kubetask tasks submit --image busybox -- sh -c 'echo hi'.")
    submit.add_argument("--name", help="display name, 1-255 characters (default: from what runs)")
    submit.add_argument("--description", help="free text, at most 4096 characters")
    submit.add_argument("--template", help="TaskTemplate to run (see `kubetask templates list`)")
    submit.add_argument("--param", action="append", metavar="KEY=VALUE",
                        help="template parameter (repeatable; VALUE is parsed as JSON when it can be)")
    submit.add_argument("--parameters", metavar="JSON", help="template parameters as a JSON object (or @file)")
    submit.add_argument("--task-type", help="a model task type, e.g. text_generation (with --model-name, --input)")
    submit.add_argument("--model-name", help="the model a --task-type task runs")
    submit.add_argument("--input", metavar="JSON", help="input_data of a --task-type task, a JSON object (or @file)")
    submit.add_argument("--script", metavar="FILE", help="script file to run ('-' for stdin), at most 1 MiB")
    submit.add_argument("--script-type", choices=("python", "bash"),
                        help="the script's language (default: bash for *.sh, else python)")
    submit.add_argument("--image", help="container image to run; the command goes after --")
    submit.add_argument("--command", dest="shell_command", metavar="SHELL",
                        help="the image's command as ONE shell string, run with /bin/sh -c "
                             "(or give the command as words after --)")
    submit.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND ...",
                        help="the image's command and its arguments, taken whole after --")
    submit.add_argument("--priority", type=int, choices=range(0, 11), metavar="0-10",
                        help="higher runs first, 0-10 (default 5)")
    submit.add_argument("--queue", help="queue name (default 'default')")
    submit.add_argument("--depends-on", nargs="+", metavar="TASK_ID",
                        help="task ids (or names) that must complete first")
    submit.add_argument("--gpus", type=int, choices=range(0, 65), metavar="0-64", help="GPUs, 0-64 (default 0)")
    submit.add_argument("--gpu-type", help="GPU product, e.g. A100 (implies --gpus 1 when --gpus is not given)")
    submit.add_argument("--timeout", type=int, metavar="SECONDS",
                        help="run time limit, 1 .. your tenant's maximum (default 3600)")
    submit.add_argument("--max-retries", type=int, choices=range(0, 21), metavar="0-20",
                        help="retries after a failed run, 0-20 (default 0)")
    submit.add_argument("--scheduled-at", metavar="TIME", help="do not start before this ISO 8601 time")
    submit.add_argument("--annotation", action="append", metavar="KEY=VALUE",
                        help="annotation on the task's pod (repeatable)")
    submit.add_argument("--tag", action="append", help="a tag (repeatable)")
    submit.add_argument("--json", metavar="BODY", help="a whole request body as JSON (or @file); flags override it")
    submit.add_argument("--wait", action="store_true", help="wait for the task to finish and print its result")
    _wait_flags(submit)
    submit.set_defaults(func=_guard(cmd_submit))

    lst = tsub.add_parser("list", parents=[common], help="list your tasks")
    lst.add_argument("--status", help="status word in any case, comma-separated (pending and queued both mean "
                                      "waiting)")
    lst.add_argument("--template", help="only tasks of this template")
    lst.add_argument("--queue", help="only tasks of this queue")
    lst.add_argument("--tag", help="only tasks carrying this tag")
    lst.add_argument("--search", help="free text over name, id, description, template …")
    lst.add_argument("--sort-by", help="created_at (default), priority, status, name …")
    lst.add_argument("--order", choices=("asc", "desc"), help="sort order (default desc for created_at and priority)")
    lst.add_argument("--limit", type=int, default=50, metavar="1-1000", help="tasks per page, 1-1000 (default 50)")
    lst.add_argument("--offset", type=int, metavar="N", help="skip this many tasks (≥ 0)")
    lst.add_argument("--page", type=int, metavar="N", help="page number from 1 (instead of --offset)")
    lst.set_defaults(func=_guard(cmd_list))

    get = tsub.add_parser("get", parents=[common], help="show one task")
    get.add_argument("task_id", help="the task's id (or Kubernetes name)")
    get.set_defaults(func=_guard(cmd_get))

    cancel = tsub.add_parser("cancel", parents=[common], help="cancel a task")
    cancel.add_argument("task_id", help="the task's id (or Kubernetes name)")
    cancel.set_defaults(func=_guard(cmd_cancel))

    logs = tsub.add_parser("logs", parents=[common], help="print a task's log")
    logs.add_argument("task_id", help="the task's id (or Kubernetes name)")
    logs.add_argument("--tail", type=int, metavar="N", help="only the last N lines (0-100000)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until the container ends")
    logs.set_defaults(func=_guard(cmd_logs))

    wait = tsub.add_parser("wait", parents=[common], help="wait for a task and print its result")
    wait.add_argument("task_id", help="the task's id (or Kubernetes name)")
    _wait_flags(wait)
    wait.set_defaults(func=_guard(cmd_wait))

    watch = tsub.add_parser("watch", parents=[common], help="live progress of one task, or of all yours",
                            description="Live updates from the API's event stream (no polling): one task until "
                                        "it ends (exit 0 if it completed, 2 if not), or every task of yours "
                                        "matching the filters until Ctrl-C.")
    watch.add_argument("task_id", nargs="?", help="follow this task only (its id or Kubernetes name)")
    watch.add_argument("--status", help="only tasks in this status (any API's words)")
    watch.add_argument("--tag", help="only tasks with this tag")
    watch.add_argument("--template", help="only tasks of this template")
    watch.add_argument("--no-snapshot", action="store_true", help="only changes, not the tasks as they are now")
    watch.add_argument("--timeout-wait", type=float, default=None, metavar="SECONDS",
                       help="give up after this long (exit 3; default: watch for ever)")
    watch.set_defaults(func=_guard(cmd_watch))

    templates = subparsers.add_parser("templates", help="list task templates and show one",
                                      description="Task templates: list, get.")
    tpl = templates.add_subparsers(dest="templates_command", required=True, metavar="ACTION")
    tlist = tpl.add_parser("list", parents=[common], help="list the templates and their parameters")
    tlist.set_defaults(func=_guard(cmd_templates_list))
    tget = tpl.add_parser("get", parents=[common], help="show a template's parameters")
    tget.add_argument("name", help="the template's name")
    tget.set_defaults(func=_guard(cmd_templates_get))

    queue = subparsers.add_parser("queue", parents=[common], help="your queue status and limits")
    queue.set_defaults(func=_guard(cmd_queue))


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point (``python -m kubetask.sdk.cli``)."""
    parser = argparse.ArgumentParser(prog="kubetask")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    func: Handler = args.func
    return func(args)


if __name__ == "__main__":
    sys.exit(main())
