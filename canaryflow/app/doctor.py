"""`canaryflow doctor`: will a rollout work on this cluster? Asked of the cluster itself, read-only.

Every check is one call the Kubernetes API answers with its own rules (nothing is guessed from
names): the CRDs the rendered manifests and the rollout Workflow need are installed and Established;
SelfSubjectAccessReview allows every verb the rollout uses; some node offers the GPU resource the
Deployments request; and a server-side dry-run apply (`dryRun=All`) of the rendered manifests and the
Argo install passes the API server's admission and schema checks without changing anything.

What is needed comes from the parts that need it, not from a list kept here: CRDs per traffic mode
from the router registry (`gitops.traffic.ROUTERS[mode].crds`), the objects a router reads live from
the same registry (`live_objects`), the Argo verbs from the
controller's Role in `workflows.argo.install`, the manifests from `gitops.render`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from gitops.gitops_settings import GitOpsSettings
from gitops.render import render
from gitops.resources import namespace as target_namespace
from gitops.traffic import traffic_router
from gitops.yamlio import load_yaml
from policies.model import Policy
from workflows.argo.install import CONTROLLER_ACCOUNT, install_manifests, rbac_manifests
from workflows.workflow_settings import WorkflowSettings

# CRDs every mode needs, and who needs them (the router adds its own).
BASE_CRDS: dict[str, str] = {
    "applications.argoproj.io": "Argo CD (https://argo-cd.readthedocs.io/en/stable/getting_started/)",
    "podmonitors.monitoring.coreos.com": "the Prometheus Operator CRDs (prometheus-operator bundle.yaml)",
    "workflows.argoproj.io": "Argo Workflows (https://argo-workflows.readthedocs.io/en/latest/quick-start/)",
    "workflowtemplates.argoproj.io": "Argo Workflows (the same install)",
}
FIELD_MANAGER = "canaryflow-doctor"


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str = ""
    fix: str = ""

    def line(self) -> str:
        text = f"{'PASS' if self.ok else 'FAIL'}  {self.name}"
        if self.detail:
            text += f": {self.detail}"
        if not self.ok and self.fix:
            text += f" — fix: {self.fix}"
        return text


@dataclass(frozen=True)
class Target:
    """What is checked: the rollout of `model` in `environment` under `policy`."""

    model: str
    version: str
    environment: str
    policy: Policy
    policy_ref: str
    gitops: GitOpsSettings
    workflows: WorkflowSettings


class Kube:
    """The few REST calls the checks make, through the official client's configuration and auth."""

    def __init__(self, api: client.ApiClient, timeout_s: float = 10.0) -> None:
        self.api = api
        self.timeout_s = timeout_s

    def request(
        self, method: str, path: str, body: Any = None, query: list[tuple[str, str]] | None = None, **kw: str
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = kw.get("content_type", "application/json")
        serialized = self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(*serialized, _request_timeout=self.timeout_s)
        response.read()
        try:
            data = json.loads(response.data or b"{}")
        except ValueError:
            data = {"message": (response.data or b"")[:200].decode(errors="replace")}
        return response.status, data if isinstance(data, dict) else {}


def _message(status: int, data: dict[str, Any]) -> str:
    return f"HTTP {status}: {data.get('message') or data.get('reason') or 'no message'}"


def check_api(kube: Kube) -> CheckResult:
    try:
        status, data = kube.request("GET", "/version")
    except Exception as exc:  # unreachable, TLS, refused: every later check would fail the same way
        return CheckResult("api server", False, str(exc).splitlines()[0], "check --kubeconfig/--context")
    if status != 200:
        return CheckResult("api server", False, _message(status, data), "check the credentials")
    return CheckResult("api server", True, f"Kubernetes {data.get('gitVersion', '?')}")


def check_crd(kube: Kube, name: str, needed_by: str) -> CheckResult:
    status, data = kube.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
    label = f"crd {name}"
    if status == 404:
        return CheckResult(label, False, "not installed", f"install {needed_by}")
    if status != 200:
        return CheckResult(label, False, _message(status, data), "allow get on customresourcedefinitions")
    conditions = {c.get("type"): c.get("status") for c in data.get("status", {}).get("conditions", [])}
    if conditions.get("Established") != "True":
        return CheckResult(label, False, "not Established", f"see kubectl describe crd {name}")
    return CheckResult(label, True)


@dataclass(frozen=True)
class Access:
    verb: str
    group: str
    resource: str
    namespace: str
    why: str


def check_access(kube: Kube, access: Access) -> CheckResult:
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {
            "resourceAttributes": {
                "namespace": access.namespace,
                "verb": access.verb,
                "group": access.group,
                "resource": access.resource,
            }
        },
    }
    resource = f"{access.resource}.{access.group}" if access.group else access.resource
    label = f"can {access.verb} {resource} in {access.namespace}"
    status, data = kube.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review)
    if status != 201 and status != 200:
        return CheckResult(label, False, _message(status, data), "allow create on selfsubjectaccessreviews")
    allowed = bool(data.get("status", {}).get("allowed"))
    fix = f"grant {access.verb} on {resource} in namespace {access.namespace} ({access.why})"
    return CheckResult(label, allowed, "" if allowed else data.get("status", {}).get("reason", "denied"), fix)


def check_gpu(kube: Kube, resource: str, count: int) -> CheckResult:
    label = f"nodes offer {resource}"
    if count == 0:
        return CheckResult(label, True, "the Deployments request none (gpu_count: 0)")
    status, data = kube.request("GET", "/api/v1/nodes")
    if status != 200:
        return CheckResult(label, False, _message(status, data), "allow list on nodes")
    best = 0
    for node in data.get("items", []):
        allocatable = node.get("status", {}).get("allocatable", {})
        try:
            best = max(best, int(str(allocatable.get(resource, "0"))))
        except ValueError:
            continue
    if best < count:
        return CheckResult(
            label,
            False,
            f"no node has {count} allocatable (most: {best})",
            "install the NVIDIA device plugin / GPU Operator on GPU nodes",
        )
    return CheckResult(label, True, f"a node has {best} allocatable")


def _plural(kind: str) -> str:
    return {"NetworkPolicy": "networkpolicies"}.get(kind, kind.lower() + "s")


def object_path(doc: dict[str, Any]) -> str:
    """The REST path of an object (namespaced, as every object canaryflow renders is)."""
    api_version, meta = doc["apiVersion"], doc["metadata"]
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{prefix}/namespaces/{meta['namespace']}/{_plural(doc['kind'])}/{meta['name']}"


def check_dry_run(kube: Kube, doc: dict[str, Any]) -> CheckResult:
    meta = doc["metadata"]
    label = f"dry-run apply {doc['kind']} {meta['namespace']}/{meta['name']}"
    query = [("dryRun", "All"), ("fieldManager", FIELD_MANAGER), ("force", "true")]
    status, data = kube.request(
        "PATCH", object_path(doc), doc, query, content_type="application/apply-patch+yaml"
    )
    if status in (200, 201):
        return CheckResult(label, True)
    fixes = {
        403: "grant patch (server-side apply) on this kind in the namespace",
        404: f"create namespace {meta['namespace']} (or install the CRD of {doc['kind']})",
        422: "the rendered object is refused by the API server's validation (see the message)",
    }
    return CheckResult(label, False, _message(status, data), fixes.get(status, "see the message"))


def manifests(target: Target) -> list[dict[str, Any]]:
    """The objects a cluster gets: the stable state of `version`, namespaced as Kustomize writes them,
    the Argo CD Application, and the Argo install (RBAC and the WorkflowTemplate)."""
    from gitops.model import RenderRequest

    request = RenderRequest(
        model=target.model,
        environment=target.environment,
        baseline_version=target.version,
        traffic_mode=target.policy.traffic_mode,
    )
    options = target.gitops.render_options()
    namespace = target_namespace(request, options)
    docs: list[dict[str, Any]] = []
    for path, text in render(request, options).files.items():
        doc = load_yaml(text)
        if doc.get("kind") == "Kustomization":
            continue
        if not path.startswith("argocd/"):
            doc["metadata"]["namespace"] = namespace
        docs.append(doc)
    return docs + install_manifests(target.policy, target.environment, target.workflows, target.policy_ref)


def check_render(target: Target) -> CheckResult:
    """The manifests validate as `gitops render` validates them, and Argo CD has a repo to sync from."""
    from gitops.model import RenderRequest
    from gitops.validate import ManifestInvalid, ManifestValidator

    request = RenderRequest(
        model=target.model,
        environment=target.environment,
        baseline_version=target.version,
        traffic_mode=target.policy.traffic_mode,
    )
    validator = ManifestValidator(target.gitops.kubernetes_version, target.gitops.schemas_dir)
    try:
        validator.validate_rendering(render(request, target.gitops.render_options()))
    except ManifestInvalid as exc:
        return CheckResult("render", False, str(exc), "set --repo-url / the gitops settings it names")
    return CheckResult("render", True, f"{target.model} v{target.version} in {target.environment}")


def accesses(target: Target) -> list[Access]:
    """Every verb the rollout's own identity uses (Argo CD applies the manifests with its own)."""
    mode = target.policy.traffic_mode
    namespace = target.gitops.render.namespace or target.environment
    found = [
        Access("get", group, resource, namespace, f"the {mode} router reads the live split")
        for group, resource in traffic_router(mode).live_objects
    ]
    found.append(Access("get", "apps", "deployments", namespace, "readiness of the canary Deployment"))
    rbac = rbac_manifests(target.workflows)
    role = next(d for d in rbac if d["kind"] == "Role" and d["metadata"]["name"] == CONTROLLER_ACCOUNT)
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                found += [
                    Access(verb, group, resource, role["metadata"]["namespace"], "submit and follow rollouts")
                    for verb in rule["verbs"]
                ]
    return found


def run_checks(kube: Kube, target: Target, say: Callable[[CheckResult], None]) -> bool:
    """Every check, each reported as it ends; True when all pass. Stops after an unreachable API."""
    api = check_api(kube)
    say(api)
    if not api.ok:
        return False
    results: list[CheckResult] = []

    def record(result: CheckResult) -> None:
        results.append(result)
        say(result)

    crds = dict(BASE_CRDS)
    router = traffic_router(target.policy.traffic_mode)
    crds |= {name: f"the CRD of traffic mode {router.mode}" for name in router.crds}
    for name, needed_by in crds.items():
        record(check_crd(kube, name, needed_by))
    for access in accesses(target):
        record(check_access(kube, access))
    options = target.gitops.render
    record(check_gpu(kube, options.gpu_resource, options.gpu_count))
    rendered = check_render(target)
    record(rendered)
    if rendered.ok:  # a dry run of an invalid render would only repeat its error
        for doc in manifests(target):
            record(check_dry_run(kube, doc))
    return all(r.ok for r in results)
