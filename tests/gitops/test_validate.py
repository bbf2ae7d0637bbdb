"""Validation: every render of both modes validates; invalid documents are refused with a reason."""

from __future__ import annotations

import copy

import pytest

from gitops.model import Rendering
from gitops.render import render
from gitops.validate import CRD_FILES, PACKAGED_SCHEMAS, ManifestInvalid, ManifestValidator
from gitops.yamlio import dump_yaml, load_yaml
from tests.gitops.conftest import GOLDEN_OPTIONS, SHARED_SCHEMAS
from tests.gitops.test_render import CASES

needs_shared = pytest.mark.skipif(not SHARED_SCHEMAS.is_dir(), reason="../shared/schemas is not present")


@pytest.fixture(scope="module")
def validator() -> ManifestValidator:
    return ManifestValidator("1.33", SHARED_SCHEMAS if SHARED_SCHEMAS.is_dir() else None)


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_case_validates_against_shared_and_packaged_schemas(
    case: str, validator: ManifestValidator
) -> None:
    rendering = render(CASES[case], GOLDEN_OPTIONS)
    validator.validate_rendering(rendering)
    ManifestValidator("1.33").validate_rendering(rendering)


@needs_shared
def test_packaged_schemas_are_unchanged_copies_of_shared() -> None:
    for folder, name in CRD_FILES.values():
        if not (SHARED_SCHEMAS / folder / name).exists():
            continue  # copied from upstream directly (gitops/schemas/PROVENANCE.md)
        assert (PACKAGED_SCHEMAS / name).read_bytes() == (SHARED_SCHEMAS / folder / name).read_bytes()


def _doc(case: str, suffix: str) -> dict:
    files = render(CASES[case], GOLDEN_OPTIONS).files
    (path,) = [p for p in files if p.endswith(suffix)]
    return load_yaml(files[path])


def _broken(case: str, suffix: str, mutate) -> dict:
    doc = copy.deepcopy(_doc(case, suffix))
    mutate(doc)
    return doc


BROKEN = {
    "httproute negative weight": (
        "httproute-canary",
        "httproute.yaml",
        lambda d: d["spec"]["rules"][0]["backendRefs"][0].update(weight=-1),
        "weight",
    ),
    "httproute unknown field": (
        "httproute-canary",
        "httproute.yaml",
        lambda d: d["spec"].update(weights=[1]),
        "weights",
    ),
    "application without destination": (
        "httproute-canary",
        "argocd/minilm-production.yaml",
        lambda d: d["spec"].pop("destination"),
        "destination",
    ),
    "application with an empty repoURL": (
        "httproute-canary",
        "argocd/minilm-production.yaml",
        lambda d: d["spec"]["source"].update(repoURL=""),
        "repoURL",
    ),
    "podmonitor endpoint as a string": (
        "configmap-canary",
        "podmonitor.yaml",
        lambda d: d["spec"].update(podMetricsEndpoints="x"),
        "podMetricsEndpoints",
    ),
    "deployment replicas as text": (
        "configmap-canary",
        "deployment.yaml",
        lambda d: d["spec"].update(replicas="one"),
        "replicas",
    ),
    "deployment unknown container field": (
        "configmap-canary",
        "deployment.yaml",
        lambda d: d["spec"]["template"]["spec"]["containers"][0].update(gpus=1),
        "gpus",
    ),
    "service port as text": (
        "configmap-canary",
        "base/service.yaml",
        lambda d: d["spec"]["ports"][0].update(port="eighty"),
        "port",
    ),
    "routing weights not adding up": (
        "configmap-canary",
        "routing-configmap.yaml",
        lambda d: d["data"].update(
            {"routing.yaml": d["data"]["routing.yaml"].replace("weight: 90", "weight: 80")}
        ),
        "add up to 100",
    ),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_invalid_documents_are_refused(name: str, validator: ManifestValidator) -> None:
    case, suffix, mutate, needle = BROKEN[name]
    with pytest.raises(ManifestInvalid, match=needle):
        validator.validate_document(_broken(case, suffix, mutate))


def test_rendering_error_names_the_file(validator: ManifestValidator) -> None:
    rendering = render(CASES["httproute-canary"], GOLDEN_OPTIONS)
    path = "apps/minilm/overlays/production/httproute.yaml"
    doc = load_yaml(rendering.files[path])
    doc["spec"]["rules"][0]["backendRefs"][1]["weight"] = 1_000_001
    bad = Rendering(files={**rendering.files, path: dump_yaml(doc)}, owned=rendering.owned)
    with pytest.raises(ManifestInvalid, match=f"^{path}: HTTPRoute spec.rules.0.backendRefs.1.weight"):
        validator.validate_rendering(bad)


def test_kustomization_listing_a_missing_file_is_refused(validator: ManifestValidator) -> None:
    rendering = render(CASES["configmap-canary"], GOLDEN_OPTIONS)
    files = {p: t for p, t in rendering.files.items() if not p.endswith("routing-configmap.yaml")}
    with pytest.raises(ManifestInvalid, match=r"routing-configmap\.yaml"):
        validator.validate_rendering(Rendering(files=files, owned=rendering.owned))


def test_unknown_kind_is_refused(validator: ManifestValidator) -> None:
    with pytest.raises(ManifestInvalid):
        validator.validate_document(
            {"apiVersion": "example.com/v1", "kind": "Gizmo", "metadata": {"name": "x"}}
        )
    with pytest.raises(ManifestInvalid, match="apiVersion and kind"):
        validator.validate_document(["not", "a", "mapping"])


def test_the_kept_kubernetes_validators_refuse_what_the_library_refuses_with_its_words(
    validator: ManifestValidator,
) -> None:
    """Built kinds' validators are kept (the library parses 1.4 MB of definitions per document): every
    built-in kind of the renders, valid and broken, and an unknown kind, get the outcome and the
    message `kubernetes_validate.validate` gives, and a second validation the first's."""
    import jsonschema
    import kubernetes_validate

    docs = [
        load_yaml(text)
        for case in sorted(CASES)
        for text in render(CASES[case], GOLDEN_OPTIONS).files.values()
    ]
    docs = [d for d in docs if isinstance(d, dict) and d.get("kind") != "Kustomization"]
    builtin = [d for d in docs if (str(d["apiVersion"]).rpartition("/")[0], d["kind"]) not in CRD_FILES]
    # (the routing file's own check, beside the schema, is not the library's)
    broken = [
        _broken(c, suffix, mutate) for name, (c, suffix, mutate, _) in BROKEN.items() if "routing" not in name
    ]
    gizmo = {"apiVersion": "example.com/v1", "kind": "Gizmo", "metadata": {"name": "x"}}
    checked = 0
    for doc in [*builtin, *broken, gizmo]:
        if (str(doc["apiVersion"]).rpartition("/")[0], doc["kind"]) in CRD_FILES:
            continue
        try:
            kubernetes_validate.validate(doc, "1.33", strict=True)
            expected = None
        except (jsonschema.ValidationError, kubernetes_validate.SchemaNotFoundError) as exc:
            expected = exc.message
        for _ in range(2):
            try:
                validator.validate_document(doc)
                got = None
            except ManifestInvalid as exc:
                got = str(exc)
            assert (got is None) == (expected is None), (doc["kind"], got, expected)
            assert expected is None or (got is not None and got.endswith(expected)), (got, expected)
        checked += 1
    assert checked > 10
