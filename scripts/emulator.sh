#!/usr/bin/env bash
# Sourced by scripts/test.sh, scripts/dev.sh and scripts/bench.sh: starts
# the Firestore and Pub/Sub emulators on free loopback ports, each in its own
# process group so that stopping it stops the JVM the gcloud wrapper forks,
# and waits until it answers.
#
#   start_firestore_emulator LOGFILE   sets FIRESTORE_EMULATOR_HOST, EMULATOR_PID
#   stop_firestore_emulator
#   start_pubsub_emulator LOGFILE      sets PUBSUB_EMULATOR_HOST, PUBSUB_EMULATOR_PID
#   stop_pubsub_emulator

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_emulator NAME HOST PID LOG: until http://HOST/ answers Ok, 90 s at most.
wait_emulator() {
  local name=$1 host=$2 pid=$3 log=$4 deadline=$((SECONDS + 90))
  until curl -fsS "http://${host}/" 2>/dev/null | grep -q Ok; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "${name} emulator exited during start; its log:" >&2
      cat "$log" >&2
      return 1
    fi
    if (( SECONDS > deadline )); then
      echo "${name} emulator did not answer on ${host} within 90 s; its log:" >&2
      cat "$log" >&2
      return 1
    fi
    sleep 0.5
  done
}

# stop_group PID: the whole process group (gcloud, the wrapper script, java).
stop_group() {
  local pid=$1
  # Test the group, not the leader: the JVM can outlive the gcloud wrapper.
  if [[ -n "$pid" ]] && kill -0 -- "-${pid}" 2>/dev/null; then
    kill -TERM -- "-${pid}" 2>/dev/null || true
    for _ in $(seq 1 20); do
      kill -0 -- "-${pid}" 2>/dev/null || break
      sleep 0.25
    done
    kill -KILL -- "-${pid}" 2>/dev/null || true
  fi
}

# launch_pubsub_emulator LOG starts the Pub/Sub emulator without waiting
# (wait_emulator then), so that both emulators can start at once.
launch_pubsub_emulator() {
  local log=$1 port
  port=$(free_port)
  setsid gcloud beta emulators pubsub start --host-port="127.0.0.1:${port}" --quiet >"$log" 2>&1 < /dev/null &
  PUBSUB_EMULATOR_PID=$!
  export PUBSUB_EMULATOR_HOST="127.0.0.1:${port}"
}

start_pubsub_emulator() {
  launch_pubsub_emulator "$1"
  wait_emulator Pub/Sub "$PUBSUB_EMULATOR_HOST" "$PUBSUB_EMULATOR_PID" "$1"
}

stop_pubsub_emulator() {
  stop_group "${PUBSUB_EMULATOR_PID:-}"
  PUBSUB_EMULATOR_PID=
}

# launch_firestore_emulator LOG starts the Firestore emulator without
# waiting (wait_emulator then).
launch_firestore_emulator() {
  local log=$1 port
  if ! command -v gcloud >/dev/null; then
    echo "gcloud is not installed: the Firestore emulator (gcloud emulators firestore) is required" >&2
    return 1
  fi
  if ! command -v java >/dev/null; then
    echo "java is not installed: the Firestore emulator needs a Java runtime" >&2
    return 1
  fi
  port=$(free_port)
  setsid gcloud emulators firestore start --host-port="127.0.0.1:${port}" --quiet >"$log" 2>&1 < /dev/null &
  EMULATOR_PID=$!
  export FIRESTORE_EMULATOR_HOST="127.0.0.1:${port}"
}

start_firestore_emulator() {
  launch_firestore_emulator "$1"
  wait_emulator Firestore "$FIRESTORE_EMULATOR_HOST" "$EMULATOR_PID" "$1"
}

stop_firestore_emulator() {
  stop_group "${EMULATOR_PID:-}"
  EMULATOR_PID=
}
