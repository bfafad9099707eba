#!/bin/bash
# test-kubernetes.sh - config/kubernetes renders with "kubectl kustomize", and
# the rendered objects agree with each other and with the image: ports, the
# binding Secret's mount under SERVICE_BINDING_ROOT, the ServiceInstance and
# ServiceBinding, the probes' commands against config/container, the queue
# claim on the queue path, the Istio labels, the security settings, the
# NetworkPolicy, the PodDisruptionBudget, the metrics port (container,
# headless Service, prometheus.io annotations, NetworkPolicy, Containerfile)
# and the optional Secret of SMTP AUTH users; inbound mail: the commented
# BTPRELAY_FETCH_* block against the entrypoint, and fetch-cronjob.yaml
# (outside the kustomization) against the relay's image, ConfigMap, binding,
# user and Service. No cluster runs here: this reads
# the manifests (tests/integration/test-image.sh runs the image with the
# same capabilities, read from statefulset.yaml).
set -u
: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
command -v kubectl >/dev/null 2>&1 || { echo "1..0 # SKIP kubectl not installed (tests/install-deps.sh)"; exit 77; }
python3 -c 'import yaml' 2>/dev/null || { echo "1..0 # SKIP python3-yaml not installed (tests/install-deps.sh)"; exit 77; }
WORK=$(mktemp -d /tmp/btprelay-kubernetes.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

kubectl kustomize "$top_srcdir/config/kubernetes" > "$WORK/rendered.yaml" 2> "$WORK/stderr"
rc=$?
if [ "$rc" != 0 ]; then
	echo "not ok 1 - kubectl kustomize config/kubernetes renders"
	sed 's/^/#   /' "$WORK/stderr"
	echo "1..1"
	exit 1
fi
echo "ok 1 - kubectl kustomize config/kubernetes renders ($(grep -c '^kind:' "$WORK/rendered.yaml") objects)"

python3 - "$WORK/rendered.yaml" "$top_srcdir" <<'PY'
import os, re, sys, yaml

docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
top = sys.argv[2]
n = 1
failed = 0

def ok(cond, text, diag=""):
    global n, failed
    n += 1
    print("%s %d - %s" % ("ok" if cond else "not ok", n, text))
    if not cond:
        failed += 1
        if diag:
            for line in str(diag).splitlines():
                print("#   " + line)

def objs(kind, api=None):
    return [d for d in docs if d.get("kind") == kind and (api is None or d.get("apiVersion") == api)]

def one(kind, api=None):
    found = objs(kind, api)
    ok(len(found) == 1, "exactly one %s%s" % (kind, " (%s)" % api if api else ""), "found %d" % len(found))
    return found[0] if found else {}

def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())

containerfile = open(os.path.join(top, "config/container/Containerfile")).read()
health = open(os.path.join(top, "config/container/health.sh")).read()
entrypoint = open(os.path.join(top, "config/container/entrypoint.sh")).read()

ns = one("Namespace")
sts = one("StatefulSet", "apps/v1")
inst = one("ServiceInstance", "services.cloud.sap.com/v1")
bind = one("ServiceBinding", "services.cloud.sap.com/v1")
netpol = one("NetworkPolicy", "networking.k8s.io/v1")
pdb = one("PodDisruptionBudget", "policy/v1")
services = objs("Service", "v1")
cms = objs("ConfigMap", "v1")

pod = sts.get("spec", {}).get("template", {})
podlabels = pod.get("metadata", {}).get("labels", {})
spec = pod.get("spec", {})
cs = spec.get("containers", [])
ok(len(cs) == 1, "one container in the pod (Istio adds its sidecar)", cs)
c = cs[0] if cs else {}
env = {e["name"]: e.get("value") for e in c.get("env", [])}
cmenv = {}
for ref in c.get("envFrom", []):
    name = ref.get("configMapRef", {}).get("name")
    cm = [m for m in cms if m["metadata"]["name"] == name]
    ok(len(cm) == 1, "envFrom names the generated ConfigMap %s" % name, [m["metadata"]["name"] for m in cms])
    for m in cm:
        cmenv.update(m.get("data", {}))
allenv = dict(cmenv, **env)

# --- ports ---
smtp_port = int(allenv.get("BTPRELAY_SMTP_PORT", "25"))
cports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
ok(cports.get("smtp") == smtp_port, "container port smtp is BTPRELAY_SMTP_PORT (%d)" % smtp_port, cports)
cluster = [s for s in services if s["spec"].get("type", "ClusterIP") == "ClusterIP" and s["spec"].get("clusterIP") != "None"]
ok(len(cluster) == 1, "one ClusterIP Service", [s["metadata"]["name"] for s in services])
for s in services:
    name = s["metadata"]["name"]
    ok(matches(s["spec"].get("selector"), podlabels), "Service %s selects the relay's pods" % name, s["spec"].get("selector"))
    for p in s["spec"].get("ports", []):
        t = p.get("targetPort")
        target = cports.get(t) if isinstance(t, str) else t
        if t == "metrics":
            continue    # checked with the metrics below
        ok(target == smtp_port and p["port"] in (25, 587),
           "Service %s port %s -> the container's SMTP port" % (name, p["port"]), p)
ok(sts["spec"].get("serviceName") in [s["metadata"]["name"] for s in services if s["spec"].get("clusterIP") == "None"],
   "the StatefulSet's serviceName is a headless Service", sts["spec"].get("serviceName"))

# --- metrics ---
listen = allenv.get("BTPRELAY_METRICS_LISTEN", "0.0.0.0:9154")
mport = int(listen.rsplit(":", 1)[1])
ok(not listen.startswith("127.") and not listen.startswith("[::1]"),
   "BTPRELAY_METRICS_LISTEN listens on the pod's addresses", listen)
ok(cports.get("metrics") == mport, "container port metrics is BTPRELAY_METRICS_LISTEN's (%d)" % mport, cports)
ok(re.search(r"^EXPOSE .*\b%d\b" % mport, containerfile, re.M) is not None, "the Containerfile exposes it")
ok(re.search(r"METRICS_LISTEN=\$\{BTPRELAY_METRICS_LISTEN:-0\.0\.0\.0:%d\}" % mport, entrypoint) is not None,
   "the entrypoint's default is the same port")
ann = pod.get("metadata", {}).get("annotations", {})
ok(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == str(mport)
   and ann.get("prometheus.io/path") == "/metrics",
   "prometheus.io annotations: scrape, port %d, path /metrics" % mport, ann)
ok(str(mport) not in ann.get("traffic.sidecar.istio.io/excludeInboundPorts", "").split(","),
   "the metrics port stays behind the Istio sidecar")
mserv = [(s["metadata"]["name"], p) for s in services for p in s["spec"].get("ports", [])
         if p.get("targetPort") == "metrics"]
ok(len(mserv) == 1 and mserv[0][1]["port"] == mport and mserv[0][1].get("name", "").startswith("http-")
   and mserv[0][0] == sts["spec"].get("serviceName"),
   "the headless Service has the metrics port (named http-* for Istio)", mserv)

# --- SMTP AUTH users (optional Secret) ---
susers = [v for v in spec.get("volumes", []) if v.get("secret", {}).get("secretName") == "btprelay-submit-users"]
ok(len(susers) == 1 and susers[0]["secret"].get("optional") is True,
   "the SMTP AUTH users' Secret is an optional volume (without it AUTH stays off)", susers)
if susers:
    sm = [m for m in c.get("volumeMounts", []) if m.get("name") == susers[0]["name"]]
    ok(len(sm) == 1 and sm[0].get("readOnly") is True, "mounted read-only", sm)
    ok(susers[0]["secret"].get("defaultMode", 0o644) & 0o077 == 0, "its files are root's alone (0400)")
    sts_text = open(os.path.join(top, "config/kubernetes/statefulset.yaml")).read()
    m = re.search(r"# - name: BTPRELAY_SUBMIT_USERS_FILE\n\s*#\s+value: (\S+)", sts_text)
    ok(m is not None and sm and m.group(1).startswith(sm[0]["mountPath"].rstrip("/") + "/"),
       "the commented BTPRELAY_SUBMIT_USERS_FILE names a file in that mount", m.group(1) if m else None)
    ok("BTPRELAY_SUBMIT_USERS_FILE" in entrypoint, "the entrypoint reads BTPRELAY_SUBMIT_USERS_FILE")

# --- bindings ---
ok(inst.get("spec", {}).get("serviceOfferingName") == "destination" and inst["spec"].get("servicePlanName") == "lite",
   "ServiceInstance: offering destination, plan lite", inst.get("spec"))
ok(bind.get("spec", {}).get("serviceInstanceName") == inst.get("metadata", {}).get("name"),
   "ServiceBinding names the ServiceInstance", bind.get("spec"))
secret = bind.get("spec", {}).get("secretName")
root = allenv.get("SERVICE_BINDING_ROOT", "")
ok(root.startswith("/"), "SERVICE_BINDING_ROOT is set to an absolute path", root)
vols = {v["name"]: v for v in spec.get("volumes", [])}
mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
bvol = [v for v in vols.values() if v.get("secret", {}).get("secretName") == secret]
ok(len(bvol) == 1, "a volume of the binding's Secret %s" % secret, list(vols))
if bvol:
    m = mounts.get(bvol[0]["name"], {})
    path = m.get("mountPath", "")
    ok(os.path.dirname(path.rstrip("/")) == root.rstrip("/"),
       "the binding is mounted in its own directory right under SERVICE_BINDING_ROOT", "%s vs %s" % (path, root))
    ok(m.get("readOnly") is True, "the binding is mounted read-only", m)
    mode = bvol[0]["secret"].get("defaultMode", 0o644)
    ok(mode & 0o007 == 0, "the binding's files are not readable by other users (defaultMode %04o)" % mode)

# --- queue and writable paths ---
m = re.search(r'^VOLUME \["([^"]+)"\]', containerfile, re.M)
queue_path = m.group(1) if m else None
ok(queue_path == "/var/spool/postfix", "the image declares the queue volume", queue_path)
claims = [t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates", [])]
qm = [mm for mm in c.get("volumeMounts", []) if mm.get("mountPath") == queue_path]
ok(len(qm) == 1 and qm[0]["name"] in claims and qm[0]["name"] not in vols,
   "the queue path is mounted from a volumeClaimTemplate", (claims, qm))
rm = [mm for mm in c.get("volumeMounts", []) if mm.get("mountPath") == "/run"]
ok(len(rm) == 1 and "emptyDir" in vols.get(rm[0]["name"], {}), "/run (the entrypoint's writable tree) is an emptyDir", rm)
ok("RUN=/run/btprelay" in entrypoint, "the entrypoint writes under /run/btprelay")

# --- probes ---
hp = re.search(r'COPY config/container/health.sh (\S+)', containerfile)
hpath = hp.group(1) if hp else None
for probe, arg in (("livenessProbe", "live"), ("readinessProbe", "ready"), ("startupProbe", "ready")):
    cmd = c.get(probe, {}).get("exec", {}).get("command")
    ok(cmd == [hpath, arg], "%s runs %s %s" % (probe, hpath, arg), cmd)
ok("live|ready)" in health and "SMTP_PORT" in health, "the health script takes live|ready and probes the SMTP port")
ready = health.split('if [ "$what" = ready ]', 1)[-1]
ok(not re.search(r"btprelay (probe|token|resolve)|curl|destination", ready, re.I),
   "readiness asks none of SAP's services")

# --- Istio ---
ok(podlabels.get("sidecar.istio.io/inject") == "true", "pod label sidecar.istio.io/inject=true", podlabels)
ok(ns.get("metadata", {}).get("labels", {}).get("istio-injection") == "enabled", "namespace label istio-injection=enabled")
ok(sts.get("metadata", {}).get("namespace") == ns.get("metadata", {}).get("name"), "the StatefulSet is in that namespace")

# --- security ---
sc = c.get("securityContext", {})
ok(sc.get("privileged") is False, "not privileged", sc)
ok(sc.get("allowPrivilegeEscalation") is False, "no privilege escalation", sc)
ok(sc.get("readOnlyRootFilesystem") is True, "read-only root filesystem", sc)
caps = sc.get("capabilities", {})
ok(caps.get("drop") == ["ALL"], "capabilities: drop ALL", caps)
allowed = {"CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL", "NET_BIND_SERVICE", "SETGID", "SETUID"}
ok(set(caps.get("add", [])) <= allowed and "SYS_ADMIN" not in caps.get("add", []),
   "capabilities added are only those Postfix needs", caps.get("add"))
ok(spec.get("automountServiceAccountToken") is False, "no service account token in the pod")
grace = spec.get("terminationGracePeriodSeconds", 30)
ok(grace >= 30, "terminationGracePeriodSeconds %d is above Postfix's stop time" % grace)
mn = allenv.get("BTPRELAY_MYNETWORKS", "")
ok(mn and not re.search(r"(^|[ ,])(0\.0\.0\.0/0|::/0|0/0)", mn), "BTPRELAY_MYNETWORKS is no open relay", mn)

# --- NetworkPolicy, PDB ---
ok(matches(netpol.get("spec", {}).get("podSelector", {}).get("matchLabels"), podlabels), "the NetworkPolicy selects the relay's pods")
ok("Ingress" in netpol.get("spec", {}).get("policyTypes", []), "the NetworkPolicy restricts ingress")
rules = netpol.get("spec", {}).get("ingress", [])
smtp_rules = [r for r in rules if any(p.get("port") == smtp_port for p in r.get("ports", []))]
ok(smtp_rules and all(r.get("from") and all("namespaceSelector" in f and f["namespaceSelector"].get("matchLabels") for f in r["from"]) for r in smtp_rules),
   "SMTP is admitted only from selected namespaces", rules)
metrics_rules = [r for r in rules if any(p.get("port") == mport for p in r.get("ports", []))]
ok(metrics_rules and all(r.get("from") and all("namespaceSelector" in f and f["namespaceSelector"].get("matchLabels") for f in r["from"]) for r in metrics_rules),
   "the metrics port is admitted only from selected namespaces", rules)
ok(all(p.get("port") in (smtp_port, mport) for r in rules for p in r.get("ports", [])),
   "no other port is admitted", rules)
ok(matches(pdb.get("spec", {}).get("selector", {}).get("matchLabels"), podlabels), "the PodDisruptionBudget selects the relay's pods")
ok(1 <= pdb.get("spec", {}).get("minAvailable", 0) < sts["spec"].get("replicas", 1),
   "the PodDisruptionBudget keeps one relay and allows a drain", (pdb.get("spec"), sts["spec"].get("replicas")))

# --- inbound mail: in the relay container (commented env) or the CronJob ---
sts_text = open(os.path.join(top, "config/kubernetes/statefulset.yaml")).read()
fenv = dict(re.findall(r"# - name: (BTPRELAY_FETCH_\w+)\n\s*#\s+value: \"?([^\"\n]*)\"?", sts_text))
ok({"BTPRELAY_FETCH_SOURCES", "BTPRELAY_FETCH_RECIPIENT", "BTPRELAY_FETCH_HOST"} <= set(fenv),
   "statefulset.yaml: a commented BTPRELAY_FETCH_* block (sources, recipient, host)", fenv)
ok(all(re.search(r"\$\{%s:-" % k, entrypoint) for k in fenv), "the entrypoint reads each of them", fenv)
ok(fenv.get("BTPRELAY_FETCH_HOST") == sts["metadata"]["name"] + "-0",
   "BTPRELAY_FETCH_HOST names the StatefulSet's first pod: one fetcher per mailbox",
   (fenv.get("BTPRELAY_FETCH_HOST"), sts["metadata"]["name"]))
ok(fenv.get("BTPRELAY_FETCH_DONE", "delete") in ("delete", "move", "keep") and
   int(fenv.get("BTPRELAY_FETCH_INTERVAL", "60")) >= 5, "its done policy and interval are valid", fenv)
cron_docs = [d for d in yaml.safe_load_all(open(os.path.join(top, "config/kubernetes/fetch-cronjob.yaml"))) if d]
cron = [d for d in cron_docs if d.get("kind") == "CronJob"]
ok(len(cron) == 1, "fetch-cronjob.yaml: one CronJob", [d.get("kind") for d in cron_docs])
cj = cron[0] if cron else {}
cjspec = cj.get("spec", {}).get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})
cjc = (cjspec.get("containers") or [{}])[0]
raw_sts = yaml.safe_load(sts_text)
ok(cjc.get("image") == raw_sts["spec"]["template"]["spec"]["containers"][0]["image"],
   "the CronJob runs the relay's image", cjc.get("image"))
ok(cjc.get("command", [""])[0] == "/usr/sbin/btprelay-fetch" and
   re.search(r"^sbin_PROGRAMS = .*plugin/fetch/btprelay-fetch", open(os.path.join(top, "Makefile.am")).read(), re.M)
   and "--prefix=/usr" in containerfile, "its command is btprelay-fetch as the image installs it", cjc.get("command"))
ok([r.get("configMapRef", {}).get("name") for r in cjc.get("envFrom", [])] ==
   [r.get("configMapRef", {}).get("name") for r in raw_sts["spec"]["template"]["spec"]["containers"][0].get("envFrom", [])],
   "the same envFrom ConfigMap as the relay", cjc.get("envFrom"))
cjvols = {v["name"]: v for v in cjspec.get("volumes", [])}
cjb = [v for v in cjvols.values() if v.get("secret", {}).get("secretName") == secret]
cjenv = {e["name"]: e.get("value") for e in cjc.get("env", [])}
cjm = [m for m in cjc.get("volumeMounts", []) if cjb and m.get("name") == cjb[0]["name"]]
ok(len(cjb) == 1 and len(cjm) == 1 and
   os.path.dirname(cjm[0]["mountPath"].rstrip("/")) == cjenv.get("SERVICE_BINDING_ROOT", "").rstrip("/"),
   "the binding's Secret %s under its SERVICE_BINDING_ROOT" % secret, (cjm, cjenv))
m = re.search(r"--uid (\d+)", containerfile)
ok(m is not None and cjspec.get("securityContext", {}).get("runAsUser") == int(m.group(1)),
   "it runs as the image's btprelay user (uid %s)" % (m.group(1) if m else "?"), cjspec.get("securityContext"))
head = open(os.path.join(top, "config/kubernetes/fetch-cronjob.yaml")).read()
m = re.search(r"fetch_smtp_server = (\S+):(\d+)", head)
ok(m is not None and any(s["metadata"]["name"] == m.group(1) and
                         any(p["port"] == int(m.group(2)) for p in s["spec"].get("ports", [])) for s in cluster),
   "its fetch_smtp_server is the relay's ClusterIP Service and port", m.group(0) if m else None)

print("1..%d" % n)
sys.exit(1 if failed else 0)
PY
