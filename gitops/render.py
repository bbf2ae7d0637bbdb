"""Manifest rendering: a traffic state of a model in an environment -> the files of the GitOps repo.

Pure: no I/O, no clock, no randomness; the same request and options give byte-identical files, so a
re-run commits nothing. Layout (../shared/design.md): `apps/<model>/base/` (what every environment
shares), `apps/<model>/overlays/<env>/` (the versions and weights), `argocd/<model>-<env>.yaml`.
"""

from __future__ import annotations

from canaryflow.kernel.contracts.routing import RoutedVersion, RoutingConfig, ShadowConfig
from gitops import resources
from gitops.model import Rendering, RenderRequest
from gitops.profiles import workload
from gitops.resources import Doc
from gitops.settings import RenderOptions
from gitops.traffic import traffic_router
from gitops.yamlio import dump_yaml

KUSTOMIZATION = "kustomization.yaml"


def base_dir(model: str) -> str:
    return f"apps/{model}/base"


def overlay_dir(model: str, environment: str) -> str:
    return f"apps/{model}/overlays/{environment}"


def application_file(model: str, environment: str) -> str:
    return f"argocd/{model}-{environment}.yaml"


def routing_config(request: RenderRequest, options: RenderOptions) -> RoutingConfig:
    """The versions a state serves and their weights; both traffic modes render from this."""
    baseline_uri = resources.model_uri(request.model, request.baseline_version, options)
    if request.canary_version is None:
        versions = [
            RoutedVersion(version=request.baseline_version, uri=baseline_uri, weight=100, role="stable")
        ]
        shadow = ShadowConfig()
    else:
        canary_uri = resources.model_uri(request.model, request.canary_version, options)
        versions = [
            RoutedVersion(
                version=request.baseline_version,
                uri=baseline_uri,
                weight=100 - request.weight,
                role="baseline",
            ),
            RoutedVersion(
                version=request.canary_version, uri=canary_uri, weight=request.weight, role="canary"
            ),
        ]
        shadow = ShadowConfig(enabled=options.shadow_sample_rate > 0, sample_rate=options.shadow_sample_rate)
    return RoutingConfig(model=request.model, versions=versions, shadow=shadow)


def render(request: RenderRequest, options: RenderOptions) -> Rendering:
    model, env = request.model, request.environment
    labels = resources.model_labels(model)
    routed = routing_config(request, options).versions[0]
    base_docs: dict[str, Doc] = {
        "service.yaml": resources.service(
            name=model, labels=labels, selector={"app.kubernetes.io/name": model}
        ),
        "podmonitor.yaml": resources.pod_monitor(
            model,
            options,
            *workload.metrics_endpoint(workload.server_for(request, routed, options, options.port)),
        ),
    }
    overlay_docs = traffic_router(request.traffic_mode).overlay_documents(
        request, routing_config(request, options), options
    )
    files: dict[str, str] = {}
    base, overlay = base_dir(model), overlay_dir(model, env)
    base_docs[KUSTOMIZATION] = resources.kustomization(sorted(base_docs))
    patches = overlay_docs.pop(resources.PATCHES_KEY, {}).get("patches")
    overlay_docs[KUSTOMIZATION] = resources.kustomization(
        ["../../base", *sorted(overlay_docs)], resources.namespace(request, options), patches
    )
    for name, doc in sorted(base_docs.items()):
        files[f"{base}/{name}"] = dump_yaml(doc)
    for name, doc in sorted(overlay_docs.items()):
        files[f"{overlay}/{name}"] = dump_yaml(doc)
    app_file = application_file(model, env)
    files[app_file] = dump_yaml(resources.application(request, options, overlay))
    return Rendering(files=dict(sorted(files.items())), owned=(base, overlay, app_file))
