"""The built-in TaskTemplates (kubetask/resources/tasktemplates/).

They must be valid TaskTemplates, match their generator and the chart copy, keep every
`{{param}}` inside env values (no parameter ever reaches a shell or Python as code),
and their embedded programs must actually work: the script wrappers are run here
with the real interpreters (and fake `ollama`/`transformers` where the real ones need
a GPU), writing their JSON result to a file instead of /dev/termination-log.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "deploy"))
import kt_deploy as kt

from kubetask.core import models

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
SEED_004_TYPES = ("text_generation", "image_generation", "text_to_speech", "image_to_text")
EXPECTED = {
    "ollama-inference",
    "git-script-execution",
    "python-script",
    "bash-script",
    *(t.replace("_", "-") for t in SEED_004_TYPES),
}


def _load(name: str) -> dict[str, Any]:
    docs = kt.load_all((kt.TEMPLATES_DIR / f"{name}.yaml").read_text())
    assert len(docs) == 1
    return docs[0]


def _all() -> list[dict[str, Any]]:
    return [_load(name) for name in sorted(EXPECTED)]


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("kt_gen_tasktemplates", kt.REPO / "hack" / "gen-tasktemplates.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _strings(value: Any, path: str = "") -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [s for i, v in enumerate(value) for s in _strings(v, f"{path}[{i}]")]
    return []


def render_env(tpl: dict[str, Any], params: dict[str, Any]) -> dict[str, str]:
    """Substitute placeholders as the contract says (objects/arrays as JSON, defaults applied)."""
    declared = {p["name"]: p for p in tpl["spec"]["parameters"]}
    values = {n: p.get("default", "") for n, p in declared.items()} | params
    missing = [n for n, p in declared.items() if p.get("required") and n not in params]
    assert not missing, missing

    def text(match: re.Match[str]) -> str:
        value = values[match.group(1)]
        return value if isinstance(value, str) else json.dumps(value)

    return {e["name"]: PLACEHOLDER.sub(text, e.get("value", "")) for e in tpl["spec"]["podTemplate"]["env"]}


def run_template(
    tpl: dict[str, Any], params: dict[str, Any], tmp_path: Path, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], Any]:
    """Run the template's command locally; returns the process and the parsed result."""
    result_file = tmp_path / "termination-log"
    result_file.write_text("")
    command = list(tpl["spec"]["podTemplate"]["command"])
    if command[0] == "python":
        command[0] = sys.executable
    env = {"PATH": os.environ["PATH"], **render_env(tpl, params), "KT_RESULT_PATH": str(result_file)}
    env["HOME"] = str(tmp_path)
    env.update(extra_env or {})
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    raw = result_file.read_text()
    assert raw, f"no result written\nstdout:{proc.stdout}\nstderr:{proc.stderr}"
    assert len(raw.encode()) <= 4096, "result is longer than the kubelet's termination-message limit"
    return proc, json.loads(raw)


# --------------------------------------------------------------------------- static checks


def test_expected_templates_present() -> None:
    names = {p.stem for p in kt.TEMPLATES_DIR.glob("*.yaml")}
    assert names == EXPECTED
    for name in names:
        assert _load(name)["metadata"]["name"] == name


def test_files_match_generator() -> None:
    rendered = _generator().render()
    assert set(rendered) == {f"{n}.yaml" for n in EXPECTED}
    for name, text in rendered.items():
        assert (kt.TEMPLATES_DIR / name).read_text() == text, f"{name} is stale: run make templates"


def test_chart_copies_are_byte_identical() -> None:
    chart = {p.name for p in kt.CHART_TEMPLATES_COPY.glob("*.yaml")}
    assert chart == {f"{n}.yaml" for n in EXPECTED}
    for name in chart:
        assert (kt.CHART_TEMPLATES_COPY / name).read_bytes() == (kt.TEMPLATES_DIR / name).read_bytes()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_template_is_valid(name: str) -> None:
    """The file and the model agree (the real apiserver accepts it: tests/component/deploy)."""
    tpl = _load(name)
    assert (tpl["apiVersion"], tpl["kind"]) == (f"{kt.GROUP}/v1alpha1", "TaskTemplate")
    assert "namespace" not in tpl["metadata"]
    spec = models.TaskTemplateSpec.model_validate(tpl["spec"])
    assert spec.pod_template["image"] == tpl["spec"]["defaults"]["image"]
    assert tpl["spec"]["podTemplate"].get("terminationMessagePath", "/dev/termination-log") == ("/dev/termination-log")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_placeholders_only_in_env_values(name: str) -> None:
    tpl = _load(name)
    declared = {p["name"] for p in tpl["spec"]["parameters"]}
    pod = tpl["spec"]["podTemplate"]
    env_values = {f".env[{i}].value" for i in range(len(pod.get("env", [])))}
    used = set()
    for path, value in _strings(pod):
        found = PLACEHOLDER.findall(value)
        if path in env_values:
            used.update(found)
            if found:
                assert PLACEHOLDER.fullmatch(value), f"{path}: a placeholder must be the whole env value"
        else:
            assert "{{" not in value, f"{name}{path}: placeholder outside an env value"
    assert used <= declared, used - declared
    assert used == declared, f"declared but never passed to the container: {declared - used}"
    for path, value in _strings(tpl["spec"].get("steps", [])):
        assert set(PLACEHOLDER.findall(value)) <= declared, path


def test_placeholder_check_can_fail() -> None:
    bad = _load("bash-script")
    bad["spec"]["podTemplate"]["command"][-1] += '\necho "{{script}}"'
    with pytest.raises(AssertionError):
        for path, value in _strings(bad["spec"]["podTemplate"]):
            if not path.startswith(".env"):
                assert "{{" not in value


@pytest.mark.parametrize(
    ("name", "required", "optional"),
    [
        ("ollama-inference", ["model", "prompt"], ["system_prompt"]),
        ("git-script-execution", ["repo_url", "script_path", "output_path"], ["ref"]),
        ("python-script", ["script"], []),
        ("bash-script", ["script"], []),
        *((t.replace("_", "-"), ["model_name", "input_data"], ["output_path"]) for t in SEED_004_TYPES),
    ],
)
def test_parameters(name: str, required: list[str], optional: list[str]) -> None:
    params = _load(name)["spec"]["parameters"]
    assert [p["name"] for p in params if p.get("required")] == required
    assert [p["name"] for p in params if not p.get("required")] == optional
    for p in params:
        assert p.get("description")
        if not p.get("required"):
            assert "default" in p, f"optional {p['name']} needs a default so placeholders always render"


def test_ollama_matches_seed_002() -> None:
    spec = _load("ollama-inference")["spec"]
    assert spec["description"] == "Run inference with specified model and prompt"
    assert spec["steps"] == [
        {"type": "ollama_generate", "model": "{{model}}", "prompt": "{{prompt}}", "system": "{{system_prompt}}"}
    ]
    git = _load("git-script-execution")["spec"]
    assert git["description"] == "Clone repository, run script, store results"


@pytest.mark.parametrize("task_type", SEED_004_TYPES)
def test_seed_004_task_types(task_type: str) -> None:
    spec = _load(task_type.replace("_", "-"))["spec"]
    assert spec["taskTypes"] == [{"name": task_type, "modelParameter": "model_name", "inputParameter": "input_data"}]
    input_param = next(p for p in spec["parameters"] if p["name"] == "input_data")
    assert input_param["type"] == "object"


def test_task_types_are_unique_and_aliases_empty() -> None:
    names = [t["name"] for tpl in _all() for t in tpl["spec"].get("taskTypes", [])]
    assert sorted(names) == sorted(SEED_004_TYPES)
    assert _load("python-script")["spec"]["aliases"] == []


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_gpu_defaults_and_pinned_images(name: str) -> None:
    spec = _load(name)["spec"]
    gpu = name == "ollama-inference" or name.replace("-", "_") in SEED_004_TYPES
    assert spec["defaults"]["resources"]["gpus"] == (1 if gpu else 0)
    image = spec["podTemplate"]["image"]
    repo, _, tag = image.rpartition(":")
    assert repo and tag and tag != "latest" and re.search(r"\d", tag), f"{image} is not pinned"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_embedded_programs_parse(name: str) -> None:
    command = _load(name)["spec"]["podTemplate"]["command"]
    if command[0] == "python":
        compile(command[2], f"<{name}>", "exec")
    else:
        assert command[1] == "-c"
        bash = shutil.which("bash")
        if bash is None:
            pytest.skip("bash is not installed")
        proc = subprocess.run([bash, "-n", "-c", command[2]], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


# --------------------------------------------------------------------------- running them


def test_python_script_result_variable(tmp_path: Path) -> None:
    script = 'import sys\nprint("hi")\nresult = {"answer": 42, "argv": sys.argv[:0]}\n'
    proc, result = run_template(_load("python-script"), {"script": script}, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "hi" in proc.stdout
    assert result == {"result": {"answer": 42, "argv": []}, "exit_code": 0}


def test_python_script_failure_and_output_tail(tmp_path: Path) -> None:
    script = 'print("x" * 5000)\nprint("before failing")\nraise SystemExit(3)\n'
    proc, result = run_template(_load("python-script"), {"script": script}, tmp_path)
    assert proc.returncode == 3
    assert result["exit_code"] == 3 and result["output"].endswith("before failing\n")


def test_python_script_own_result_wins(tmp_path: Path) -> None:
    script = 'import os\nopen(os.environ["KT_RESULT_PATH"], "w").write(\'{"mine": true}\')\nresult = 1\n'
    _, result = run_template(_load("python-script"), {"script": script}, tmp_path)
    assert result == {"mine": True}


def test_python_script_large_result_is_truncated(tmp_path: Path) -> None:
    script = 'result = "y" * 100000\n'
    _, result = run_template(_load("python-script"), {"script": script}, tmp_path)
    assert result.get("truncated") is True


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_script(tmp_path: Path) -> None:
    script = 'echo "quote \\" and tab\t and $((6*7))"\nexit 4\n'
    proc, result = run_template(_load("bash-script"), {"script": script}, tmp_path)
    assert proc.returncode == 4
    assert result == {"exit_code": 4, "output": 'quote " and tab\t and 42'}  # $(...) drops the final newline


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_ollama_inference_with_fake_ollama(tmp_path: Path) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    log = tmp_path / "ollama-calls"
    fake = fake_bin / "ollama"
    fake.write_text(
        "#!/bin/bash\n"
        f'printf "%s\\n" "$*" >> {log}\n'
        'case "$1" in\n'
        "  serve) sleep 30 ;;\n"
        '  run) printf "answer: %s" "$3" ;;\n'
        '  create) cat "$4" >> ' + str(log) + " ;;\n"
        "esac\n"
    )
    fake.chmod(0o755)
    prompt = 'Say "hi"; $(touch pwned) `touch pwned2`\nsecond line'
    params = {"model": "llama3.1:8b", "prompt": prompt, "system_prompt": "Be brief."}
    proc, result = run_template(
        _load("ollama-inference"), params, tmp_path, {"PATH": f"{fake_bin}:{os.environ['PATH']}"}
    )
    assert proc.returncode == 0, proc.stderr
    assert result["output"] == f"answer: {prompt}"
    assert result["model_name"] == "llama3.1:8b" and result["truncated"] is False
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()
    calls = log.read_text()
    assert "pull llama3.1:8b" in calls and 'SYSTEM """Be brief."""' in calls and "FROM llama3.1:8b" in calls


def _git(*args: str, cwd: Path) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@e",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@e",
    }
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_script_execution(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "jobs").mkdir(parents=True)
    (repo / "jobs" / "run.py").write_text(
        "import json, os\nprint('running')\nopen(os.environ['KT_OUTPUT_PATH'], 'w').write(json.dumps({'rows': 3}))\n"
    )
    _git("init", "-q", "-b", "main", cwd=repo)
    _git("add", ".", cwd=repo)
    _git("commit", "-q", "-m", "init", cwd=repo)
    _git("tag", "v1", cwd=repo)
    params = {
        "repo_url": str(repo),
        "script_path": "jobs/run.py",
        "output_path": str(tmp_path / "out/o.json"),
        "ref": "v1",
    }
    proc, result = run_template(
        _load("git-script-execution"), params, tmp_path, {"KT_WORKDIR": str(tmp_path / "clone")}
    )
    assert proc.returncode == 0, proc.stderr
    assert result["exit_code"] == 0 and result["output"] == "running\n"
    assert json.loads(result["output_content"]) == {"rows": 3}
    assert len(result["commit"]) == 40


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"repo_url": "--upload-pack=touch pwned", "script_path": "a.py"}, "repo_url"),
        ({"repo_url": "$(touch pwned)", "script_path": "a.py"}, "cannot clone"),
        ({"repo_url": "/nonexistent", "script_path": "../../etc/passwd"}, "script_path"),
    ],
)
def test_git_script_rejects_bad_input(tmp_path: Path, params: dict[str, str], message: str) -> None:
    params = {**params, "output_path": "out.json"}
    proc, result = run_template(
        _load("git-script-execution"), params, tmp_path, {"KT_WORKDIR": str(tmp_path / "clone")}
    )
    assert proc.returncode != 0
    assert message in result["error"]
    assert not (tmp_path / "pwned").exists()


def test_text_generation_with_fake_transformers(tmp_path: Path) -> None:
    fake = tmp_path / "fake"
    (fake / "transformers").mkdir(parents=True)
    (fake / "transformers" / "__init__.py").write_text(
        "def pipeline(task, model, **kw):\n"
        "    assert task == 'text-generation'\n"
        "    return lambda prompt, **o: [{'generated_text': f'{model}|{prompt}|{o[\"max_new_tokens\"]}'}]\n"
    )
    params = {"model_name": "microsoft/DialoGPT-medium", "input_data": {"prompt": "Hello world!", "max_new_tokens": 8}}
    proc, result = run_template(
        _load("text-generation"), params, tmp_path, {"PYTHONPATH": str(fake), "KT_PIP_PACKAGES": ""}
    )
    assert proc.returncode == 0, proc.stderr
    assert result["generated_text"] == "microsoft/DialoGPT-medium|Hello world!|8"
    assert result["task_type"] == "text_generation" and result["model_name"] == "microsoft/DialoGPT-medium"


def test_text_generation_reports_bad_input(tmp_path: Path) -> None:
    params = {"model_name": "m", "input_data": {"nothing": 1}}
    proc, result = run_template(_load("text-generation"), params, tmp_path, {"KT_PIP_PACKAGES": ""})
    assert proc.returncode == 2
    assert "prompt" in result["error"]


def test_seed_004_missing_library_is_reported(tmp_path: Path) -> None:
    params = {"model_name": "m", "input_data": {"image_url": "http://127.0.0.1:9/x.png"}}
    proc, result = run_template(
        _load("image-to-text"), params, tmp_path, {"KT_PIP_PACKAGES": "", "PYTHONPATH": str(tmp_path)}
    )
    assert proc.returncode == 1
    assert result["error"] and result["task_type"] == "image_to_text"
