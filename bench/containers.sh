#!/usr/bin/env bash
# The container benchmark: our steps side by side with `unshare`, crun and runc,
# each starting /bin/true from the same rootfs, timed by hyperfine; and our KVM step
# against the floor its ioctls set. Prints a Markdown table and the bar's verdicts.
#
#   sudo env PATH="$PATH" bash bench/containers.sh [OUT.md]
#
# Needs root, hyperfine and jq; crun and runc are used when installed. Builds the
# binaries with Cargo.toml's measure profile, release with whole-program LTO (debug
# builds' numbers are not worth comparing), makes its own rootfs and OCI bundle in
# a temporary directory and removes them at the end.
# With a C compiler and the kernel's headers, it also builds the real-mode KVM step
# written in C (bench/kvm-real-mode.c: the same ioctls, guest and output) as that
# step's floor. Not run by CI: it measures, it asserts nothing.
#
# Knobs (environment): ROUNDS (5) rounds of RUNS (50) runs per command, after
# WARMUP (10); COLD_RUNS (30) runs per command with the machine idle for 50 ms
# before each (0 skips that table). hyperfine runs one command's runs back to back,
# then the next command's; several shorter rounds spread a busy moment of the
# machine over all the commands instead of one. PAIRS (100): the real-mode step and
# its C twin timed in turn, 5 runs each after one warm-up, that many times; the bar
# takes the median of the pairs' ratios, which a busy moment shifts far less than
# it shifts a ratio of two medians taken seconds apart.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
RUNS=${RUNS:-50}
WARMUP=${WARMUP:-10}
COLD_RUNS=${COLD_RUNS:-30}
PAIRS=${PAIRS:-100}
OUT=${1:-}

die() { echo "containers.sh: $*" >&2; exit 1; }
[[ $EUID -eq 0 ]] || die "needs root (namespaces, cgroups, crun): run it with sudo"
for tool in hyperfine jq cargo unshare; do
    command -v "$tool" >/dev/null || die "needs $tool on PATH (sudo env PATH=\"\$PATH\" bash $0)"
done

echo "building the binaries (the measure profile: release, whole-program LTO)..." >&2
cargo build --profile measure --quiet --package isolab --bins
T=$PWD/target/measure

work=$(mktemp -d /tmp/isolab-bench.XXXXXX)
ID=isolab-bench-$$
cleanup() {
    for runtime in crun runc; do
        if command -v "$runtime" >/dev/null; then
            "$runtime" delete -f "$ID" >/dev/null 2>&1 || true
        fi
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

R=$work/rootfs
"$T/isolab" rootfs "$R" >/dev/null
[[ -x $R/bin/true ]] || die "the rootfs has no /bin/true: install busybox-static"

# The OCI bundle: crun's default spec, trimmed to the same work as our step 04:
# /bin/true, the same rootfs (writable, as ours), pid, ipc, uts, mount and cgroup
# namespaces (no network namespace: ours has none), and the same limits.
runtimes=()
for runtime in crun runc; do command -v "$runtime" >/dev/null && runtimes+=("$runtime"); done
if ((${#runtimes[@]})); then
    mkdir "$work/bundle"
    (cd "$work/bundle" && "${runtimes[0]}" spec)
    jq --arg root "$R" '
        .process.args = ["/bin/true"] | .process.terminal = false
        | .root = {path: $root, readonly: false}
        | .linux.resources = {memory: {limit: 67108864}, pids: {limit: 32},
                              cpu: {quota: 50000, period: 100000}}
        | .linux.namespaces = [{type: "pid"}, {type: "ipc"}, {type: "uts"},
                               {type: "mount"}, {type: "cgroup"}]' \
        "$work/bundle/config.json" >"$work/config.json"
    mv "$work/config.json" "$work/bundle/config.json"
fi

# name|command, one per line: what hyperfine runs (-N: no shell in between).
LIMITS="--memory 64m --pids-limit 32 --cpus 0.5"
containers=(
    "plain process (00)|$T/00-process-solution -- $R/bin/true"
    "unshare + chroot|unshare --pid --fork --uts --ipc --mount --cgroup chroot $R /bin/true"
    "ours: mount namespace, pivot_root (03)|$T/03-mount-namespace-solution --rootfs $R -- /bin/true"
    "ours: full container, limits (04)|$T/04-cgroups-solution --rootfs $R $LIMITS -- /bin/true"
)
for runtime in "${runtimes[@]}"; do
    version=$("$runtime" --version | head -1 | awk '{print $3}')
    containers+=("$runtime $version|$runtime run --bundle $work/bundle $ID")
done
# The real-mode step in C: the same work as a process, without what Rust brings (its
# standard library's start-up, clap). It must print exactly what the step prints.
C07="step 07 in C: the same ioctls, guest and output"
c07=()
if command -v cc >/dev/null && cc -O2 -o "$work/kvm-real-mode" bench/kvm-real-mode.c 2>"$work/cc.log"; then
    "$work/kvm-real-mode" >"$work/c07.out" || die "bench/kvm-real-mode.c failed (above)"
    "$T/07-kvm-real-mode-solution" >"$work/rust07.out" || die "step 07 failed (above)"
    cmp -s "$work/c07.out" "$work/rust07.out" ||
        die "step 07 and bench/kvm-real-mode.c print different things: $(diff "$work/rust07.out" "$work/c07.out")"
    c07=("$C07|$work/kvm-real-mode")
else
    echo "containers.sh: step 07 is not timed against C: no cc, or it failed: $(head -1 "$work/cc.log" 2>/dev/null)" >&2
fi
vms=(
    "a Rust process that does nothing|$T/probe exit 0"
    "KVM floor as a process: open, create, HLT, close|$T/kvm-floor"
    "${c07[@]}"
    "ours: step 07, the whole process|$T/07-kvm-real-mode-solution"
)

# crun 1.8 refuses a hybrid cgroup layout ("cgroups in hybrid mode not supported,
# drop all controllers from cgroupv2"). In a private mount namespace where the v2
# tree's controller list reads empty, it takes the v1 controllers. hyperfine itself
# runs in that namespace, so every command is measured the same way.
hybrid=no
if [[ -f /sys/fs/cgroup/unified/cgroup.controllers ]] &&
    [[ $(stat -f -c %T /sys/fs/cgroup) != cgroup2fs ]]; then
    hybrid=yes
fi
layout=$(stat -f -c %T /sys/fs/cgroup)
if [[ $hybrid == yes ]]; then layout=hybrid; fi
run_hyperfine() {
    if [[ $hybrid == yes ]]; then
        unshare --mount --propagation private sh -c \
            'mount --bind /dev/null /sys/fs/cgroup/unified/cgroup.controllers && exec hyperfine "$@"' \
            sh "$@"
    else
        hyperfine "$@"
    fi
}

# Run hyperfine on a list of "name|command" entries; its JSON goes to $1.
bench() {
    local json=$1 runs=$2 warmup=$3
    shift 3
    local args=(-N --style none --runs "$runs" --warmup "$warmup" --export-json "$json")
    [[ ${PREPARE:-} ]] && args+=(--prepare "$PREPARE")
    local entry
    for entry in "$@"; do args+=(-n "${entry%%|*}" "${entry#*|}"); done
    # hyperfine's warnings about outliers are noise here; its errors are not.
    if ! run_hyperfine "${args[@]}" >/dev/null 2>"$work/hyperfine.log"; then
        cat "$work/hyperfine.log" >&2
        die "hyperfine failed (above)"
    fi
}

# Medians, minimums and maximums (ms) over every round's samples, per command name,
# in the order the commands ran.
summarize() {
    jq -s '. as $rounds | [$rounds[0].results[].command] | map(. as $name | {
        name: $name,
        times: ([$rounds[].results[] | select(.command == $name) | .times[]] | sort)
    }) | map(. + {
        median: (.times | if length % 2 == 1 then .[length / 2 | floor]
                 else (.[length / 2 - 1] + .[length / 2]) / 2 end * 1000),
        min: (.times[0] * 1000), max: (.times[-1] * 1000), n: (.times | length)
    }) | map(del(.times))' "$@"
}

echo "timing ${#containers[@]} container commands and ${#vms[@]} VM commands:" \
    "$ROUNDS rounds of $RUNS runs each..." >&2
for ((round = 1; round <= ROUNDS; round++)); do
    echo "  round $round of $ROUNDS" >&2
    bench "$work/containers-$round.json" "$RUNS" "$WARMUP" "${containers[@]}"
    bench "$work/vms-$round.json" "$RUNS" "$WARMUP" "${vms[@]}"
done
summarize "$work"/containers-*.json >"$work/containers.json"
summarize "$work"/vms-*.json >"$work/vms.json"
if ((COLD_RUNS > 0)); then
    echo "timing the containers cold: $COLD_RUNS runs, 50 ms idle before each..." >&2
    PREPARE="sleep 0.05" bench "$work/cold-1.json" "$COLD_RUNS" 1 "${containers[@]}"
    summarize "$work/cold-1.json" >"$work/cold.json"
fi

# The in-process floor: the probe's own clock around the ioctls, RUNS times.
for ((i = 0; i < RUNS; i++)); do
    "$T/kvm-floor" | awk '/^kvm lifecycle:/ {print $3 / 1e6}'
done | sort -g >"$work/ioctls.txt"
ioctls=$(awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}' "$work/ioctls.txt")
ioctls_min=$(head -1 "$work/ioctls.txt")
ioctls_max=$(tail -1 "$work/ioctls.txt")

# The real-mode step against its C twin, in pairs: hyperfine times one, then the
# other (5 runs each after a warm-up run, the order swapped every pair), PAIRS
# times. Each pair gives one ratio of medians, step over C, a line of pairs.txt.
if ((${#c07[@]})); then
    echo "timing step 07 against its C twin: $PAIRS pairs..." >&2
    for ((i = 0; i < PAIRS; i++)); do
        pair=(-n c "$work/kvm-real-mode" -n rust "$T/07-kvm-real-mode-solution")
        ((i % 2)) && pair=(-n rust "$T/07-kvm-real-mode-solution" -n c "$work/kvm-real-mode")
        run_hyperfine -N --style none --runs 5 --warmup 1 --export-json "$work/pair.json" "${pair[@]}" \
            >/dev/null 2>"$work/hyperfine.log" || { cat "$work/hyperfine.log" >&2; die "hyperfine failed (above)"; }
        jq -r '[.results[] | {(.command): .median}] | add | .rust / .c' "$work/pair.json"
    done | sort -g >"$work/pairs.txt"
fi
quantile() { awk -v q="$1" '{v[NR] = $1} END {i = int(q * (NR - 1) + 0.5) + 1; printf "%.2f", v[i]}' "$2"; }

median_of() { jq -r --arg n "$2" '.[] | select(.name == $n) | .median' "$1"; }
# The ratio of two commands' medians in each round: how steady a verdict is. $3 is
# which table's rounds (containers by default, or vms).
per_round() {
    local round
    for ((round = 1; round <= ROUNDS; round++)); do
        summarize "$work/${3:-containers}-$round.json" >"$work/round.json"
        ratio "$(median_of "$work/round.json" "$1")" "$(median_of "$work/round.json" "$2")"
        printf ' '
    done
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "?" }'; }
verdict() { awk -v r="$1" -v bar="$2" 'BEGIN { print (r != "?" && r <= bar) ? "**pass**" : "**FAIL**" }'; }

table() { # $1: summary JSON, $2: the name every row is compared with
    local base
    base=$(median_of "$1" "$2")
    echo "| what | median ms | min | max | runs | vs \"$2\" |"
    echo "|---|---:|---:|---:|---:|---:|"
    jq -r --argjson base "$base" '.[] | "| \(.name) | \(.median * 100 | round / 100) | \(.min * 100 | round / 100) | \(.max * 100 | round / 100) | \(.n) | \(.median / $base * 100 | round / 100)x |"' "$1"
}

ours=$(median_of "$work/containers.json" "ours: full container, limits (04)")
bare=$(median_of "$work/containers.json" "unshare + chroot")
vm=$(median_of "$work/vms.json" "ours: step 07, the whole process")
floor_process=$(median_of "$work/vms.json" "KVM floor as a process: open, create, HLT, close")
nothing=$(median_of "$work/vms.json" "a Rust process that does nothing")

report() {
    echo "## Containers: /bin/true from the same rootfs, start to exit"
    echo
    echo "hyperfine -N, $ROUNDS rounds of $RUNS runs of each command after $WARMUP warm-up runs, back to back (warm)."
    echo "Medians over all rounds' runs, in ms. Release builds with whole-program LTO (Cargo.toml's measure profile)."
    [[ $hybrid == yes ]] && echo "Hybrid cgroups: every command ran in a private mount namespace whose cgroup2 controller list reads empty (for crun 1.8)."
    echo
    table "$work/containers.json" "ours: full container, limits (04)"
    if [[ -f $work/cold.json ]]; then
        echo
        echo "### Cold: the machine idle for 50 ms before each run ($COLD_RUNS runs, hyperfine --prepare 'sleep 0.05')"
        echo
        table "$work/cold.json" "ours: full container, limits (04)"
    fi
    echo
    echo "## A VM: create, run to HLT, tear down"
    echo
    table "$work/vms.json" "ours: step 07, the whole process"
    printf '| the ioctls alone, in-process (the probe'"'"'s own clock, %s runs) | %.2f | %.2f | %.2f | %s | %sx |\n' \
        "$RUNS" "$ioctls" "$ioctls_min" "$ioctls_max" "$RUNS" "$(ratio "$ioctls" "$vm")"
    echo
    echo "## The bar"
    echo
    for runtime in "${runtimes[@]}"; do
        version=$("$runtime" --version | head -1 | awk '{print $3}')
        other=$(median_of "$work/containers.json" "$runtime $version")
        r=$(ratio "$ours" "$other")
        echo "- ours (04) against $runtime $version: $r x its time (bar: at most 0.5): $(verdict "$r" 0.5)" \
            "(round by round: $(per_round "ours: full container, limits (04)" "$runtime $version"))"
    done
    r=$(ratio "$ours" "$bare")
    echo "- ours (04) against a bare unshare with chroot: $r x (bar: at most 1.5): $(verdict "$r" 1.5)" \
        "(round by round: $(per_round "ours: full container, limits (04)" "unshare + chroot"))"
    if ((${#c07[@]})); then
        local c07_ms r07
        c07_ms=$(median_of "$work/vms.json" "$C07")
        r07=$(quantile 0.5 "$work/pairs.txt")
        echo "- step 07's whole process against the same ioctls in C, run as a process" \
            "(bench/kvm-real-mode.c, $(printf %.2f "$c07_ms") ms): $r07 x, the median of $PAIRS pairs" \
            "(quartiles $(quantile 0.25 "$work/pairs.txt") to $(quantile 0.75 "$work/pairs.txt")) (bar: at most 1.1):" \
            "$(verdict "$r07" 1.1) (from the table's medians: $(ratio "$vm" "$c07_ms");" \
            "round by round: $(per_round "ours: step 07, the whole process" "$C07" vms))"
    fi
    echo "- step 07's whole process against the floor of its ioctls ($(printf %.2f "$ioctls") ms in-process): $(ratio "$vm" "$ioctls") x;" \
        "against the floor as a process ($(printf %.2f "$floor_process") ms): $(ratio "$vm" "$floor_process") x;" \
        "a process that does nothing costs $(printf %.2f "$nothing") ms here"
    echo
    echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs," \
        "Linux $(uname -r), $(grep -qw hypervisor /proc/cpuinfo && echo 'itself a VM' || echo 'bare metal')," \
        "cgroups $layout."
}

if [[ $OUT ]]; then
    report | tee "$OUT"
else
    report
fi
