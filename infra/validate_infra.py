"""Structural checks behind infra/validate.sh (run with the project's Python).

Each sub-command prints what it found wrong, one line each, and exits 1 if anything was:

  compose CONFIG_JSON       the resolved compose model (`docker compose config --format json`)
  dashboard DASHBOARD_JSON  the Grafana dashboard: valid, panels sane, every DTQ metric shown
  promql-rules DASHBOARD_JSON OUT_YAML
                            writes the dashboard's queries as recording rules, so that
                            `promtool check rules` can parse every PromQL expression
  prometheus PROMETHEUS_YML fallback when promtool is missing: YAML structure only
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

DTQ_ROLES = ("migrate", "api", "scheduler", "worker")
DASHBOARD_METRICS = (
    "task_queue_depth",
    "task_throughput_total",
    "task_failures_total",
    "task_retries_total",
    "task_dead_total",
    "task_wait_seconds_bucket",
    "task_run_seconds_bucket",
    "workers_alive",
)


def _depends(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def check_compose(model: dict[str, Any]) -> list[str]:
    services: dict[str, Any] = model.get("services", {})
    expected = set(DTQ_ROLES) | {"redis", "postgres", "localstack", "prometheus", "grafana"}
    errors = [f"service {name!r} is missing" for name in sorted(expected - services.keys())]
    return errors + _check_roles(services) + _check_worker(services) + _check_backends(services)


def _check_roles(services: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    images = {services[r].get("image") for r in DTQ_ROLES if r in services}
    if len(images) != 1:
        errors.append(f"DTQ roles must share one image, found {sorted(map(str, images))}")
    for role in DTQ_ROLES:
        svc = services.get(role)
        if svc is None:
            continue
        build = svc.get("build") or {}
        if not str(build.get("dockerfile", "")).endswith("infra/Dockerfile"):
            errors.append(f"{role}: build.dockerfile must be infra/Dockerfile")
        env = svc.get("environment") or {}
        for var in ("DTQ_REDIS_URL", "DTQ_DATABASE_URL", "DTQ_JWT_SECRET_ID", "AWS_ENDPOINT_URL"):
            if not env.get(var):
                errors.append(f"{role}: environment {var} is not set")
        if role == "migrate":
            if svc.get("restart") not in (None, "no"):
                errors.append("migrate: a one-shot must not restart")
            continue
        deps = _depends(svc)
        if deps.get("migrate") != "service_completed_successfully":
            errors.append(f"{role}: must depend on migrate completing successfully")
        for backend in ("redis", "postgres"):
            if deps.get(backend) != "service_healthy":
                errors.append(f"{role}: must depend on {backend} being healthy")
    return errors


def _check_worker(services: dict[str, Any]) -> list[str]:
    worker = services.get("worker", {})
    errors = []
    if "container_name" in worker:
        errors.append("worker: container_name prevents --scale worker=N")
    if any(port.get("published") for port in worker.get("ports") or []):
        errors.append("worker: a published host port prevents --scale worker=N")
    return errors


def _check_backends(services: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    redis_cmd = " ".join(map(str, services.get("redis", {}).get("command") or []))
    for flag in ("--appendonly yes", "--appendfsync everysec", "--maxmemory-policy noeviction"):
        if flag not in redis_cmd:
            errors.append(f"redis: command lacks {flag!r}")
    for name in ("redis", "postgres", "localstack", "prometheus", "grafana"):
        health = services.get(name, {}).get("healthcheck") or {}
        if not health.get("test") or health.get("disable"):
            errors.append(f"{name}: no healthcheck")
    localstack = services.get("localstack", {})
    if (localstack.get("environment") or {}).get("SERVICES") != "s3,sns,secretsmanager":
        errors.append("localstack: SERVICES must be s3,sns,secretsmanager")
    targets = [v.get("target") for v in localstack.get("volumes") or []]
    if "/etc/localstack/init/ready.d" not in targets:
        errors.append("localstack: ../localstack/ready.d is not mounted as init/ready.d")
    return errors


def _exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (str(panel.get("title")), str(target.get("expr", "")))
        for panel in dashboard.get("panels", [])
        for target in panel.get("targets", [])
    ]


def check_dashboard(dashboard: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    for key in ("uid", "title", "panels", "schemaVersion"):
        if not dashboard.get(key):
            errors.append(f"dashboard: missing {key!r}")
    ids = [p.get("id") for p in dashboard.get("panels", [])]
    if len(ids) != len(set(ids)):
        errors.append("dashboard: panel ids are not unique")
    for panel in dashboard.get("panels", []):
        title = panel.get("title", "?")
        grid = panel.get("gridPos") or {}
        if not all(isinstance(grid.get(k), int) for k in ("x", "y", "w", "h")):
            errors.append(f"panel {title!r}: gridPos needs integer x, y, w, h")
        elif grid["x"] + grid["w"] > 24:
            errors.append(f"panel {title!r}: wider than the 24-column grid")
        if not panel.get("targets") or not all(t.get("expr") for t in panel["targets"]):
            errors.append(f"panel {title!r}: every target needs a PromQL expr")
    text = "\n".join(expr for _, expr in _exprs(dashboard))
    errors += [f"dashboard: no panel shows {m}" for m in DASHBOARD_METRICS if m not in text]
    for quantile in ("0.5", "0.99"):
        for metric in ("task_wait_seconds", "task_run_seconds"):
            if f"histogram_quantile({quantile}, sum by (le) (rate({metric}_bucket" not in text:
                errors.append(f"dashboard: no p{quantile[2:]} panel for {metric}")
    return errors


def promql_rules(dashboard: dict[str, Any]) -> dict[str, Any]:
    rules = []
    for i, (_, expr) in enumerate(_exprs(dashboard)):
        concrete = expr.replace("$__rate_interval", "5m").replace("$queue", ".*")
        rules.append({"record": f"dashboard:expr_{i}", "expr": concrete})
    return {"groups": [{"name": "dtq-dashboard-queries", "rules": rules}]}


def check_prometheus(config: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    jobs = config.get("scrape_configs") or []
    targets = [
        target
        for job in jobs
        for static in job.get("static_configs") or []
        for target in static.get("targets") or []
    ]
    if "api:8000" not in targets:
        errors.append("prometheus.yml: api:8000 is not scraped")
    if any(job.get("metrics_path", "/metrics") != "/metrics" for job in jobs):
        errors.append("prometheus.yml: DTQ serves metrics at /metrics")
    return errors


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    command, path = argv[0], Path(argv[1])
    try:
        if command == "compose":
            errors = check_compose(json.loads(path.read_text()))
        elif command == "dashboard":
            errors = check_dashboard(json.loads(path.read_text()))
        elif command == "promql-rules" and len(argv) == 3:
            rules = promql_rules(json.loads(path.read_text()))
            Path(argv[2]).write_text(yaml.safe_dump(rules, sort_keys=False))
            errors = []
        elif command == "prometheus":
            errors = check_prometheus(yaml.safe_load(path.read_text()) or {})
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except (OSError, ValueError, yaml.YAMLError) as exc:
        errors = [f"{path}: {exc}"]
    for error in errors:
        print(error)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
