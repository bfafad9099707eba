# image.sh - the relay image in tests (bash, sourced after harness.sh).
#
#   image_init              skip (77) without podman, runc, debootstrap; IMAGE set
#   image_build             base image from Debian's packages (cached), then the image
#   image_bindings DIR      the emulator's bindings as BTP service operator Secrets under DIR
#   image_run NAME [podman-run-args...]
#                           start a container on the host network (or $IMAGE_NETWORK), read-only root,
#                           with only the capabilities of config/kubernetes
#   image_wait_ready NAME   until "health ready" answers ok (or the container ended)
#   image_logs NAME FILE    the container's stdout and stderr into FILE
#   image_cleanup           remove the containers and volumes this test made (EXIT)
#   image_kill_supervised NAME PROCESS
#                           SIGKILL a process the entrypoint supervises; 0 when
#                           another one runs within 10 s (OLD_PID, NEW_PID set)
#
# podman runs with runc and fixed ulimits: this machine's cgroups and rlimit
# ceiling defeat crun. Only containers and volumes named here are removed.

IMAGE_CACHE=${IMAGE_CACHE:-/var/cache/btprelay-test}
IMAGE_BASE=localhost/btprelay-test-base:bookworm
# (BTPRELAY_TEST_IMAGE: another tag, for a second checkout testing its own image)
IMAGE=${BTPRELAY_TEST_IMAGE:-localhost/btprelay:test}
IMAGE_ULIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=1000:1000)
# The capabilities the Kubernetes manifests grant, and no more
IMAGE_CAPS=$(sed -n 's/^ *add: \[\(.*\)\]/\1/p' "$top_srcdir/config/kubernetes/statefulset.yaml" | tr -d '" ')
IMAGE_CONTAINERS=()
IMAGE_VOLUMES=()

image_init() {
	local tool
	for tool in podman runc debootstrap; do
		command -v "$tool" >/dev/null 2>&1 ||
			harness_skip "$tool not installed (tests/install-deps.sh)"
	done
	trap 'image_cleanup; harness_stop' EXIT
	PF=$WORK/no-host-postfix	# scenario.sh's queue cleanup has nothing to do
}

pdm() {
	podman --runtime runc "$@"
}

# image_mirror - the Debian mirror apt already uses here
image_mirror() {
	grep -rhoE '(^deb|^URIs:) +https?://[^ ]*debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null |
		grep -v security | awk '{print $2}' | head -1
}

# image_base - localhost/btprelay-test-base from debootstrap --variant=minbase,
# kept as a tarball under $IMAGE_CACHE so later runs only import it
image_base() {
	local mirror tarball=$IMAGE_CACHE/bookworm-minbase.tar
	pdm image exists "$IMAGE_BASE" && return 0
	if [ ! -s "$tarball" ]; then
		mirror=$(image_mirror)
		mirror=${mirror:-http://deb.debian.org/debian}
		rm -rf "$IMAGE_CACHE/rootfs"
		debootstrap --variant=minbase bookworm "$IMAGE_CACHE/rootfs" "$mirror" \
			> "$WORK/log/debootstrap.log" 2>&1 ||
			{ echo "Bail out! debootstrap failed: $(tail -3 "$WORK/log/debootstrap.log")"; exit 99; }
		# as Debian's own images: no package files, no package lists
		rm -rf "$IMAGE_CACHE"/rootfs/var/cache/apt/archives/*.deb "$IMAGE_CACHE"/rootfs/var/lib/apt/lists/*
		tar -C "$IMAGE_CACHE/rootfs" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
		rm -rf "$IMAGE_CACHE/rootfs"
	fi
	pdm import "$tarball" "$IMAGE_BASE" > "$WORK/log/import.log" 2>&1 ||
		{ echo "Bail out! podman import failed: $(tail -3 "$WORK/log/import.log")"; exit 99; }
}

# image_build - the project's Containerfile on the Debian base (layers cached by podman).
# One image test at a time: the lock is held from the build until the test
# ends, so that no other test (make check may run two; another checkout may
# run its own) retags $IMAGE under the containers of this one.
image_build() {
	mkdir -p "$IMAGE_CACHE"
	exec 9> "$IMAGE_CACHE/lock"
	flock -w 1800 9 || { echo "Bail out! $IMAGE_CACHE/lock held for 30 minutes"; exit 99; }
	image_base
	pdm build --network host "${IMAGE_ULIMITS[@]}" --build-arg "BASE=$IMAGE_BASE" \
		-f "$top_srcdir/config/container/Containerfile" -t "$IMAGE" "$top_srcdir" \
		> "$WORK/log/build.log" 2>&1 ||
		{ echo "Bail out! podman build failed: $(tail -15 "$WORK/log/build.log")"; exit 99; }
}

# image_bindings DIR - DIR/destination in the BTP service operator's default
# Secret shape (one file per credential plus type, label, instance_name,
# plan, tags, instance_guid, .metadata), DIR/connectivity in its secretKey
# shape (all credentials in one JSON key), both laid out as a Secret volume
# is (keys are links into ..data, a link to a time-stamped directory), 0400.
image_bindings() {
	python3 - "$EMU/vcap.json" "$1" <<'PY'
import json, os, sys
vcap = json.load(open(sys.argv[1]))
root = sys.argv[2]
os.makedirs(root, mode=0o755, exist_ok=True)
def secret(name, files):
    d = os.path.join(root, name)
    ts = os.path.join(d, "..2026_01_01_00_00_00.000000001")
    os.makedirs(ts, mode=0o755)
    for k, v in files.items():
        with open(os.path.join(ts, k), "w") as f:
            f.write(v)
        os.chmod(os.path.join(ts, k), 0o400)
    os.symlink(os.path.basename(ts), os.path.join(d, "..data"))
    for k in files:
        os.symlink(os.path.join("..data", k), os.path.join(d, k))
dest = vcap["destination"][0]
creds = dest["credentials"]
files = {k: v if isinstance(v, str) else json.dumps(v) for k, v in creds.items()}
meta = {"metaDataProperties": [{"name": n, "format": "text"} for n in
                               ("instance_guid", "instance_name", "label", "plan", "type")]
        + [{"name": "tags", "format": "json"}],
        "credentialProperties": [{"name": k, "format": "text" if isinstance(v, str) else "json"}
                                 for k, v in creds.items()]}
files.update({"type": "destination", "label": "destination", "plan": "lite",
              "instance_name": dest["name"], "instance_guid": "8c5d2b1e-0f3a-4e6b-9a7c-1d2e3f4a5b6c",
              "tags": json.dumps(dest.get("tags", ["destination"])), ".metadata": json.dumps(meta)})
secret("destination", files)
conn = vcap["connectivity"][0]
secret("connectivity", {"credentials": json.dumps(conn["credentials"]), "type": "connectivity",
                        "label": "connectivity", "plan": "lite", "instance_name": conn["name"],
                        ".metadata": json.dumps({"credentialProperties": [
                            {"name": "credentials", "format": "json"}]})})
PY
}

# image_run NAME [podman-run-args...] - a container on the host network with a
# read-only root filesystem; the caller's -e/-v arguments configure it
image_run() {
	local name=$1
	shift
	IMAGE_CONTAINERS+=("$name")
	pdm run -d --name "$name" --network "${IMAGE_NETWORK:-host}" --read-only "${IMAGE_ULIMITS[@]}" \
		--cap-drop ALL --cap-add "$IMAGE_CAPS" --security-opt no-new-privileges \
		--log-driver k8s-file --stop-timeout 30 "$@" "$IMAGE" > "$WORK/log/run-$name.log" 2>&1
}

# image_volume NAME - a named volume for the queue, removed at exit
image_volume() {
	IMAGE_VOLUMES+=("$1")
	pdm volume create "$1" >/dev/null
}

image_running() {
	[ "$(pdm inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" = true ]
}

image_wait_ready() {
	local i
	for i in $(seq 600); do
		pdm exec "$1" /usr/libexec/btprelay/health ready >/dev/null 2>&1 && return 0
		image_running "$1" || return 1
		sleep 0.1
	done
	return 1
}

image_logs() {
	pdm logs "$1" > "$2" 2>&1
}

# image_exit_code NAME - waits for the container to end; prints its exit code
image_exit_code() {
	pdm wait "$1" 2>/dev/null | tail -1
}

image_cleanup() {
	local c v
	for c in "${IMAGE_CONTAINERS[@]}"; do
		pdm rm -f -t 5 "$c" >/dev/null 2>&1
	done
	for v in "${IMAGE_VOLUMES[@]}"; do
		pdm volume rm -f "$v" >/dev/null 2>&1
	done
	# a network namespace and veth link a test made (IMAGE_NETNS, IMAGE_VETH)
	[ -z "${IMAGE_VETH:-}" ] || ip link del "$IMAGE_VETH" >/dev/null 2>&1
	[ -z "${IMAGE_NETNS:-}" ] || ip netns del "$IMAGE_NETNS" >/dev/null 2>&1
	return 0
}

# image_kill_supervised NAME PROCESS - SIGKILL the process whose id is in
# /run/btprelay/PROCESS.pid of container NAME; 0 when the entrypoint started
# another one within 10 s (its first pause is 1 s). OLD_PID and NEW_PID say which.
image_kill_supervised() {
	local i pidfile=/run/btprelay/$2.pid
	OLD_PID=$(pdm exec "$1" cat "$pidfile" 2>/dev/null)
	NEW_PID=
	# (the shell's kill: the image has no procps)
	[ -n "$OLD_PID" ] && pdm exec "$1" sh -c 'kill -KILL "$0"' "$OLD_PID" >/dev/null 2>&1 || return 1
	for i in $(seq 100); do
		NEW_PID=$(pdm exec "$1" cat "$pidfile" 2>/dev/null)
		[ -n "$NEW_PID" ] && [ "$NEW_PID" != "$OLD_PID" ] &&
			pdm exec "$1" sh -c 'kill -0 "$0"' "$NEW_PID" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}

# image_follow NAME FILE - copy the container's output into FILE as it comes
# (wait_status reads $WORK/log/maillog); ends with the container
image_follow() {
	pdm logs -f "$1" > "$2" 2>&1 &
}

# expect_no_secret_encodings FILE... - none of the emulator's secrets (nor those
# of the files in $SECRET_SCAN_EXTRA) in any
# encoding a log could carry: raw, base64 (at each of the three alignments a
# secret can have inside a longer encoded text, e.g. AUTH PLAIN), base64url,
# percent-encoding and hex
expect_no_secret_encodings() {
	local diag
	# the emulator's secrets and the test's own ($SECRET_SCAN_EXTRA: files, one a line)
	cat "$EMU/secrets.txt" ${SECRET_SCAN_EXTRA:-} > "$WORK/secrets-all.txt"
	diag=$(python3 - "$WORK/secrets-all.txt" "$@" <<'PY'
import base64, binascii, sys, urllib.parse
secrets = [l.strip() for l in open(sys.argv[1], encoding="utf-8") if l.strip()]
forms = []
for s in secrets:
    b = s.encode()
    forms.append(b)
    for pad in range(3):
        # drop the groups that hold other bytes: the first (pad), the last (what follows)
        enc = base64.b64encode(b"\0" * pad + b)[4 if pad else 0:-4]
        if len(enc) >= 8:
            forms += [enc, enc.replace(b"+", b"-").replace(b"/", b"_")]
    forms.append(urllib.parse.quote(s, safe="").encode())
    forms.append(binascii.hexlify(b))
hits = []
for f in sys.argv[2:]:
    data = open(f, "rb").read()
    for i, form in enumerate(forms):
        if form in data:
            hits.append("%s: form #%d" % (f, i))
print("%d secrets, %d forms; %s" % (len(secrets), len(forms), "; ".join(hits) or "no hit"))
sys.exit(1 if hits or len(secrets) < 4 else 0)
PY
)
	tap_ok $? "$SCEN: no secret in $# file(s), raw or encoded" "$diag"
}
