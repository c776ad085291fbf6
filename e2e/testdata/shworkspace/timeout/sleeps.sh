#!/bin/bash
# Runs "sleep 100" as a child named by $1 (argv[0]), so that the test can look
# for it on the host after the timeout killed the action.
(exec -a "$1" sleep 100) &
wait
