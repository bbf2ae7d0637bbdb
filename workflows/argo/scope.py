"""Argo's variable scope, checked on a rendered Workflow or WorkflowTemplate (a plain document).

Argo's JSON schema cannot see where a `{{...}}` stands; its validator refuses a Workflow whose
variable is out of scope ("failed to resolve"), and only on the cluster. This is the same rule,
run here on every render (docs/variables.md of argoproj/argo-workflows, and workflow/validate):

- every template: the globals (`workflow.name`, `workflow.parameters.<declared>`, ...), its own
  `inputs.parameters.<declared>`; a container/script also `pod.name`, `node.name`, `retries` (with a
  retryStrategy) and the paths of its own outputs;
- templates called from `spec.onExit` (and only those): `workflow.status`, `workflow.failures`;
- a DAG task's own fields (`arguments`, `when`, `depends`, `withParam`, ...): `tasks.<T>.*` of its
  ancestors (stricter than Argo, which lets any task of the DAG through: a non-ancestor's outputs may
  not exist yet when the task starts); a steps template's step: `steps.<S>.*` of earlier groups;
- every input parameter a template declares without a default is passed by each task/step calling it,
  every argument passed is declared, and every argument has a value.

Pure: a document in, a list of problems out (empty: in scope everywhere). Tags that do not start with
one of Argo's variable roots are not variables to Argo either and are left alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

_TAG = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
# Argo's GlobalVarValidWorkflowVariablePrefix, plus `node.` and `retries` (documented variables).
_ROOTS = ("item", "steps.", "inputs.", "outputs.", "pod.", "workflow.", "tasks.", "node.", "retries")
_LEAF_KINDS = ("container", "script", "resource", "suspend", "data", "http", "plugin", "containerSet")
_POD_KINDS = ("container", "script", "containerSet")
_NODE_FIELDS = ("status", "exitCode", "startedAt", "finishedAt", "id", "ip", "hostNodeName")
_EXIT_ONLY = ("workflow.status", "workflow.failures")
_DEPENDS_TOKEN = re.compile(r"[A-Za-z0-9][-A-Za-z0-9]*(?:\.[A-Za-z]+)?")
_DEPENDS_WORDS = frozenset({"&&", "||", "!"})


@dataclass(frozen=True)
class ScopeProblem:
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def tags(value: Any) -> list[str]:
    """The `{{...}}` tags (stripped) anywhere in a document value, in order."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return [match.strip() for match in _TAG.findall(text)]


def _is_variable(tag: str) -> bool:
    return tag.startswith(_ROOTS) or tag.startswith("=")


def _globals(doc: dict[str, Any]) -> set[str]:
    spec, meta = doc.get("spec", {}), doc.get("metadata", {})
    names = {
        "workflow.name",
        "workflow.namespace",
        "workflow.mainEntrypoint",
        "workflow.serviceAccountName",
        "workflow.uid",
        "workflow.creationTimestamp",
        "workflow.creationTimestamp.RFC3339",
        "workflow.duration",
        "workflow.annotations.json",
        "workflow.labels.json",
    }
    params = spec.get("arguments", {}).get("parameters", [])
    if params:
        names |= {"workflow.parameters", "workflow.parameters.json"}
    names |= {f"workflow.parameters.{p['name']}" for p in params}
    names |= {f"workflow.annotations.{k}" for k in meta.get("annotations", {})}
    names |= {f"workflow.labels.{k}" for k in meta.get("labels", {})}
    if "priority" in spec:
        names.add("workflow.priority")
    return names


def _kind(template: dict[str, Any]) -> str:
    for kind in ("dag", "steps", *_LEAF_KINDS):
        if kind in template:
            return kind
    return "unknown"


def _template_scope(template: dict[str, Any], globals_: set[str]) -> set[str]:
    scope = set(globals_)
    inputs = template.get("inputs", {})
    params = inputs.get("parameters", [])
    scope |= {f"inputs.parameters.{p['name']}" for p in params}
    if params:
        scope.add("inputs.parameters")
    for art in inputs.get("artifacts", []):
        scope |= {f"inputs.artifacts.{art['name']}", f"inputs.artifacts.{art['name']}.path"}
    kind = _kind(template)
    if kind in _POD_KINDS:
        scope |= {"pod.name", "node.name"}
        if "retryStrategy" in template:
            scope.add("retries")
        outputs = template.get("outputs", {})
        for param in outputs.get("parameters", []):
            if param.get("valueFrom", {}).get("path"):
                scope.add(f"outputs.parameters.{param['name']}.path")
        for art in outputs.get("artifacts", []):
            if art.get("path"):
                scope.add(f"outputs.artifacts.{art['name']}.path")
    return scope


def _node_scope(prefix: str, called: dict[str, Any] | None) -> set[str]:
    """What `tasks.<T>` / `steps.<S>` offers to later tasks: its status and its template's outputs."""
    scope = {f"{prefix}.{field}" for field in _NODE_FIELDS}
    if called is None:
        return scope
    if _kind(called) in ("container", "script"):
        scope.add(f"{prefix}.outputs.result")
    outputs = called.get("outputs", {})
    scope |= {f"{prefix}.outputs.parameters.{p['name']}" for p in outputs.get("parameters", [])}
    scope |= {f"{prefix}.outputs.artifacts.{a['name']}" for a in outputs.get("artifacts", [])}
    return scope


def _out_of_scope(tag: str, scope: set[str], *, leaf: bool) -> str | None:
    if tag.startswith("="):
        return f"{{{{{tag}}}}}: expression tags are not checked here; use a simple tag"
    if tag in scope or ((tag == "item" or tag.startswith("item.")) and "item" in scope):
        return None
    if tag in _EXIT_ONLY:
        return f"{{{{{tag}}}}}: resolves only in templates called from spec.onExit"
    if tag.startswith(("tasks.", "steps.")) and leaf:
        return (
            f"{{{{{tag}}}}}: tasks.*/steps.* resolve only in a DAG task's or step's own fields; "
            "pass the value as the task's arguments into the template's inputs.parameters"
        )
    if tag.startswith("inputs.parameters."):
        return f"{{{{{tag}}}}}: the template declares no such input parameter"
    return f"{{{{{tag}}}}}: not in scope here"


def _check_tags(where: str, value: Any, scope: set[str], *, leaf: bool) -> list[ScopeProblem]:
    problems = []
    for tag in tags(value):
        if _is_variable(tag):
            reason = _out_of_scope(tag, scope, leaf=leaf)
            if reason:
                problems.append(ScopeProblem(where, reason))
    return problems


def depends_names(expression: str) -> set[str]:
    """Task names in a `depends` expression (`a && (b.Succeeded || c.Failed)`)."""
    cleaned = expression.replace("(", " ").replace(")", " ").replace("!", " ")
    names = set()
    for word in cleaned.split():
        if word in _DEPENDS_WORDS:
            continue
        if _DEPENDS_TOKEN.fullmatch(word):
            names.add(word.split(".")[0])
    return names


def _check_call(
    where: str, holder: dict[str, Any], templates: dict[str, dict[str, Any]]
) -> list[ScopeProblem]:
    """The called template exists; its inputs without a default are passed; every argument is declared."""
    name = holder.get("template")
    called = templates.get(name or "")
    if called is None:
        return [ScopeProblem(where, f"template {name!r} is not defined")]
    passed = holder.get("arguments", {}).get("parameters", [])
    problems = [
        ScopeProblem(where, f"arguments.parameters.{p['name']}: has no value")
        for p in passed
        if "value" not in p and "valueFrom" not in p
    ]
    declared = {p["name"]: p for p in called.get("inputs", {}).get("parameters", [])}
    given = {p["name"] for p in passed}
    problems += [
        ScopeProblem(where, f"inputs.parameters.{n} of template {name!r} is not passed")
        for n, p in declared.items()
        if n not in given and "value" not in p and "default" not in p
    ]
    problems += [
        ScopeProblem(where, f"passes {n!r}, which template {name!r} does not declare as an input")
        for n in sorted(given - set(declared))
    ]
    return problems


def _reachable(start: str | None, templates: dict[str, dict[str, Any]]) -> set[str]:
    seen: set[str] = set()
    todo = [start] if start else []
    while todo:
        name = todo.pop()
        if name in seen or name not in templates:
            continue
        seen.add(name)
        template = templates[name]
        for task in template.get("dag", {}).get("tasks", []):
            todo.append(task.get("template", ""))
        for group in template.get("steps", []) or []:
            todo.extend(step.get("template", "") for step in group)
    return seen


def _task_fields(task: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in task.items() if k not in ("name", "template")}


def _check_dag(
    where: str, template: dict[str, Any], scope: set[str], templates: dict[str, Any]
) -> list[ScopeProblem]:
    tasks = {t["name"]: t for t in template["dag"].get("tasks", [])}
    parents = {
        name: depends_names(task.get("depends", "")) | set(task.get("dependencies", []))
        for name, task in tasks.items()
    }
    problems: list[ScopeProblem] = []
    for name, task in tasks.items():
        at = f"{where}.dag.tasks.{name}"
        unknown = parents[name] - set(tasks)
        problems += [ScopeProblem(at, f"depends on {u!r}, which is not a task of this DAG") for u in unknown]
        ancestors, todo = set(), list(parents[name] & set(tasks))
        while todo:
            parent = todo.pop()
            if parent not in ancestors:
                ancestors.add(parent)
                todo.extend(parents[parent] & set(tasks))
        if name in ancestors:
            problems.append(ScopeProblem(at, "depends on itself (a cycle)"))
        task_scope = scope | {"tasks.name"}
        for ancestor in ancestors:
            task_scope |= _node_scope(f"tasks.{ancestor}", templates.get(tasks[ancestor].get("template", "")))
        if any(k in task for k in ("withItems", "withParam", "withSequence")):
            task_scope.add("item")
        problems += _check_tags(at, _task_fields(task), task_scope, leaf=False)
        problems += _check_call(at, task, templates)
    return problems


def _check_steps(
    where: str, template: dict[str, Any], scope: set[str], templates: dict[str, Any]
) -> list[ScopeProblem]:
    problems: list[ScopeProblem] = []
    earlier: set[str] = set()
    for index, group in enumerate(template.get("steps", []) or []):
        added: set[str] = set()
        for step in group:
            at = f"{where}.steps[{index}].{step.get('name')}"
            step_scope = scope | earlier | {"steps.name"}
            if any(k in step for k in ("withItems", "withParam", "withSequence")):
                step_scope.add("item")
            problems += _check_tags(at, _task_fields(step), step_scope, leaf=False)
            problems += _check_call(at, step, templates)
            added |= _node_scope(f"steps.{step.get('name')}", templates.get(step.get("template", "")))
        earlier |= added
    return problems


def check_scope(doc: dict[str, Any]) -> list[ScopeProblem]:
    """Every `{{...}}` of a Workflow/WorkflowTemplate in scope where it stands, and every call complete."""
    kind = doc.get("kind")
    if kind not in ("Workflow", "WorkflowTemplate"):
        return []
    spec = doc.get("spec", {})
    problems: list[ScopeProblem] = []
    for param in spec.get("arguments", {}).get("parameters", []):
        problems += _check_tags(f"spec.arguments.parameters.{param['name']}", param, set(), leaf=False)
    if "workflowTemplateRef" in spec:
        if spec.get("templates"):
            problems.append(ScopeProblem("spec.templates", "a Workflow with workflowTemplateRef has none"))
        return problems
    templates = {t["name"]: t for t in spec.get("templates", [])}
    for name in (spec.get("entrypoint"), spec.get("onExit")):
        if name and name not in templates:
            problems.append(ScopeProblem("spec", f"template {name!r} is not defined"))
    globals_ = _globals(doc)
    main = _reachable(spec.get("entrypoint"), templates)
    on_exit = _reachable(spec.get("onExit"), templates) - main
    for name, template in templates.items():
        where = f"templates.{name}"
        extra = set(_EXIT_ONLY) if name in on_exit else set()
        scope = _template_scope(template, globals_ | extra)
        kind = _kind(template)
        if kind == "dag":
            own = {k: v for k, v in template.items() if k != "dag"}
            problems += _check_tags(where, own, scope, leaf=False)
            problems += _check_dag(where, template, scope, templates)
        elif kind == "steps":
            own = {k: v for k, v in template.items() if k != "steps"}
            problems += _check_tags(where, own, scope, leaf=False)
            problems += _check_steps(where, template, scope, templates)
        else:
            problems += _check_tags(where, template, scope, leaf=True)
    return problems


def check_all(docs: Iterable[dict[str, Any]]) -> list[ScopeProblem]:
    """Problems of every Argo document among `docs` (others, e.g. RBAC, are skipped)."""
    return [problem for doc in docs for problem in check_scope(doc)]
