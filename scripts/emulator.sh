#!/usr/bin/env bash
# Sourced by scripts/test.sh and scripts/dev.sh: starts the Firestore emulator
# on a free loopback port, in its own process group so that stopping it stops
# the JVM the gcloud wrapper forks, and waits until it answers.
#
#   start_firestore_emulator LOGFILE   sets FIRESTORE_EMULATOR_HOST, EMULATOR_PID
#   stop_firestore_emulator

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

start_firestore_emulator() {
  local log=$1 port deadline
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
  deadline=$((SECONDS + 90))
  until curl -fsS "http://${FIRESTORE_EMULATOR_HOST}/" 2>/dev/null | grep -q Ok; do
    if ! kill -0 "$EMULATOR_PID" 2>/dev/null; then
      echo "Firestore emulator exited during start; its log:" >&2
      cat "$log" >&2
      return 1
    fi
    if (( SECONDS > deadline )); then
      echo "Firestore emulator did not answer on ${FIRESTORE_EMULATOR_HOST} within 90 s; its log:" >&2
      cat "$log" >&2
      return 1
    fi
    sleep 0.5
  done
}

stop_firestore_emulator() {
  # Test the group, not the leader: the JVM can outlive the gcloud wrapper.
  if [[ -n "${EMULATOR_PID:-}" ]] && kill -0 -- "-${EMULATOR_PID}" 2>/dev/null; then
    # The negative PID signals the whole group: gcloud, the wrapper script and java.
    kill -TERM -- "-${EMULATOR_PID}" 2>/dev/null || true
    for _ in $(seq 1 20); do
      kill -0 -- "-${EMULATOR_PID}" 2>/dev/null || break
      sleep 0.25
    done
    kill -KILL -- "-${EMULATOR_PID}" 2>/dev/null || true
  fi
  EMULATOR_PID=
}
