#!/usr/bin/env bash
# Installs the Debian packages the tests use, when they are missing. Needs root (apt-get).
set -euo pipefail
need=()
for pair in ip:iproute2 tc:iproute2 ethtool:ethtool nft:nftables ping:iputils-ping keepalived:keepalived bird:bird2 systemd-analyze:systemd dpkg-deb:dpkg rpm:rpm setpriv:util-linux tcpdump:tcpdump zsh:zsh fish:fish; do
	cmd=${pair%%:*} pkg=${pair#*:}
	command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
	if [ "$(id -u)" != 0 ]; then
		echo "deps: missing ${need[*]} and not root: install them, or run as root" >&2
		exit 0
	fi
	echo "deps: installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# Install only: keep keepalived and bird from starting as host services (the tests start
	# their own, inside namespaces they make).
	policy=/usr/sbin/policy-rc.d
	made=0
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made=1
	fi
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
	if ((made)); then rm -f "$policy"; fi
fi
