#!/bin/sh
# xlb package: stop the service before its files go.
set -e
if [ -d /run/systemd/system ]; then
	systemctl stop xlb.service >/dev/null 2>&1 || true
	systemctl disable xlb.service >/dev/null 2>&1 || true
fi
exit 0
