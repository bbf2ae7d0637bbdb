"""Traffic mode `kserve-serverless`: one KServe InferenceService (Knative) whose latest revision is the
canary, `canaryTrafficPercent` per step.

A canary step sets the predictor to the canary version and `canaryTrafficPercent` to the step's weight:
KServe creates a revision and sends it that share, the rest to the last rolled-out revision. Promotion
drops `canaryTrafficPercent` (the same predictor, so no new revision: the judged pods take everything).
A rollback pins the previous version's predictor with `canaryTrafficPercent: 0`, which sends all
traffic back to the last rolled-out revision at once; without it Knative would route the whole load to
the latest ready revision, the rejected canary, until the restored one had started.

Live weights come from `status.components.predictor.traffic`; each revision's version is its
`canaryflow.io/version` label, copied by KServe from the predictor's labels onto the revision.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import gitops.traffic.kserve as kserve
from canaryflow.kernel.contracts.routing import RoutingConfig
from gitops import resources
from gitops.gitops_settings import RenderOptions
from gitops.model import RenderRequest
from gitops.profiles import workload
from gitops.resources import Doc
from gitops.traffic.base import ClusterReader

ISVC_FILE = "inferenceservice.yaml"
REVISION_API_VERSION = "serving.knative.dev/v1"


def isvc_name(model: str) -> str:
    """Not `<model>`: KServe creates a Service of the InferenceService's name, and the base has one."""
    return f"{model}-kserve"


class KServeServerlessTraffic:
    mode: ClassVar[str] = "kserve-serverless"
    crds: ClassVar[tuple[str, ...]] = (kserve.ISVC_CRD, "revisions.serving.knative.dev")
    live_objects: ClassVar[tuple[tuple[str, str], ...]] = (
        ("serving.kserve.io", "inferenceservices"),
        ("serving.knative.dev", "revisions"),
    )

    def overlay_documents(
        self, request: RenderRequest, routing: RoutingConfig, options: RenderOptions
    ) -> dict[str, Doc]:
        canary = next((v for v in routing.versions if v.role == "canary"), None)
        serving = canary or routing.versions[0]
        predictor = kserve.predictor(request, serving, options, raw=False)
        if canary is not None:
            predictor = {"canaryTrafficPercent": canary.weight, **predictor}
        elif request.rollback_of is not None:
            predictor = {"canaryTrafficPercent": 0, **predictor}
        labels = resources.model_labels(request.model)
        return {
            ISVC_FILE: kserve.inference_service(isvc_name(request.model), labels, "Serverless", predictor),
            kserve.STATE_FILE: kserve.state_configmap(request.model, routing),
            kserve.PODMONITOR_FILE: kserve.pod_monitor(
                request.model,
                options,
                workload.server_for(request, serving, options, kserve.PREDICTOR_PORT, True),
                queue_proxy=True,
            ),
        }

    def routing_from_overlay(self, overlay: Path, model: str) -> RoutingConfig | None:
        if not (overlay / ISVC_FILE).exists():
            return None
        return kserve.routing_from_state(overlay)

    def live_weights(self, cluster: ClusterReader, namespace: str, model: str) -> dict[str, int]:
        isvc = cluster.get_object(kserve.ISVC_API_VERSION, kserve.ISVC_PLURAL, namespace, isvc_name(model))
        if isvc is None:
            return {}
        traffic = isvc.get("status", {}).get("components", {}).get("predictor", {}).get("traffic", [])
        weights: dict[str, int] = {}
        for target in traffic:
            revision = str(target.get("revisionName", ""))
            version = _revision_version(cluster, namespace, revision)
            weights[version] = weights.get(version, 0) + int(target.get("percent", 0))
        return weights


def _revision_version(cluster: ClusterReader, namespace: str, revision: str) -> str:
    """The version a Knative revision serves; the revision's name when it carries no version label
    (so it can never be mistaken for a version)."""
    found = cluster.get_object(REVISION_API_VERSION, "revisions", namespace, revision) if revision else None
    labels = (found or {}).get("metadata", {}).get("labels", {})
    return str(labels.get(resources.VERSION_LABEL, f"revision:{revision}"))
