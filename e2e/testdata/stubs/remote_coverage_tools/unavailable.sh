#!/bin/sh
echo "remote_coverage_tools is a stand-in for offline tests: coverage is not available" >&2
exit 1
