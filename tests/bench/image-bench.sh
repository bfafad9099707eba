#!/bin/bash
# image-bench.sh [-o FILE] [-n MESSAGES] - figures of the relay image
# (config/container), written to tests/bench/IMAGE-RESULTS.md (or FILE):
#   - image size (podman's figure, uncompressed) and the base it was built on;
#   - time from "podman run" to the first "health ready" that answers ok
#     (median of 3; the probe itself polls every 0.1 s);
#   - memory of the container's cgroup (podman stats) at rest, 5 s after ready,
#     and the highest sample (every 0.5 s) while MESSAGES messages (default 500)
#     are submitted over 4 sessions and delivered through btprelay-lmtp to the
#     emulator's relay; the delivery time of that burst, and its rate: the image's
#     throughput on the host network (the container runs with --network host).
# Benchmark figures, never a pass/fail on a timing. Needs root, podman, runc,
# debootstrap (tests/install-deps.sh), like tests/integration/test-image.sh.
set -u
OUT=
N=500
while [ $# -gt 0 ]; do
	case $1 in
	-o) OUT=$2; shift 2 ;;
	-n) N=$2; shift 2 ;;
	*) echo "usage: image-bench.sh [-o FILE] [-n MESSAGES]" >&2; exit 64 ;;
	esac
done
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib/harness.sh"
OUT=${OUT:-$top_srcdir/tests/bench/IMAGE-RESULTS.md}
harness_init image-bench
. "$top_srcdir/tests/lib/image.sh"
image_init
harness_start_emulator
image_build

image_bindings "$WORK/bindings"
install -d -m 755 "$WORK/ca"
install -m 644 "$EMU/certs/ca.pem" "$WORK/ca/ca.pem"

now() { date +%s.%N; }
minus() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f\n", a - b }'; }
mb() { awk -v a="$1" 'BEGIN { printf "%.0f\n", a / 1000000 }'; }
mem() {	# the container's memory in MB (podman stats)
	pdm stats --no-stream --format '{{.MemUsage}}' "$1" 2>/dev/null | awk '{
		v = $1; u = v; sub(/[0-9.]+/, "", u); sub(/[A-Za-z]+$/, "", v)
		f = (u == "GB") ? 1000 : (u == "kB") ? 0.001 : (u == "B") ? 0.000001 : 1
		printf "%.1f\n", v * f }'
}
run_relay() {	# NAME PORT
	image_run "$1" -v "$WORK/bindings:/bindings:ro" -v "$WORK/ca:/ca:ro" \
		--tmpfs /var/spool/postfix:rw,size=256m,mode=755 \
		-e SERVICE_BINDING_ROOT=/bindings -e BTPRELAY_CA_FILE=/ca/ca.pem \
		-e BTPRELAY_INET_INTERFACES=127.0.0.1 -e BTPRELAY_MYNETWORKS=127.0.0.0/8 \
		-e "BTPRELAY_SMTP_PORT=$2" -e "BTPRELAY_ROUTES=corp.example=MAIL_ONPREM"
}

size=$(pdm image inspect -f '{{.Size}}' "$IMAGE")
base=$(pdm image inspect -f '{{.Size}}' "$IMAGE_BASE")
starts=()
for i in 1 2 3; do
	c=btprelay-bench-$$-$i
	port=$(free_port)
	t0=$(now)
	run_relay "$c" "$port"
	image_wait_ready "$c" || { echo "Bail out! $c did not become ready"; exit 99; }
	t1=$(now)
	starts+=("$(minus "$t1" "$t0")")
	if [ "$i" = 3 ]; then
		sleep 5
		rest=$(mem "$c")
		SMTP_PORT=$port
		C=$c
	else
		pdm rm -f -t 10 "$c" >/dev/null 2>&1
	fi
done
start_median=$(printf '%s\n' "${starts[@]}" | sort -n | sed -n 2p)

# under load: N messages, memory sampled until all arrived
emu POST /reset >/dev/null
MARK=bench-$$
t0=$(now)
python3 "$top_srcdir/tests/lib/submit-many.py" submit "127.0.0.1:$SMTP_PORT" "$N" "$MARK" \
	user@corp.example "$WORK/accepted" 4 0 > "$WORK/log/submit.log" 2>&1 &
sub=$!
peak=0
for i in $(seq 1200); do
	m=$(mem "$C")
	peak=$(echo "$m $peak" | awk '{print ($1 > $2) ? $1 : $2}')
	python3 "$top_srcdir/tests/lib/submit-many.py" count "$EMU/messages" "$MARK" "$WORK/accepted" > "$WORK/count" 2>&1 &&
		! kill -0 "$sub" 2>/dev/null && break
	sleep 0.5
done
t1=$(now)
wait "$sub"
burst=$(minus "$t1" "$t0")
counted=$(head -1 "$WORK/count")

{
	echo "# The relay image: figures"
	echo
	echo "Made by \`tests/bench/image-bench.sh\` on $(date -u '+%Y-%m-%d %H:%M') UTC, $(nproc) CPUs"
	echo "(load average $(cut -d' ' -f1-3 /proc/loadavg) at the end: a shared machine), podman $(podman --version | awk '{print $3}') with runc."
	echo "Benchmark figures, not asserted by any test."
	echo
	echo "| figure | value |"
	echo "|---|---|"
	echo "| image size (uncompressed, podman) | $(mb "$size") MB, of which the Debian base (debootstrap minbase) $(mb "$base") MB |"
	printf '| start to ready on a new (empty) queue volume (podman run to the first health ready ok), median of 3 | %.1f s (runs: %s s) |\n' \
		"$start_median" "$(printf '%.1f ' "${starts[@]}" | sed 's/ $//')"
	echo "| memory at rest (cgroup, 5 s after ready) | $rest MB |"
	echo "| memory under load (highest 0.5 s sample, $N messages over 4 SMTP sessions) | $peak MB |"
	printf '| that burst, first submission to last arrival at the relay | %.1f s (%s) |\n' "$burst" "$counted"
	printf '| throughput on the host network (that burst: messages / seconds, submission included) | %.0f msg/s |\n' \
		"$(awk -v n="$N" -v s="$burst" 'BEGIN { print (s > 0) ? n / s : 0 }')"
} > "$OUT"
cat "$OUT"
