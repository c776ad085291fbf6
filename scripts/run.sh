#!/usr/bin/env bash
# make run: starts bin/mound on an embedded store in $DATA and one local
# bin/workerd, prints how to use them, and stops both on Ctrl-C.
set -euo pipefail
LISTEN=${LISTEN:-127.0.0.1:8980}
HTTP=${HTTP:-127.0.0.1:8981}
DATA=${DATA:-.mound}
JOBS=${JOBS:-$(nproc)}

bin/mound --listen "$LISTEN" --http "$HTTP" --data "$DATA/server" &
mound=$!
trap 'kill $mound $worker 2>/dev/null; wait' INT TERM EXIT
# The worker reconnects until the server answers, so it can start at once.
bin/workerd --server "$LISTEN" --jobs "$JOBS" --dir "$DATA/worker" --name "$(hostname)-local" &
worker=$!
sleep 1
cat <<TXT

mound is running. Point Bazel at it:
    bazel build //... --remote_cache=grpc://$LISTEN        # shared cache, actions run locally
    bazel build //... --remote_executor=grpc://$LISTEN     # actions run on mound's workers
Upload and download with: bin/cas --server $LISTEN upload PATH / download HASH/SIZE -o PATH
Workers: bin/mound admin --server $LISTEN workers
Metrics: http://$HTTP/metrics
Ctrl-C stops the server and the worker.

TXT
wait $mound
