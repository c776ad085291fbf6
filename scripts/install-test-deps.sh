#!/bin/sh
# install-test-deps.sh installs the Debian packages the tests need (Debian's
# Bazel for the end-to-end tests, fuse3 for the FUSE input tests) when they are
# missing. It is idempotent and prints nothing when everything is present, so
# `make test` can call it every time; `apt-get update` runs only when an
# install is actually needed.
set -eu

# Each entry is "package:command", the command proving the package is usable.
deps="bazel-bootstrap:bazel fuse3:fusermount3"

missing=""
for dep in $deps; do
	pkg=${dep%%:*}
	cmd=${dep#*:}
	if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
		! command -v "$cmd" >/dev/null 2>&1; then
		missing="$missing $pkg"
	fi
done

[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	SUDO=sudo
else
	SUDO=
fi

echo "install-test-deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# Wait for another apt/dpkg run (say, a provisioning script) instead of failing.
lock="-o DPkg::Lock::Timeout=600"
# shellcheck disable=SC2086 # $lock and $missing are word lists.
$SUDO apt-get $lock update -qq
# shellcheck disable=SC2086
$SUDO apt-get $lock install -y -qq $missing >&2
