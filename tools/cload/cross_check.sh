#!/usr/bin/env bash
# cross_check.sh: eddy's echo (reactor and fd dispatch) against the tokio baseline, measured
# with cload, an independent C load generator (a result only one generator shows is not a
# result). For each scenario and round, each server is started fresh, its CPU time is read
# from /proc/PID/stat at the marks cload -M prints when its measured window opens and closes
# (so warm-up and connecting are left out), and the server is stopped again.
# Rounds alternate the servers (the machine is noisy); the table shows medians.
#
# usage: tools/cload/cross_check.sh [--quick] [--rounds N]
#   --quick     2 s measured + 0.5 s warm-up per run (default 5 s + 1 s), 2 rounds
#   --rounds N  rounds (default 3, or 2 with --quick)
# env: EDDY_TARGET (default /work/main/target), CLOAD_PORT_BASE (default 9700; 100 ports used)
set -euo pipefail

SECS=5 WARM=1 ROUNDS="" QUICK=0
while (($#)); do
    case $1 in
    --quick) QUICK=1 ;;
    --rounds)
        [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || { echo "cross_check: --rounds needs a positive number" >&2; exit 1; }
        ROUNDS=$2
        shift
        ;;
    -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "cross_check: unknown option '$1' (try --help)" >&2; exit 1 ;;
    esac
    shift
done
if ((QUICK)); then SECS=2 WARM=0.5; fi
: "${ROUNDS:=$((QUICK ? 2 : 3))}"
((ROUNDS >= 2)) || echo "cross_check: warning: 1 round, no median against the noise" >&2

RELEASE=${EDDY_TARGET:-/work/main/target}/release
ECHO=$RELEASE/examples/echo
BASELINE=$RELEASE/eddy-baseline
for bin in "$ECHO" "$BASELINE"; do
    if [[ ! -x $bin ]]; then
        echo "cross_check: missing $bin" >&2
        echo "run: cargo build --release --example echo -p eddy && cargo build --release -p eddy-bench --bin eddy-baseline" >&2
        exit 1
    fi
done
command -v gcc >/dev/null || { echo "cross_check: gcc not found" >&2; exit 1; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cload-cross.XXXXXX")
SERVER_PID="" CLOAD_PID="" SERVER_OUT=""
cleanup() {
    # A background subshell killed before its exec would run this trap too: not there.
    [[ $BASHPID == "$$" ]] || return 0
    for pid in $CLOAD_PID $SERVER_PID; do kill -KILL "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

gcc -O2 -std=c11 -Wall -Wextra -o "$WORK/cload" "$HERE/cload.c"
CLK_TCK=$(getconf CLK_TCK)
PORT_BASE=${CLOAD_PORT_BASE:-9700}
NEXT_PORT=0

# eddy: the echo's defaults (reactor mode, a reactor per core but one); eddy-cores: a reactor
# on every core (the setting for a machine whose cores the load does not leave free).
SERVERS=(eddy eddy-cores eddy-fd tokio)
CORES=$(nproc)
# name|cload flags
SCENARIOS=(
    "pingpong 50x64B|-c 50 -d 1 -s 64 -T 1"
    "pipelined 50x16x64B|-c 50 -d 16 -s 64 -T 1"
    "pingpong 1000x64B|-c 1000 -d 1 -s 64 -T 1"
    "pingpong 50x64B T2|-c 50 -d 1 -s 64 -T 2"
    "pipelined 50x16x64B T2|-c 50 -d 16 -s 64 -T 2"
    "pingpong 1000x64B T2|-c 1000 -d 1 -s 64 -T 2"
)

# start_server NAME PORT: starts it, sets SERVER_PID, waits (at most 10 s) for "listening on".
# The read end of its stdout stays open as SERVER_OUT: it reaches EOF when the server exits.
start_server() {
    local name=$1 addr=127.0.0.1:$2 cmd line ready=0
    case $name in
    eddy) cmd=("$ECHO" --listen "$addr") ;;
    eddy-cores) cmd=("$ECHO" --listen "$addr" --reactors "$CORES" --workers "$CORES") ;;
    eddy-fd) cmd=("$ECHO" --listen "$addr" --dispatch fd) ;;
    tokio) cmd=("$BASELINE" --serve tokio --listen "$addr") ;;
    esac
    rm -f "$WORK/ready"
    mkfifo "$WORK/ready"
    # exec: SERVER_PID is the server itself, not a subshell (its /proc/PID/stat is read).
    (exec "${cmd[@]}" >"$WORK/ready" 2>"$WORK/$name.log") &
    SERVER_PID=$!
    exec {SERVER_OUT}<"$WORK/ready"
    local deadline=$((SECONDS + 10))
    while ((SECONDS < deadline)) && IFS= read -r -t "$((deadline - SECONDS))" -u "$SERVER_OUT" line; do
        if [[ $line == "listening on"* ]]; then ready=1; break; fi
    done
    if ((!ready)); then
        echo "cross_check: $name did not print 'listening on' within 10 s: ${cmd[*]}" >&2
        tail -n 20 "$WORK/$name.log" >&2 || true
        exit 1
    fi
}

# stop_server: SIGTERM, wait for EOF on its stdout (bounded, 10 s), SIGKILL if it is not there.
stop_server() {
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    local line rc=142 deadline=$((SECONDS + 10))
    while ((SECONDS < deadline)); do
        rc=0
        IFS= read -r -t "$((deadline - SECONDS))" -u "$SERVER_OUT" line || rc=$?
        ((rc == 0)) || break # 1: EOF, the server is gone; > 128: timed out
    done
    if ((rc == 0 || rc > 128)); then
        echo "cross_check: server $SERVER_PID still there 10 s after SIGTERM, killing it" >&2
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    exec {SERVER_OUT}<&-
    wait "$SERVER_PID" || true
    SERVER_PID=""
}

# cpu_ticks PID: utime + stime of the whole process (all threads), into TICKS. No fork.
cpu_ticks() {
    local stat fields
    read -r stat <"/proc/$1/stat"
    read -r -a fields <<<"${stat##*) }" # fields[0] is field 3 (state)
    TICKS=$((fields[11] + fields[12]))
}

# json_field NAME JSON: a number from cload's JSON line, into FIELD.
json_field() {
    [[ $2 =~ \"$1\":([-0-9.eE+]+) ]] || { echo "cross_check: no $1 in: $2" >&2; exit 1; }
    FIELD=${BASH_REMATCH[1]}
}

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

declare -A RATE P50 P99 CPU
ERRORS=0

# run_one SCENARIO_INDEX SERVER: one fresh server, one cload run, results appended.
run_one() {
    local sname=${SCENARIOS[$1]%%|*} flags=${SCENARIOS[$1]#*|} server=$2 port line fd rc=0
    port=$((PORT_BASE + NEXT_PORT % 100))
    NEXT_PORT=$((NEXT_PORT + 1))
    start_server "$server" "$port"
    local t0="" t1=""
    rm -f "$WORK/marks"
    mkfifo "$WORK/marks"
    # shellcheck disable=SC2086 # flags are words
    (exec "$WORK/cload" -M -a "127.0.0.1:$port" $flags -t "$SECS" -w "$WARM" >"$WORK/out.json" 2>"$WORK/marks") &
    CLOAD_PID=$!
    exec {fd}<"$WORK/marks"
    while IFS= read -r -u "$fd" line; do
        case $line in
        "cload: measure start") cpu_ticks "$SERVER_PID"; t0=$TICKS ;;
        "cload: measure end") cpu_ticks "$SERVER_PID"; t1=$TICKS ;;
        *) echo "$line" >&2 ;;
        esac
    done
    exec {fd}<&-
    wait "$CLOAD_PID" || rc=$?
    CLOAD_PID=""
    stop_server
    if ((rc == 1)) || [[ -z $t0 || -z $t1 ]]; then
        echo "cross_check: cload failed against $server ($sname), exit code $rc" >&2
        exit 1
    fi
    local json responses errors
    json=$(<"$WORK/out.json")
    json_field responses "$json"; responses=$FIELD
    json_field errors "$json"; errors=$FIELD
    ((errors == 0)) || echo "cross_check: $server ($sname): $errors mismatched responses" >&2
    ERRORS=$((ERRORS + errors))
    local key="$1|$server" cpu_us
    json_field rate "$json"; RATE[$key]+=" $FIELD"
    json_field p50_us "$json"; P50[$key]+=" $FIELD"
    json_field p99_us "$json"; P99[$key]+=" $FIELD"
    cpu_us=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$responses" 'BEGIN { printf "%.3f", n ? d / hz * 1e6 / n : 0 }')
    CPU[$key]+=" $cpu_us"
    printf '  %-24s %-10s rate %10.0f/s  p99 %8s us  cpu %s us/resp\n' "$sname" "$server" \
        "${RATE[$key]##* }" "${P99[$key]##* }" "$cpu_us" >&2
}

echo "cross_check: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $ROUNDS rounds of ${SECS}s (+${WARM}s warm-up) per run" >&2
for ((round = 0; round < ROUNDS; round++)); do
    echo "round $((round + 1))/$ROUNDS" >&2
    for s in "${!SCENARIOS[@]}"; do
        # Rotate the servers' order each round so none always runs first or last.
        for ((k = 0; k < ${#SERVERS[@]}; k++)); do
            run_one "$s" "${SERVERS[$(((k + round + s) % ${#SERVERS[@]}))]}"
        done
    done
done

printf '\n%s rounds, median of each; %s s measured per run, %s cores, load now %s\n' \
    "$ROUNDS" "$SECS" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-24s %-10s %12s %9s %9s %12s %10s %10s\n' scenario server "rate/s" "p50 us" "p99 us" \
    "cpu us/resp" "rate/tokio" "cpu/tokio"
for s in "${!SCENARIOS[@]}"; do
    sname=${SCENARIOS[$s]%%|*}
    # shellcheck disable=SC2086 # the lists are words
    {
        tokio_rate=$(median ${RATE[$s|tokio]})
        tokio_cpu=$(median ${CPU[$s|tokio]})
    }
    for server in "${SERVERS[@]}"; do
        key="$s|$server"
        # shellcheck disable=SC2086
        rate=$(median ${RATE[$key]}) p50=$(median ${P50[$key]}) p99=$(median ${P99[$key]}) cpu=$(median ${CPU[$key]})
        awk -v s="$sname" -v v="$server" -v r="$rate" -v a="$p50" -v b="$p99" -v c="$cpu" \
            -v tr="$tokio_rate" -v tc="$tokio_cpu" 'BEGIN {
                printf "%-24s %-10s %12.0f %9.1f %9.1f %12.2f %10.2f %10.2f\n",
                    s, v, r, a, b, c, tr ? r / tr : 0, tc ? c / tc : 0 }'
    done
done
if ((ERRORS)); then
    echo "cross_check: $ERRORS mismatched responses in total" >&2
    exit 2
fi
