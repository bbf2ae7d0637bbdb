"""Validation of a render before it may reach git: an invalid document is never committed.

Core kinds are checked with `kubernetes-validate` (the official schemas of one Kubernetes version,
strict: unknown fields are errors). CRDs are checked with `jsonschema` against the openAPIV3Schema of
the served version in the upstream CRD files (HTTPRoute, Application, PodMonitor, ServiceMonitor,
PrometheusRule, InferenceService, VirtualService, DestinationRule), shipped in `gitops/schemas/` (or a
folder named by the settings, e.g. ../shared/schemas in tests; a CRD missing there is read from the
packaged copy). Kustomizations are checked for what this repo relies on: every resource they list is
part of the render.
"""

from __future__ import annotations

import gzip
import posixpath
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import kubernetes_validate.utils
from referencing import Registry, Resource

from canaryflow.kernel.contracts.routing import ROUTING_FILE_KEY, RoutingConfig
from gitops.model import Rendering
from gitops.yamlio import load_yaml

PACKAGED_SCHEMAS = Path(__file__).parent / "schemas"

# (group, kind) -> CRD file, relative to the packaged schemas folder and to ../shared/schemas.
CRD_FILES: dict[tuple[str, str], tuple[str, str]] = {
    ("gateway.networking.k8s.io", "HTTPRoute"): ("gateway-api", "gateway.networking.k8s.io_httproutes.yaml"),
    ("argoproj.io", "Application"): ("argocd", "application-crd.yaml"),
    ("monitoring.coreos.com", "PodMonitor"): (
        "prometheus-operator",
        "monitoring.coreos.com_podmonitors.yaml",
    ),
    ("monitoring.coreos.com", "ServiceMonitor"): (
        "prometheus-operator",
        "monitoring.coreos.com_servicemonitors.yaml",
    ),
    ("monitoring.coreos.com", "PrometheusRule"): (
        "prometheus-operator",
        "monitoring.coreos.com_prometheusrules.yaml",
    ),
    ("serving.kserve.io", "InferenceService"): ("kserve", "serving.kserve.io_inferenceservices.yaml.gz"),
    ("networking.istio.io", "VirtualService"): ("istio", "networking.istio.io_virtualservices.yaml"),
    ("networking.istio.io", "DestinationRule"): ("istio", "networking.istio.io_destinationrules.yaml"),
}


class ManifestInvalid(ValueError):
    """A rendered file does not validate; the message names the file, the field and the reason."""


def _crd_path(schemas_dir: Path, folder: str, name: str) -> Path:
    # ../shared/schemas sorts CRDs into one folder per project; the packaged copy is flat and is the
    # fallback for a CRD the given folder lacks (the shared folder has no PrometheusRule).
    for candidate in (schemas_dir / folder / name, schemas_dir / name):
        if candidate.exists():
            return candidate
    return PACKAGED_SCHEMAS / name


def read_crd(path: Path) -> Any:
    """A CRD file, gzip-compressed where upstream's is too large to ship as text (`*.gz`)."""
    data = path.read_bytes()
    return load_yaml((gzip.decompress(data) if path.suffix == ".gz" else data).decode())


@lru_cache(maxsize=16)
def _crd_validator(path: Path, version: str) -> jsonschema.protocols.Validator:
    crd = read_crd(path)
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version and entry.get("served", False):
            return jsonschema.Draft7Validator(_strict(_with_object_meta(entry["schema"]["openAPIV3Schema"])))
    raise ManifestInvalid(f"{path.name}: CRD serves no version {version!r}")


@lru_cache(maxsize=64)
def _kubernetes_validator(cluster: str, kind: str, api_version: str) -> jsonschema.protocols.Validator:
    """The validator `kubernetes_validate.validate(doc, cluster, strict=True)` builds for
    one kind (its code, kubernetes-validate 1.37 `utils.validate`), built once: the library reads and
    parses the kind's schema and 1.4 MB of shared definitions on every document, ~20 ms each, several
    per commit. Its errors are the library's: SchemaNotFoundError, VersionNotSupportedError, and the
    same jsonschema error for an invalid document."""
    utils = kubernetes_validate.utils
    desired = cluster.removeprefix("v")
    if utils.major_minor(desired) > utils.latest_version():
        raise utils.VersionNotSupportedError(version=utils.major_minor(desired))
    version = [v for v in utils.all_versions() if utils.major_minor(v) <= utils.major_minor(desired)][-1]
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    folder = f"kubernetes-json-schema/v{version}-local-strict"
    try:
        schema = utils.schema_contents(f"{folder}/{kind.lower()}-{group}.json", desired)
    except FileNotFoundError:
        raise utils.SchemaNotFoundError(
            version=utils.major_minor(desired), kind=kind, api_version=api_version
        ) from None
    definitions = utils.schema_contents(f"{folder}/_definitions.json", desired)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _with_object_meta(schema: dict[str, Any]) -> dict[str, Any]:
    """The root schema with apiVersion, kind and metadata, which the API server accepts on every custom
    resource whether its CRD names them or not (Istio's do not)."""
    implicit = {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}}
    return {**schema, "properties": {**implicit, **schema.get("properties", {})}}


def _strict(schema: Any) -> Any:
    """The schema with unknown fields refused, as `kubectl apply --validate=strict` does.

    The API server silently prunes fields a structural schema does not name; a typo in a rendered
    field would then vanish on the cluster instead of failing here.
    """
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _strict(value) if key != "properties" else value for key, value in schema.items()}
    if isinstance(schema.get("properties"), dict):
        out["properties"] = {name: _strict(sub) for name, sub in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    return out


def _where(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(document)"


class ManifestValidator:
    def __init__(self, kubernetes_version: str = "1.33", schemas_dir: Path | None = None) -> None:
        self.kubernetes_version = kubernetes_version
        self.schemas_dir = schemas_dir or PACKAGED_SCHEMAS

    def validate_document(self, doc: Any) -> None:
        """Raise ManifestInvalid (without a file name) where `doc` is not a valid object of its kind."""
        if not isinstance(doc, dict) or not isinstance(doc.get("kind"), str) or "apiVersion" not in doc:
            raise ManifestInvalid("not a Kubernetes object (needs apiVersion and kind)")
        group, _, version = str(doc["apiVersion"]).rpartition("/")
        crd = CRD_FILES.get((group, doc["kind"]))
        if crd is not None:
            validator = _crd_validator(_crd_path(self.schemas_dir, *crd), version)
            errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
            if errors:
                raise ManifestInvalid(f"{doc['kind']} {_where(errors[0])}: {errors[0].message}")
            _check_application_source(doc)
            return
        try:
            _kubernetes_validator(self.kubernetes_version, doc["kind"], str(doc["apiVersion"])).validate(doc)
        except jsonschema.ValidationError as exc:
            raise ManifestInvalid(f"{doc['kind']} {_where(exc)}: {exc.message}") from None
        except kubernetes_validate.SchemaNotFoundError as exc:
            raise ManifestInvalid(exc.message) from None
        if doc["kind"] == "ConfigMap" and ROUTING_FILE_KEY in doc.get("data", {}):
            try:
                RoutingConfig.model_validate(load_yaml(doc["data"][ROUTING_FILE_KEY]))
            except ValueError as exc:
                reason = str(exc).splitlines()
                raise ManifestInvalid(f"ConfigMap data.{ROUTING_FILE_KEY}: {' '.join(reason[:3])}") from None

    def validate_rendering(self, rendering: Rendering) -> None:
        """Every file of the render, or ManifestInvalid naming the first bad file."""
        for path, text in rendering.files.items():
            try:
                doc = load_yaml(text)
                if isinstance(doc, dict) and doc.get("kind") == "Kustomization":
                    _check_kustomization(path, doc, rendering)
                else:
                    self.validate_document(doc)
            except ManifestInvalid as exc:
                raise ManifestInvalid(f"{path}: {exc}") from None


def _check_application_source(doc: dict[str, Any]) -> None:
    """The CRD schema accepts `repoURL: ''`; Argo CD refuses to sync such an Application."""
    if doc["kind"] != "Application":
        return
    source = doc.get("spec", {}).get("source", {})
    if not str(source.get("repoURL", "")).strip():
        raise ManifestInvalid("Application spec.source.repoURL: empty; Argo CD has no repo to sync from")


def _check_kustomization(path: str, doc: dict[str, Any], rendering: Rendering) -> None:
    if doc.get("apiVersion") != "kustomize.config.k8s.io/v1beta1":
        raise ManifestInvalid(f"apiVersion: {doc.get('apiVersion')!r} is not kustomize.config.k8s.io/v1beta1")
    folder = posixpath.dirname(path)
    for resource in doc.get("resources", []):
        target = posixpath.normpath(posixpath.join(folder, resource))
        if target not in rendering.files and f"{target}/kustomization.yaml" not in rendering.files:
            raise ManifestInvalid(f"resources: {resource!r} is not part of the render")
