#!/usr/bin/env bash
# Measures the agent end to end and prints the figures recorded in docs/benchmarks.md:
#
#   1. idle memory (VmRSS, VmHWM) of one agent with 20 services, registry source against a real
#      docker-registry on loopback, then descriptor source;
#   2. CPU time of one poll's tag selection over 100 000 tags (the agent_poll bench);
#   3. timer lateness: how long after its rollout_at each of AGENTS agents runs its hook.
#
# Needs docker-registry (scripts/install-test-deps.sh), curl, jq and sha256sum. Everything listens
# on 127.0.0.1 only, and every process this script starts is stopped when it exits. Once the
# release build and the bench are built, a run takes about 2 minutes.
#
# Environment: BUILD_FLAGS adds cargo flags to the release build, such as --no-default-features
# for the node build without `stagger simulate`. AGENTS (default 100) sets the number of agents of the lateness run. LARGE_TAGS=N
# (default 0, off) adds a poll of one repository of N tags on the real registry: pushing 100 000
# tags takes about 4 minutes more.
set -euo pipefail
cd "$(dirname "$0")/.."

AGENTS=${AGENTS:-100}
SERVICES=20
LARGE_TAGS=${LARGE_TAGS:-0}
HOTFIX_WINDOW_SECS=30

WORK=$(mktemp -d /tmp/stagger-bench.XXXXXX)
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in curl jq sha256sum docker-registry; do
    command -v "$tool" >/dev/null || {
        echo "error: $tool not found; run scripts/install-test-deps.sh or install it" >&2
        exit 1
    }
done

# Sets FREE_PORT to a TCP port on 127.0.0.1 that nothing listens on and that no earlier call
# returned, so agents started in quick succession never share one. Call it outside $(...), which
# would lose the update of NEXT_PORT. The ports stay below Linux's default range of ephemeral
# ports (32768 and up), where an outgoing connection could hold one.
NEXT_PORT=$((20000 + RANDOM % 10000))
free_port() {
    local used
    used=$(ss -Htln | awk '{print $4}')
    while grep -q ":$NEXT_PORT\$" <<<"$used"; do
        NEXT_PORT=$((NEXT_PORT + 1))
    done
    FREE_PORT=$NEXT_PORT
    NEXT_PORT=$((NEXT_PORT + 1))
}

# wait_for SECONDS DESCRIPTION COMMAND...: runs COMMAND every 0.2 s until it succeeds.
wait_for() {
    local seconds=$1 what=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        if ((SECONDS >= deadline)); then
            echo "error: timed out after ${seconds}s waiting until $what" >&2
            exit 1
        fi
        sleep 0.2
    done
}

echo "== machine"
echo "nproc: $(nproc)"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
echo "rustc: $(rustc --version)"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "started: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"

echo "== build"
cargo build --release --locked -p stagger --bin stagger ${BUILD_FLAGS:-}
STAGGER=$PWD/target/release/stagger

# ---------------------------------------------------------------------------------------------
# 1. Idle memory
# ---------------------------------------------------------------------------------------------

free_port
REGISTRY_PORT=$FREE_PORT
REGISTRY=http://127.0.0.1:$REGISTRY_PORT
mkdir -p "$WORK/registry/data"
cat >"$WORK/registry/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/registry/data
http:
  addr: 127.0.0.1:$REGISTRY_PORT
EOF
docker-registry serve "$WORK/registry/config.yml" >"$WORK/registry/registry.log" 2>&1 &
PIDS+=($!)
wait_for 15 "docker-registry answers on $REGISTRY" \
    curl -sf -o /dev/null "$REGISTRY/v2/"

# push_blob REPOSITORY FILE: uploads FILE as a blob (POST, then PUT with the digest) and prints
# its digest.
push_blob() {
    local repository=$1 file=$2 digest location separator
    digest=sha256:$(sha256sum "$file" | cut -d' ' -f1)
    location=$(curl -sf -X POST -D - -o /dev/null "$REGISTRY/v2/$repository/blobs/uploads/" |
        tr -d '\r' | awk 'tolower($1) == "location:" {print $2}')
    [[ $location == /* ]] && location=$REGISTRY$location
    separator='?'
    [[ $location == *\?* ]] && separator='&'
    curl -sf -X PUT -o /dev/null -H 'Content-Type: application/octet-stream' \
        --data-binary "@$file" "$location${separator}digest=$digest"
    echo "$digest"
}

# push_image REPOSITORY TAG...: pushes one tiny random image and tags it with every TAG.
push_image() {
    local repository=$1 layer_digest config_digest
    shift
    head -c 1024 /dev/urandom >"$WORK/layer"
    layer_digest=$(push_blob "$repository" "$WORK/layer")
    printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["%s"]}}' \
        "$layer_digest" >"$WORK/config.json"
    config_digest=$(push_blob "$repository" "$WORK/config.json")
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",%s,%s}' \
        "$(printf '"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d}' \
            "$config_digest" "$(stat -c %s "$WORK/config.json")")" \
        "$(printf '"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":1024}]' \
            "$layer_digest")" >"$WORK/manifest.json"
    local tag
    for tag in "$@"; do
        curl -sf -X PUT -o /dev/null \
            -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
            --data-binary "@$WORK/manifest.json" "$REGISTRY/v2/$repository/manifests/$tag"
    done
}

# Each repository looks like a production one: release tags over several versions and
# suffixes, 20 staging tags such as v1.3.13-cc1cc788, and latest.
echo "== pushing $SERVICES repositories to docker-registry on $REGISTRY"
for index in $(seq -w 1 "$SERVICES"); do
    repository=bench/service-$index
    push_image "$repository" v1.2.0 v1.2.1-hotfix v1.3.0-canary v1.3.0 v1.3.1-hotfix \
        v1.3.2-immediate v1.4.0-canary v1.4.0
    staging=()
    for _ in $(seq 20); do
        staging+=("v1.3.13-$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')")
    done
    push_image "$repository" "${staging[@]}" latest
done

# write_agent_config DIRECTORY NODE INTERVAL SOURCE_TOML SERVICES_TOML: writes DIRECTORY/agent.toml.
write_agent_config() {
    local directory=$1 node=$2 interval=$3 source=$4 services=$5
    mkdir -p "$directory"
    free_port
    cat >"$directory/agent.toml" <<EOF
node = "$node"
state = "$directory/state"
interval = "$interval"
splay = "0s"

[windows]
hotfix = "${HOTFIX_WINDOW_SECS}s"

[api]
listen = "127.0.0.1:$FREE_PORT"
socket = "$directory/state/control.sock"

$source

$services
EOF
}

# start_agent DIRECTORY: starts the agent of DIRECTORY/agent.toml in the background with JSON
# logs in DIRECTORY/agent.log, and sets AGENT_PID and AGENT_LOG.
start_agent() {
    local directory=$1
    AGENT_LOG=$directory/agent.log
    "$STAGGER" agent --config "$directory/agent.toml" --log-format json \
        </dev/null >/dev/null 2>"$AGENT_LOG" &
    AGENT_PID=$!
    PIDS+=("$AGENT_PID")
}

# Stops the script with the end of the agent's log when the last started agent has exited.
check_agent_running() {
    if ! kill -0 "$AGENT_PID" 2>/dev/null; then
        echo "error: the agent (pid $AGENT_PID) exited; the end of its log:" >&2
        tail -3 "$AGENT_LOG" >&2
        exit 1
    fi
}

# all_services_current PORT: succeeds when /status shows a current release for every service.
all_services_current() {
    local current
    check_agent_running
    current=$(curl -sf "http://127.0.0.1:$1/status" |
        jq '[.services[] | select(.current != null)] | length' 2>/dev/null) || return 1
    [[ $current == "$SERVICES" ]]
}

# status_kib PID FIELD: prints FIELD (such as VmRSS) of /proc/PID/status, in KiB.
status_kib() {
    awk -v field="$2:" '$1 == field {print $2}' "/proc/$1/status"
}

# measure_idle_memory NAME DIRECTORY: starts the agent, waits until every service runs a
# release, then samples VmRSS every 0.25 s for 15 s (three 5 s polls) and prints the figures.
measure_idle_memory() {
    local name=$1 directory=$2 port samples
    port=$(grep -o '127.0.0.1:[0-9]*' "$directory/agent.toml" | head -1 | cut -d: -f2)
    start_agent "$directory"
    wait_for 30 "the $name agent runs a release of every service" all_services_current "$port"
    # Let the last state save and the hook output settle before sampling.
    sleep 2
    samples=$(for _ in $(seq 60); do
        status_kib "$AGENT_PID" VmRSS
        sleep 0.25
    done | sort -n)
    echo "idle memory, $name source, $SERVICES services: VmRSS min $(head -1 <<<"$samples") KiB," \
        "max $(tail -1 <<<"$samples") KiB over 15 s; VmHWM $(status_kib "$AGENT_PID" VmHWM) KiB;" \
        "of the last VmRSS: RssAnon $(status_kib "$AGENT_PID" RssAnon) KiB," \
        "RssFile $(status_kib "$AGENT_PID" RssFile) KiB;" \
        "Pss $(awk '$1 == "Pss:" {print $2}' "/proc/$AGENT_PID/smaps_rollup") KiB"
    echo "resident pages of the stagger binary (text, then read-only data):" \
        "$(awk -v binary="$STAGGER" '
            $6 == binary { mapping = $2 } $6 != binary && /^[0-9a-f]+-/ { mapping = "" }
            $1 == "Rss:" && mapping != "" { rss[mapping] += $2 }
            END { printf "r-xp %d KiB, r--p %d KiB", rss["r-xp"], rss["r--p"] }' \
            "/proc/$AGENT_PID/smaps")"
    if grep -q '"level":"ERROR"' "$directory/agent.log"; then
        echo "warning: the $name agent logged errors; see its log" >&2
    fi
    kill "$AGENT_PID"
    wait "$AGENT_PID" 2>/dev/null || true
}

echo "== 1. idle memory"
registry_services=""
descriptor_services=""
descriptor_entries=()
for index in $(seq -w 1 "$SERVICES"); do
    registry_services+="[services.service-$index]
image = \"bench/service-$index\"
executor = { kind = \"hook\", command = [\"/bin/true\"] }
"
    descriptor_services+="[services.service-$index]
executor = { kind = \"hook\", command = [\"/bin/true\"] }
"
    descriptor_entries+=("\"service-$index\": {\"image\": \"127.0.0.1:$REGISTRY_PORT/bench/service-$index:v1.4.0\"}")
done
(
    IFS=,
    echo "{\"ImageVersions\": {${descriptor_entries[*]}}}"
) >"$WORK/versions.json"

write_agent_config "$WORK/memory-registry" bench-memory-registry 5s \
    "[source]
kind = \"registry\"
registry = \"127.0.0.1:$REGISTRY_PORT\"
insecure = true" "$registry_services"
measure_idle_memory registry "$WORK/memory-registry"

write_agent_config "$WORK/memory-descriptor" bench-memory-descriptor 5s \
    "[source]
kind = \"descriptor\"
path = \"$WORK/versions.json\"" "$descriptor_services"
measure_idle_memory descriptor "$WORK/memory-descriptor"

# polls_succeeded PORT: prints the agent's count of successful polls.
polls_succeeded() {
    curl -sf "http://127.0.0.1:$1/metrics" |
        awk '/^stagger_agent_polls_total\{result="success"\}/ {print $2}'
}

# cpu_ticks PID: prints the user plus system CPU time of PID, in clock ticks.
cpu_ticks() {
    awk '{print $14 + $15}' "/proc/$1/stat"
}

# measure_large_poll: pushes LARGE_TAGS tags to one repository through the registry API, then
# times their listing with curl and the CPU time of the agent's polls of that repository.
measure_large_poll() {
    local repository=bench/large directory=$WORK/large port started
    echo "== 1b. one repository of $LARGE_TAGS tags on docker-registry"
    push_image "$repository" v1.2.0 v1.3.0 v1.3.1-hotfix v1.4.0-canary v1.4.0 latest
    # One curl process sends every PUT, 16 at a time. "next" separates the requests, because
    # without it curl applies each option to every URL and concatenates the bodies.
    awk -v count="$LARGE_TAGS" -v registry="$REGISTRY" -v repository="$repository" \
        -v manifest="$WORK/manifest.json" 'BEGIN {
            srand(1)
            for (i = 0; i < count; i++) {
                printf "url = \"%s/v2/%s/manifests/v1.%d.%d-%08x\"\n", registry, repository,
                    int(rand() * 20), int(rand() * 40), int(rand() * 4294967296)
                printf "request = \"PUT\"\noutput = \"/dev/null\"\n"
                printf "header = \"Content-Type: application/vnd.oci.image.manifest.v1+json\"\n"
                printf "data-binary = \"@%s\"\n", manifest
                if (i + 1 < count) print "next"
            }
        }' >"$WORK/large-tags.curl"
    started=$SECONDS
    curl -s --no-progress-meter --parallel --parallel-max 16 -K "$WORK/large-tags.curl" || true
    echo "pushed in $((SECONDS - started)) s;" \
        "tags listed: $(curl -sf "$REGISTRY/v2/$repository/tags/list" | jq '.tags | length')"
    for _ in 1 2 3; do
        curl -sf -o /dev/null -w 'GET tags/list with curl: %{time_total} s, %{size_download} bytes\n' \
            "$REGISTRY/v2/$repository/tags/list"
    done

    write_agent_config "$directory" bench-large 5s \
        "[source]
kind = \"registry\"
registry = \"127.0.0.1:$REGISTRY_PORT\"
insecure = true" \
        "[services.large]
image = \"$repository\"
executor = { kind = \"orchestrator\" }"
    port=$FREE_PORT
    start_agent "$directory"
    wait_for 60 "the agent runs a release of $repository" \
        eval '[[ $(curl -sf "http://127.0.0.1:$port/status" | jq -r ".services.large.current.tag") == v1.4.0 ]]'
    local ticks_before polls_before ticks_after polls_after
    ticks_before=$(cpu_ticks "$AGENT_PID")
    polls_before=$(polls_succeeded "$port")
    sleep 30
    ticks_after=$(cpu_ticks "$AGENT_PID")
    polls_after=$(polls_succeeded "$port")
    echo "agent polls of $repository: $((polls_after - polls_before)) polls," \
        "$(awk -v ticks=$((ticks_after - ticks_before)) -v polls=$((polls_after - polls_before)) \
            -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.0f", ticks * 1000 / hz / polls}') ms" \
        "of agent CPU time per poll (listing, parsing, selection, state save)"
    echo "agent memory after these polls: VmRSS $(status_kib "$AGENT_PID" VmRSS) KiB," \
        "RssAnon $(status_kib "$AGENT_PID" RssAnon) KiB, VmHWM $(status_kib "$AGENT_PID" VmHWM) KiB"
    kill "$AGENT_PID"
    wait "$AGENT_PID" 2>/dev/null || true
}

if ((LARGE_TAGS > 0)); then
    measure_large_poll
fi

# ---------------------------------------------------------------------------------------------
# 2. Poll CPU for 100 000 tags
# ---------------------------------------------------------------------------------------------

# NOTE: cargo bench relinks target/release/stagger with the features of the dev-dependencies, so
# the memory figures above are taken first, from the binary of the plain release build.
echo "== 2. tag selection over 100 000 tags: cargo bench -p stagger --bench agent_poll --locked"
cargo bench -p stagger --bench agent_poll --locked 2>&1 | grep -v '^ *\(Compiling\|Finished\|Running\)'

# ---------------------------------------------------------------------------------------------
# 3. Timer lateness
# ---------------------------------------------------------------------------------------------

echo "== 3. timer lateness: $AGENTS agents, descriptor source, interval 1s, splay 0s," \
    "hotfix window ${HOTFIX_WINDOW_SECS}s"
LATENESS=$WORK/lateness
mkdir -p "$LATENESS"
cat >"$LATENESS/hook.sh" <<'EOF'
#!/bin/sh
echo "$STAGGER_SERVICE $STAGGER_TAG $(date +%s%3N)" >> "$HOOK_LOG"
EOF
chmod +x "$LATENESS/hook.sh"

# set_release TAG: replaces the shared descriptor in one rename, so no agent reads half a file.
set_release() {
    echo "{\"ImageVersions\": {\"node\": {\"image\": \"bench/node:$1\"}}}" >"$LATENESS/versions.json.new"
    mv "$LATENESS/versions.json.new" "$LATENESS/versions.json"
}

# hooks_ran TAG: succeeds when every agent's hook ran for TAG. Stops the script with an error when
# an agent process has exited.
hooks_ran() {
    local count index=0 pid
    for pid in "${LATENESS_PIDS[@]}"; do
        index=$((index + 1))
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "error: agent $index (pid $pid) exited; the end of its log:" >&2
            tail -3 "$LATENESS/agent-$(printf '%0*d' ${#AGENTS} "$index")/agent.log" >&2
            exit 1
        fi
    done
    count=$(cat "$LATENESS"/agent-*/hooks.log 2>/dev/null | grep -c " $1 ") || true
    [[ $count -ge $AGENTS ]]
}

set_release v1.0.0
LATENESS_PIDS=()
for index in $(seq -w 1 "$AGENTS"); do
    directory=$LATENESS/agent-$index
    write_agent_config "$directory" "bench-node-$index" 1s \
        "[source]
kind = \"descriptor\"
path = \"$LATENESS/versions.json\"" \
        "[services.node]
executor = { kind = \"hook\", command = [\"$LATENESS/hook.sh\"], env = { HOOK_LOG = \"$directory/hooks.log\" } }"
    start_agent "$directory"
    LATENESS_PIDS+=("$AGENT_PID")
done
wait_for 60 "every agent adopted v1.0.0" hooks_ran v1.0.0

set_release v1.0.1-hotfix
echo "descriptor switched to v1.0.1-hotfix at $(date -u '+%H:%M:%S UTC')"
wait_for $((HOTFIX_WINDOW_SECS + 30)) "every agent ran the v1.0.1-hotfix hook" hooks_ran v1.0.1-hotfix

# The memory of many agents on one host. Pss divides each shared page (the binary's code) among
# the processes that map it, so the average Pss is what one more agent costs.
pss_total=0
anon_total=0
for pid in "${LATENESS_PIDS[@]}"; do
    pss_total=$((pss_total + $(awk '$1 == "Pss:" {print $2}' "/proc/$pid/smaps_rollup")))
    anon_total=$((anon_total + $(status_kib "$pid" RssAnon)))
done
echo "memory of the $AGENTS agents: Pss $((pss_total / AGENTS)) KiB and RssAnon" \
    "$((anon_total / AGENTS)) KiB per agent on average"

# One line per agent: DETECTED_AT ROLLOUT_AT DECIDED_MILLIS HOOK_MILLIS. DECIDED_MILLIS is the
# timestamp of the "decision" log line, in milliseconds since the Unix epoch.
for index in $(seq -w 1 "$AGENTS"); do
    directory=$LATENESS/agent-$index
    decision=$(jq -r 'select(.message == "decision" and .tag == "v1.0.1-hotfix"
        and .action == "schedule")
        | (.timestamp | capture("^(?<secs>[^.]+)[.](?<fraction>[0-9]{3})")) as $time
        | "\(.at) \(.rollout_at_unix) \(($time.secs + "Z" | fromdate) * 1000
            + ($time.fraction | tonumber))"' "$directory/agent.log" | head -1)
    hook_millis=$(awk '$2 == "v1.0.1-hotfix" {print $3; exit}' "$directory/hooks.log")
    echo "$decision $hook_millis"
done >"$LATENESS/results"

# summarize WHAT FILE: prints count, p50, p99 and max of the numbers in FILE (nearest rank).
summarize() {
    sort -n "$2" | awk -v what="$1" '
        { value[NR] = $1 }
        END {
            p50 = value[int(NR * 0.50 + 0.999999)]
            p99 = value[int(NR * 0.99 + 0.999999)]
            printf "%s: %d timeslots, p50 %d ms, p99 %d ms, max %d ms\n",
                what, NR, p50, p99, value[NR]
        }'
}

# The poll truncates its detection time to the second, so a timeslot at offset 0 is already up
# to a second in the past when the decision is made. Those are also given apart, and measured
# from the decision instead ("due" is the later of rollout_at and the decision).
awk '{print $4 - $2 * 1000}' "$LATENESS/results" >"$LATENESS/all"
awk '$2 > $1 {print $4 - $2 * 1000}' "$LATENESS/results" >"$LATENESS/future"
awk '{due = $2 * 1000; if ($3 > due) due = $3; print $4 - due}' "$LATENESS/results" >"$LATENESS/due"
summarize "lateness after rollout_at, all timeslots" "$LATENESS/all"
summarize "lateness after rollout_at, timeslots after the detection second" "$LATENESS/future"
summarize "lateness after the later of rollout_at and the decision, all timeslots" "$LATENESS/due"
echo "timeslots at offset 0 (due when detected): $(awk '$2 == $1' "$LATENESS/results" | wc -l)"
echo "distinct rollout_at seconds: $(awk '{print $2}' "$LATENESS/results" | sort -u | wc -l)"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "finished: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
