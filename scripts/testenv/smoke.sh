#!/usr/bin/env bash
# End-to-end check of a running testenv (started with scripts/testenv/start.sh DIR), using kubectl:
#   1. a 3-replica Deployment tolerating the kwok taint becomes 3/3 available on the fake node
#   2. a CRD with an x-kubernetes-validations (CEL) rule rejects a violating object
#   3. a ServiceAccount token is denied by RBAC until a Role is bound, then allowed
# Usage: scripts/testenv/smoke.sh DIR      (exit 0 = all passed)
set -euo pipefail
if [[ $# -ne 1 ]]; then echo "usage: $0 DIR" >&2; exit 2; fi
DIR="$(cd "$1" && pwd)"
[[ -f "$DIR/env" ]] || { echo "no $DIR/env: is the testenv started?" >&2; exit 1; }
set -a; . "$DIR/env"; set +a
command -v kubectl >/dev/null || { echo "kubectl is not on PATH" >&2; exit 1; }

NS="smoke-$$"
pass=0; fail=0
step() { printf '[smoke %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
ok() { pass=$((pass + 1)); step "PASS: $*"; }
ko() { fail=$((fail + 1)); step "FAIL: $*"; }
k() { kubectl "$@" 2> >(grep -v 'version difference between client' >&2); }

k version 2>/dev/null | sed 's/^/  /' >&2 || true
k create namespace "$NS" >/dev/null
# The serviceaccount controller creates "default" in every new namespace; pods need it.
for _ in $(seq 1 100); do k -n "$NS" get serviceaccount default >/dev/null 2>&1 && break; sleep 0.2; done

# ---- 1. Deployment on the kwok node -----------------------------------------------------------
t0=$SECONDS
k -n "$NS" apply -f - >/dev/null <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      nodeSelector: {type: kwok}
      tolerations:
      - {key: kwok.x-k8s.io/node, operator: Exists, effect: NoSchedule}
      containers:
      - name: web
        image: registry.invalid/web:1   # never pulled: kwok only fakes the pod lifecycle
        resources:
          requests: {cpu: 100m, memory: 64Mi}
EOF
if k -n "$NS" wait deployment/web --for=condition=Available --timeout=120s >/dev/null &&
   [[ "$(k -n "$NS" get deployment web -o jsonpath='{.status.availableReplicas}')" == "3" ]]; then
  ok "deployment web 3/3 available after $((SECONDS - t0)) s"
  k -n "$NS" get pods -o wide 2>/dev/null | sed 's/^/  /' >&2
else
  ko "deployment web did not become 3/3 available"
  k -n "$NS" get deploy,rs,pods -o wide >&2 || true
  k -n "$NS" get events >&2 || true
fi

# ---- 2. CRD with a CEL validation rule --------------------------------------------------------
k apply -f - >/dev/null <<'EOF'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.smoke.mcp-runtime.test
spec:
  group: smoke.mcp-runtime.test
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              minReplicas: {type: integer}
              maxReplicas: {type: integer}
            x-kubernetes-validations:
            - rule: "self.minReplicas <= self.maxReplicas"
              message: "minReplicas must not exceed maxReplicas"
EOF
k wait crd/widgets.smoke.mcp-runtime.test --for=condition=Established --timeout=60s >/dev/null
good_ok=0
for _ in $(seq 1 50); do   # discovery of a new CRD can lag a moment behind Established
  if k -n "$NS" apply -f - >/dev/null 2>&1 <<'EOF'
apiVersion: smoke.mcp-runtime.test/v1
kind: Widget
metadata: {name: good}
spec: {minReplicas: 1, maxReplicas: 3}
EOF
  then good_ok=1; break; fi
  sleep 0.2
done
[[ $good_ok == 1 ]] && ok "valid Widget accepted" || ko "valid Widget was not accepted"
if out="$(k -n "$NS" apply -f - 2>&1 <<'EOF'
apiVersion: smoke.mcp-runtime.test/v1
kind: Widget
metadata: {name: bad}
spec: {minReplicas: 5, maxReplicas: 3}
EOF
)"; then
  ko "violating Widget was accepted: $out"
elif grep -q "minReplicas must not exceed maxReplicas" <<<"$out"; then
  ok "violating Widget rejected by CEL rule: $(grep -o 'The Widget "bad" is invalid.*' <<<"$out" | head -c 160)"
else
  ko "violating Widget rejected, but not by the CEL rule: $out"
fi

# ---- 3. ServiceAccount token + RBAC -----------------------------------------------------------
k -n "$NS" create serviceaccount tester >/dev/null
TOKEN="$(k -n "$NS" create token tester --duration=10m)"
sa() { kubectl --kubeconfig=/dev/null --server="$MCP_TESTENV_API_URL" --certificate-authority="$MCP_TESTENV_CA_FILE" \
  --token="$TOKEN" -n "$NS" "$@"; }
who="$(sa auth whoami -o jsonpath='{.status.userInfo.username}' 2>/dev/null || true)"
[[ "$who" == "system:serviceaccount:$NS:tester" ]] && ok "token authenticates as $who" || ko "whoami gave '$who'"
if out="$(sa get pods 2>&1)"; then
  ko "unbound ServiceAccount could list pods"
elif grep -qi "forbidden" <<<"$out"; then
  ok "unbound ServiceAccount denied: $(grep -io 'pods is forbidden.*' <<<"$out" | head -c 140)"
else
  ko "unexpected error for unbound ServiceAccount: $out"
fi
k -n "$NS" create role pod-reader --verb=get,list,watch --resource=pods >/dev/null
k -n "$NS" create rolebinding tester-pod-reader --role=pod-reader --serviceaccount="$NS:tester" >/dev/null
allowed=0
for _ in $(seq 1 50); do
  if sa get pods >/dev/null 2>&1; then allowed=1; break; fi
  sleep 0.2
done
[[ $allowed == 1 ]] && ok "bound ServiceAccount can list pods" || ko "bound ServiceAccount still denied"
if sa get secrets >/dev/null 2>&1; then ko "bound ServiceAccount can list secrets"; else ok "bound ServiceAccount still cannot list secrets"; fi

k delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
k delete crd widgets.smoke.mcp-runtime.test --wait=false >/dev/null 2>&1 || true
echo "smoke: $pass passed, $fail failed"
[[ $fail == 0 ]]
