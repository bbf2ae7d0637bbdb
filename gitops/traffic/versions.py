"""One inference Deployment and one Service per served version (`<model>-v<N>`), and reading them back.

Shared by the routers that split traffic between per-version pods outside the server (`httproute`,
`istio`): the pods carry the version label that Services, subsets and metrics select on, and no role,
so promoting a canary relabels its Deployment only, without restarting the pods just judged healthy.
"""

from __future__ import annotations

from pathlib import Path

from canaryflow.kernel.contracts.routing import RoutedVersion, RoutingConfig
from gitops import resources
from gitops.gitops_settings import RenderOptions
from gitops.model import RenderRequest
from gitops.profiles import workload
from gitops.resources import Doc
from gitops.yamlio import load_yaml


def deployment_file(version: str) -> str:
    return f"deployment-v{version}.yaml"


def service_file(version: str) -> str:
    return f"service-v{version}.yaml"


def pod_selector(model: str, version: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": model, resources.VERSION_LABEL: version}


def version_workloads(
    request: RenderRequest, routing: RoutingConfig, options: RenderOptions
) -> dict[str, Doc]:
    """Overlay files: a Deployment and a Service for each version of `routing`."""
    docs: dict[str, Doc] = {}
    for routed in routing.versions:
        name = resources.version_name(request.model, routed.version)
        # `app.kubernetes.io/version`: Istio's canonical revision, by which the `istio` metric provider
        # tells the arms apart.
        pod_labels = {
            **resources.model_labels(request.model),
            resources.VERSION_LABEL: routed.version,
            "app.kubernetes.io/version": routed.version,
        }
        selector = pod_selector(request.model, routed.version)
        server = workload.server_for(request, routed, options, options.port)
        deployment = resources.inference_deployment(
            name=name,
            labels=pod_labels,
            selector=selector,
            server=server,
            options=options,
            **workload.artifact_parts(server, workload.version_ref(request, routed).source, options),
        )
        deployment["metadata"]["labels"] = resources.version_labels(request.model, routed)
        if server.artifacts != "registry":  # the pinned URI is not on the command line: say it here
            deployment["metadata"]["annotations"] = {workload.MODEL_URI_ANNOTATION: routed.uri}
        docs[deployment_file(routed.version)] = deployment
        docs[service_file(routed.version)] = resources.service(
            name=name, labels=resources.version_labels(request.model, routed), selector=selector
        )
    return docs


def routed_versions(overlay: Path, weights: dict[str, int]) -> list[RoutedVersion]:
    """Each weighted version with the URI and role its Deployment in `overlay` declares."""
    versions = []
    for version, weight in weights.items():
        deployment = load_yaml((overlay / deployment_file(version)).read_text())
        annotations = deployment["metadata"].get("annotations", {})
        uri = annotations.get(workload.MODEL_URI_ANNOTATION) or resources.model_uri_of(
            deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        )
        role = deployment["metadata"]["labels"][resources.ROLE_LABEL]
        versions.append(RoutedVersion(version=version, uri=uri, weight=weight, role=role))
    return versions
