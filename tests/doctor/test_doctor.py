"""`canaryflow doctor` against a local server speaking the Kubernetes REST paths it calls, with the
API server's JSON shapes: CRD objects from the upstream CRD files, SelfSubjectAccessReview answered
from a rule list, a NodeList, and server-side apply (`dryRun=All`) validated with the real schemas.
No cluster runs here; what this proves and what it cannot is in docs/conformance.md."""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import yaml
from typer.testing import CliRunner

from canaryflow.app.cli import app
from gitops.traffic import ROUTERS
from gitops.validate import ManifestInvalid, ManifestValidator
from policies import SHIPPED_DIR
from tests.support.kube_api import KubeApiServer, not_found

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "schemas"
CRD_FILES = {
    "applications.argoproj.io": SHARED / "argocd/application-crd.yaml",
    "httproutes.gateway.networking.k8s.io": SHARED / "gateway-api/gateway.networking.k8s.io_httproutes.yaml",
    "podmonitors.monitoring.coreos.com": SHARED
    / "prometheus-operator/monitoring.coreos.com_podmonitors.yaml",
}
ARGO_KINDS = ("Workflow", "WorkflowTemplate")
ESTABLISHED = {"conditions": [{"type": "Established", "status": "True", "reason": "InitialNamesAccepted"}]}
runner = CliRunner()


@functools.cache
def _upstream_crds() -> dict[str, Any]:
    """The CRD files are large; parsed once (with libyaml) for every test."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return {name: yaml.load(path.read_text(), Loader=loader) for name, path in CRD_FILES.items()}


def _argo_crd(kind: str, plural: str) -> dict[str, Any]:
    """Argo Workflows ships its CRDs minimal: a schema that keeps unknown fields."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.argoproj.io"},
        "spec": {
            "group": "argoproj.io",
            "names": {"kind": kind, "plural": plural, "listKind": f"{kind}List", "singular": kind.lower()},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1alpha1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                }
            ],
        },
    }


class Cluster:
    """What the fake API server answers; a test changes it to break one thing."""

    def __init__(self, server: KubeApiServer) -> None:
        self.server = server
        self.namespaces = {"production", "staging", "argo", "argocd"}
        self.denied: set[tuple[str, str]] = set()  # (verb, resource)
        self.gpus = "8"
        self.validator = ManifestValidator("1.33", SHARED)
        crds = copy.deepcopy(_upstream_crds())
        crds["workflows.argoproj.io"] = _argo_crd("Workflow", "workflows")
        crds["workflowtemplates.argoproj.io"] = _argo_crd("WorkflowTemplate", "workflowtemplates")
        self.crds = {name: {**crd, "status": ESTABLISHED} for name, crd in crds.items()}
        server.handlers[("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")] = self._review
        server.handlers[("PATCH", "*")] = self._apply

    def publish(self) -> None:
        self.server.routes.clear()
        self.server.serve("/version", {"major": "1", "minor": "33", "gitVersion": "v1.33.2"})
        for name, crd in self.crds.items():
            self.server.serve(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}", crd)
        node = {
            "metadata": {"name": "gpu-node-1", "labels": {"nvidia.com/gpu.present": "true"}},
            "status": {"allocatable": {"cpu": "16", "memory": "128Gi", "nvidia.com/gpu": self.gpus}},
        }
        self.server.serve(
            "/api/v1/nodes", {"kind": "NodeList", "apiVersion": "v1", "metadata": {}, "items": [node]}
        )

    def _review(self, path: str, query: str, body: Any) -> tuple[int, dict[str, Any]]:
        attrs = body["spec"]["resourceAttributes"]
        allowed = (attrs["verb"], attrs["resource"]) not in self.denied
        status = {"allowed": allowed, **({} if allowed else {"reason": "RBAC: no rule allows it"})}
        return 201, {**body, "metadata": {}, "status": status}

    def _apply(self, path: str, query: str, body: Any) -> tuple[int, dict[str, Any]]:
        params = parse_qs(query)
        assert params["dryRun"] == ["All"] and params["fieldManager"] == ["canaryflow-doctor"]
        namespace = body["metadata"]["namespace"]
        assert f"/namespaces/{namespace}/" in path and path.endswith("/" + body["metadata"]["name"])
        group = body["apiVersion"].rpartition("/")[0]
        plural = path.split("/")[-2]
        if group not in ("", "apps", "rbac.authorization.k8s.io") and f"{plural}.{group}" not in self.crds:
            return 404, {**not_found(path), "message": "the server could not find the requested resource"}
        if namespace not in self.namespaces:
            return 404, {**not_found(path), "message": f'namespaces "{namespace}" not found'}
        try:
            if body["kind"] not in ARGO_KINDS:  # Argo's CRDs keep unknown fields: nothing to validate
                self.validator.validate_document(body)
        except ManifestInvalid as exc:
            return 422, {
                "kind": "Status",
                "status": "Failure",
                "reason": "Invalid",
                "message": str(exc),
                "code": 422,
            }
        applied = copy.deepcopy(body)
        applied["metadata"] |= {"uid": "00000000-0000-0000-0000-000000000001", "resourceVersion": "1"}
        return 200, applied


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    server = KubeApiServer()
    state = Cluster(server)
    state.publish()
    try:
        yield state
    finally:
        server.close()


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CANARYFLOW_CONFIG", raising=False)
    monkeypatch.setenv("CANARYFLOW_GITOPS_REMOTE_URL", "https://github.com/example/gitops.git")


def _doctor(cluster: Cluster, *args: str) -> Any:
    return runner.invoke(app, ["doctor", "--server", cluster.server.url, *args])


def _lines(result: Any) -> list[str]:
    return result.stdout.splitlines()[:-1]


def test_a_ready_cluster_passes_every_check(cluster: Cluster) -> None:
    result = _doctor(cluster)
    assert result.exit_code == 0, result.output
    lines = _lines(result)
    assert lines and all(line.startswith("PASS  ") for line in lines)
    assert result.stdout.splitlines()[-1] == "all checks passed"
    crds = {line.split()[2] for line in lines if line.startswith("PASS  crd ")}
    assert crds == {n for n in cluster.crds if n != "httproutes.gateway.networking.k8s.io"}  # configmap mode
    assert "PASS  can create workflows.argoproj.io in argo" in lines
    assert "PASS  can get configmaps in production" in lines  # what the configmap router reads live
    assert "PASS  nodes offer nvidia.com/gpu: a node has 8 allocatable" in lines
    applied = {line.split()[4] for line in lines if line.startswith("PASS  dry-run apply ")}
    assert {"production/minilm", "argocd/minilm-production", "argo/canaryflow-workflow"} <= applied
    # Read-only: every write was a review or a dry run, and the applies were server-side applies.
    for method, path, content_type, _ in cluster.server.writes:
        assert (method == "POST" and "selfsubjectaccessreviews" in path) or (
            method == "PATCH" and "dryRun=All" in path and content_type == "application/apply-patch+yaml"
        )


def test_the_traffic_mode_s_crds_come_from_the_router_registry(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = yaml.safe_load((SHIPPED_DIR / "default.yaml").read_text()) | {"traffic_mode": "httproute"}
    (tmp_path / "httproute.yaml").write_text(yaml.safe_dump(policy))
    result = _doctor(cluster, "--policy", str(tmp_path / "httproute.yaml"))
    assert result.exit_code == 0, result.output
    assert "PASS  crd httproutes.gateway.networking.k8s.io" in _lines(result)
    assert "PASS  can get httproutes.gateway.networking.k8s.io in production" in _lines(result)
    # A router that needs another CRD (istio, kserve) gets it checked by adding it to its `crds`.
    monkeypatch.setattr(ROUTERS["configmap"], "crds", ("virtualservices.networking.istio.io",), raising=False)
    added = _doctor(cluster)
    assert added.exit_code == 1
    assert "FAIL  crd virtualservices.networking.istio.io: not installed" in added.stdout


def test_each_missing_piece_is_one_fail_line_with_its_fix(cluster: Cluster) -> None:
    del cluster.crds["podmonitors.monitoring.coreos.com"]
    cluster.crds["workflows.argoproj.io"]["status"] = {"conditions": []}
    cluster.denied = {("create", "workflows")}
    cluster.gpus = "0"
    cluster.namespaces.discard("production")
    cluster.publish()
    result = _doctor(cluster)
    assert result.exit_code == 1
    fails = [line for line in _lines(result) if line.startswith("FAIL")]
    assert "FAIL  crd podmonitors.monitoring.coreos.com: not installed — fix: install the Prometheus" in (
        "\n".join(fails)
    )
    assert any(f.startswith("FAIL  crd workflows.argoproj.io: not Established") for f in fails)
    assert any(f.startswith("FAIL  dry-run apply PodMonitor production/minilm: HTTP 404") for f in fails)
    assert any(
        f.startswith(
            "FAIL  can create workflows.argoproj.io in argo: RBAC: no rule allows it — fix: grant create"
        )
        for f in fails
    )
    assert any(f.startswith("FAIL  nodes offer nvidia.com/gpu: no node has 1 allocatable") for f in fails)
    assert any(
        f.startswith("FAIL  dry-run apply Deployment production/minilm: HTTP 404")
        and "create namespace production" in f
        for f in fails
    )
    assert result.stdout.splitlines()[-1] == "some checks failed: see FAIL lines"


def test_an_object_the_api_server_refuses_fails_its_dry_run(cluster: Cluster) -> None:
    original = cluster.validator.validate_document

    def strict(doc: Any) -> None:  # an admission policy of this cluster: no Deployment without a GPU limit
        if doc["kind"] == "Deployment":
            raise ManifestInvalid("Deployment spec.template: refused by admission webhook gpu-quota")
        original(doc)

    cluster.validator.validate_document = strict  # type: ignore[method-assign]
    result = _doctor(cluster)
    assert result.exit_code == 1
    assert (
        "FAIL  dry-run apply Deployment production/minilm: HTTP 422: Deployment spec.template: refused"
        in (result.stdout)
    )


def test_without_a_repo_url_the_render_check_fails(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CANARYFLOW_GITOPS_REMOTE_URL")
    result = _doctor(cluster)
    assert result.exit_code == 1
    assert (
        "FAIL  render: argocd/minilm-production.yaml: Application spec.source.repoURL: empty" in result.stdout
    )
    assert not [w for w in cluster.server.writes if w[0] == "PATCH"]  # no dry run of an invalid render


def test_kubeconfig_with_a_token_and_an_unreachable_server(cluster: Cluster, tmp_path: Path) -> None:
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": cluster.server.url}}],
        "users": [{"name": "u", "user": {"token": "t0ken"}}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "ctx",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig))
    result = runner.invoke(app, ["doctor", "--kubeconfig", str(path)])
    assert result.exit_code == 0, result.output
    cluster.server.close()
    down = runner.invoke(app, ["doctor", "--kubeconfig", str(path)])
    assert down.exit_code == 1
    assert down.stdout.startswith("FAIL  api server: ")
    assert len(_lines(down)) == 1


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--kubeconfig", "/no/such/file"], "--kubeconfig: no kubeconfig at /no/such/file"),
        (["--server", "http://127.0.0.1:1", "--policy", "nope"], "--policy: "),
        (["--server", "http://127.0.0.1:1", "--model", "Bad_Name"], "model: 'Bad_Name' is not a valid"),
    ],
)
def test_bad_usage_exits_2_with_one_line(args: list[str], reason: str) -> None:
    result = runner.invoke(app, ["doctor", *args])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"canaryflow doctor: {reason}")
    assert len(result.stderr.splitlines()) == 1
