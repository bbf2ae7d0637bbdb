"""The rendered Argo Workflow, read as the local runner executes it: the very document `workflow
render` prints and a cluster would run, not a second reading of `workflows.dag`.

From the document: the entrypoint DAG's tasks (order, `depends`, `arguments`), each task's template
(container args, declared inputs and outputs, retryStrategy, suspend), and the onExit steps with their
`when`. Parameters resolve by Argo's rules (workflows.argo.scope): a task's `arguments` see the
globals and its ancestors' `tasks.<T>.outputs.parameters.*`; a template's container args see the
globals and its own `inputs.parameters.*`; `workflow.status` exists only under onExit. A reference
that does not resolve is an error here, as it is for Argo. The resolved container args are parsed
by `canaryflow workflow step`'s own parser (workflows.steps.command).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from workflows.argo.scope import depends_names
from workflows.dag import DagNode, NodeKind, RetryPolicy
from workflows.steps.base import StepInput
from workflows.steps.command import StepArgsError, parse_step_argv, step_input

_TAG = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)s$")
DISPLAY_NAME = "workflows.argoproj.io/display-name"


class ArtifactError(ValueError):
    """The Workflow cannot run as rendered (what Argo would refuse); the message says where."""


def resolve(text: str, scope: Mapping[str, str], where: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in scope:
            raise ArtifactError(f"{where}: failed to resolve {{{{{name}}}}}")
        return scope[name]

    return _TAG.sub(value, text)


def _when(expression: str, where: str) -> bool:
    """Argo's `when` for the forms rendered here: `A == B` / `A != B` on resolved strings."""
    for operator in ("!=", "=="):
        left, found, right = expression.partition(operator)
        if found:
            equal = left.strip() == right.strip()
            return not equal if operator == "!=" else equal
    raise ArtifactError(f"{where}: when {expression!r} is not `A == B` or `A != B`")


def _seconds(text: str | None, default: float) -> float:
    match = _DURATION.match(text or "")
    return float(match.group(1)) if match else default


def _retry(template: dict[str, Any]) -> RetryPolicy | None:
    strategy = template.get("retryStrategy")
    if strategy is None:
        return None
    backoff = strategy.get("backoff", {})
    return RetryPolicy(
        limit=int(strategy.get("limit", 0)),
        backoff_s=_seconds(backoff.get("duration"), 5.0),
        factor=int(backoff.get("factor", 1)),
        max_backoff_s=_seconds(backoff.get("cap"), 60.0),
    )


@dataclass(frozen=True)
class Task:
    """A DAG task (or an onExit step) and the template it calls, as rendered."""

    name: str
    template: dict[str, Any]
    parents: tuple[str, ...]
    arguments: dict[str, str]
    when: str | None = None

    @property
    def kind(self) -> NodeKind:
        if "suspend" in self.template:
            return "suspend"
        return "wait" if "--poll-interval" in self.template.get("container", {}).get("args", []) else "action"


@dataclass(frozen=True)
class Invocation:
    node: DagNode
    step_input: StepInput


class WorkflowArtifact:
    def __init__(self, doc: dict[str, Any]) -> None:
        spec = doc["spec"]
        self.doc = doc
        self.templates: dict[str, dict[str, Any]] = {t["name"]: t for t in spec["templates"]}
        arguments = spec.get("arguments", {}).get("parameters", [])
        self.parameters = {p["name"]: str(p["value"]) for p in arguments}
        entry = self.templates[spec["entrypoint"]]
        self.tasks = [self._task(t, t.get("depends", "")) for t in entry["dag"]["tasks"]]
        handler = self.templates[spec["onExit"]]
        self.exit_tasks = [self._task(s, "", s.get("when")) for group in handler["steps"] for s in group]

    def _task(self, raw: dict[str, Any], depends: str, when: str | None = None) -> Task:
        arguments = {p["name"]: str(p["value"]) for p in raw.get("arguments", {}).get("parameters", [])}
        parents = tuple(sorted(depends_names(depends)))
        return Task(raw["name"], self.templates[raw["template"]], parents, arguments, when)

    def globals(self, status: str | None, failures: str = "null") -> dict[str, str]:
        """Argo's globals; `workflow.status` and `workflow.failures` only for the exit handler."""
        scope = {f"workflow.parameters.{k}": v for k, v in self.parameters.items()}
        scope["workflow.name"] = self.doc["metadata"]["name"]
        scope["workflow.namespace"] = self.doc["metadata"].get("namespace", "")
        if status is not None:
            scope["workflow.status"] = status
            scope["workflow.failures"] = failures
        return scope

    def ancestors(self, task: Task) -> set[str]:
        by_name = {t.name: t for t in self.tasks}
        found: set[str] = set()
        todo = list(task.parents)
        while todo:
            name = todo.pop()
            if name not in found:
                found.add(name)
                todo.extend(by_name[name].parents)
        return found

    def runs(self, task: Task, status: str) -> bool:
        """An onExit step's `when`, resolved with `workflow.status` (no `when`: it always runs)."""
        if task.when is None:
            return True
        return _when(resolve(task.when, self.globals(status), f"{task.name}.when"), f"{task.name}.when")

    def invocation(
        self,
        task: Task,
        outputs: Mapping[str, Mapping[str, str]],
        status: str | None = None,
        failures: str = "null",
        **extra: Any,
    ) -> Invocation:
        """What the task's container would run, resolved and parsed; `outputs`: finished tasks' outputs."""
        scope = self.globals(status, failures)
        for ancestor in self.ancestors(task):
            prefix = f"tasks.{ancestor}.outputs.parameters"
            scope |= {f"{prefix}.{k}": v for k, v in outputs.get(ancestor, {}).items()}
            for param in self.templates[self._template_of(ancestor)].get("outputs", {}).get("parameters", []):
                # valueFrom.default: an output the step did not write reads as its default, as in Argo.
                key = f"{prefix}.{param['name']}"
                scope.setdefault(key, str(param.get("valueFrom", {}).get("default", "")))
        where = f"{task.name}.arguments"
        inputs = {name: resolve(value, scope, where) for name, value in task.arguments.items()}
        template = task.template
        declared = [p["name"] for p in template.get("inputs", {}).get("parameters", [])]
        missing = [name for name in declared if name not in inputs]
        if missing:
            raise ArtifactError(f"{task.name}: inputs.parameters.{missing[0]} is not passed")
        leaf = self.globals(status, failures) | {f"inputs.parameters.{k}": inputs[k] for k in declared}
        node = DagNode(
            id=task.name,
            step=task.name,
            kind=task.kind,
            display_name=template.get("annotations", {}).get(DISPLAY_NAME, task.name),
            depends=task.parents,
            outputs=tuple(p["name"] for p in template.get("outputs", {}).get("parameters", [])),
            retry=_retry(template),
        )
        if task.kind == "suspend":
            return Invocation(node, StepInput.model_validate({"spec": self._spec_from_parameters()}))
        container = template["container"]
        args = [resolve(arg, leaf, f"templates.{template['name']}") for arg in container.get("args", [])]
        if container.get("command") != ["canaryflow"] or args[:2] != ["workflow", "step"]:
            raise ArtifactError(f"{task.name}: not a `canaryflow workflow step` container")
        try:
            call = parse_step_argv(args[2:])
            parsed = step_input(call, **extra)
        except StepArgsError as exc:
            raise ArtifactError(f"{task.name}: canaryflow workflow step refuses its args: {exc}") from None
        node = node.model_copy(update={"step": call.name, "params": dict(parsed.params)})
        return Invocation(node, parsed)

    def _template_of(self, task_name: str) -> str:
        return next(str(t.template["name"]) for t in self.tasks if t.name == task_name)

    def _spec_from_parameters(self) -> dict[str, str]:
        from workflows.argo.render import PARAMETERS

        return {field: self.parameters[param] for param, field in PARAMETERS.items()}


ArtifactFor = Callable[..., WorkflowArtifact]
