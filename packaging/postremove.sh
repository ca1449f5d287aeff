#!/bin/sh
# xlb package: forget the unit (the xlb user and /etc/xlb stay, as Debian does).
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
