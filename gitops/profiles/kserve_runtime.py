"""Profile `kserve-runtime`: a KServe ServingRuntime chosen by `modelFormat`.

Where KServe runs the version (`kserve-serverless`, `kserve-raw`), the InferenceService names the
format (and optionally the runtime) and the artifacts' `storageUri`; KServe picks the ServingRuntime,
its container and its storage initializer. Elsewhere the same KServe model server runs as the
format's ClusterServingRuntime defines it (`--model_name`, `--model_dir`, `--http_port`, taken from
kserve's config/runtimes, tests/gitops/servers/kserve-runtimes.flags), on the downloaded artifacts;
formats without a KServe Python model server there are refused with the ones there are.
"""

from __future__ import annotations

from typing import Any, ClassVar

from canaryflow.kernel.serving import ServingConfig
from gitops.profiles.base import Server, VersionRef, with_extra_args
from gitops.settings import RenderOptions

# modelFormat -> the KServe model server image of its ClusterServingRuntime (config/runtimes).
MODEL_SERVERS: dict[str, str] = {
    "sklearn": "kserve/sklearnserver:v0.15.2",
    "xgboost": "kserve/xgbserver:v0.15.2",
    "lightgbm": "kserve/lgbserver:v0.15.2",
    "huggingface": "kserve/huggingfaceserver:v0.15.2",
}
# KServe's storage initializer reads these (SupportedStorageURIPrefixList, kserve
# pkg/controller/v1beta1/inferenceservice/utils/utils.go); Azure blobs come as https://.
STORAGE_PREFIXES = (
    "gs://",
    "s3://",
    "pvc://",
    "file://",
    "https://",
    "http://",
    "hdfs://",
    "webhdfs://",
    "oci://",
    "oci+native://",
    "oci+fetch://",
    "hf://",
)


def check_storage_uri(source: str, model: str, version: str) -> str:
    """`source` as a KServe `storageUri`; one KServe cannot read is an error saying what would be."""
    if not source.startswith(STORAGE_PREFIXES):
        raise ValueError(
            f"sources: {model} v{version}'s artifact source {source!r} is not a storageUri KServe reads "
            f"({', '.join(p.removesuffix('//') for p in STORAGE_PREFIXES)}): store the registry's "
            "artifacts there (e.g. MLflow's --artifacts-destination s3://...)"
        )
    return source


class KServeRuntimeProfile:
    name: ClassVar[str] = "kserve-runtime"

    def server(
        self, ref: VersionRef, serving: ServingConfig, options: RenderOptions, port: int, kserve: bool
    ) -> Server:
        fmt = serving.model_format or ""
        values = ref.parameters(port, kserve)
        args = [f"--model_name={ref.model}", f"--model_dir={values['model_dir']}", f"--http_port={port}"]
        model: dict[str, Any] | None = None
        if kserve:
            model = {"modelFormat": {"name": fmt}}
            if serving.model_format_version:
                model["modelFormat"]["version"] = serving.model_format_version
            if serving.runtime:
                model["runtime"] = serving.runtime
            model["storageUri"] = check_storage_uri(ref.source, ref.model, ref.version)
            if serving.extra_args:
                model["args"] = with_extra_args([], serving, values)
            image = ""
        else:
            if fmt not in MODEL_SERVERS:
                raise ValueError(
                    f"serving.model_format: {fmt!r} runs outside KServe only as one of "
                    f"{', '.join(sorted(MODEL_SERVERS))}; use traffic mode kserve-serverless or kserve-raw"
                )
            image = serving.image or MODEL_SERVERS[fmt]
        return Server(
            image=image,
            command=[],
            args=with_extra_args(args, serving, values),
            env=[],
            port=port,
            readiness_path=f"/v1/models/{ref.model}",
            liveness_path="/",
            runtime_model=model,
        )
