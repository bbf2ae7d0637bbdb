"""One mechanism for every router and every profile: a routed version's `Server`, and the pod parts
that get its artifacts onto the pod's disk.

A server whose artifacts are downloaded (every profile but `canaryflow`) gets, outside KServe, an init
container running MLflow's own client, `mlflow artifacts download --artifact-uri <source> --dst-path
/mnt/models`, in MLflow's published image, into an emptyDir the server mounts read-only. MLflow's
client reads every artifact store MLflow writes to (the tracking server's proxied `mlflow-artifacts:`,
S3, GCS, Azure, HDFS, local) and resolves `models:/` URIs itself, with the same credentials the
registry uses; KServe's storage initializer does this job where KServe runs the version (`storageUri`).
"""

from __future__ import annotations

from canaryflow.kernel.contracts.routing import RoutedVersion
from gitops.model import RenderRequest
from gitops.profiles import MODEL_MOUNT, Server, VersionRef, serving_profile
from gitops.resources import HTTP_PORT_NAME, METRICS_PORT_NAME, Doc
from gitops.settings import RenderOptions

ARTIFACTS_VOLUME = "model-artifacts"
MODEL_URI_ANNOTATION = "canaryflow.io/model-uri"


def version_ref(request: RenderRequest, routed: RoutedVersion) -> VersionRef:
    source = request.sources.get(routed.version, routed.uri)
    return VersionRef(model=request.model, version=routed.version, uri=routed.uri, source=source)


def server_for(
    request: RenderRequest, routed: RoutedVersion, options: RenderOptions, port: int, kserve: bool = False
) -> Server:
    """The server the request's profile runs for `routed`, preferring `port` (a custom one keeps its)."""
    profile = serving_profile(request.serving.profile)
    return profile.server(version_ref(request, routed), request.serving, options, port, kserve)


def download_init_container(source: str, options: RenderOptions) -> Doc:
    return {
        "name": "model-download",
        "image": options.downloader_image,
        "command": ["mlflow", "artifacts", "download"],
        "args": ["--artifact-uri", source, "--dst-path", MODEL_MOUNT],
        "env": [{"name": "MLFLOW_TRACKING_URI", "value": options.tracking_uri}],
        "volumeMounts": [{"name": ARTIFACTS_VOLUME, "mountPath": MODEL_MOUNT}],
    }


def artifact_parts(server: Server, source: str, options: RenderOptions) -> dict[str, list[Doc]]:
    """Keyword arguments of `resources.inference_deployment` that give the pod its artifacts (none for
    a server that loads the registry URI itself)."""
    if server.artifacts == "registry":
        return {}
    return {
        "init_containers": [download_init_container(source, options)],
        "volumes": [{"name": ARTIFACTS_VOLUME, "emptyDir": {}}],
        "volume_mounts": [{"name": ARTIFACTS_VOLUME, "mountPath": MODEL_MOUNT, "readOnly": True}],
    }


def metrics_endpoint(server: Server) -> tuple[str, str]:
    """(container port name, path) a PodMonitor scrapes."""
    return (HTTP_PORT_NAME if server.metrics_port is None else METRICS_PORT_NAME), server.metrics_path
