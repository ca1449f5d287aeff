#!/bin/sh
# xlb package: create the service user, make systemd see the unit.
set -e
if ! getent passwd xlb >/dev/null; then
	if command -v systemd-sysusers >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
		systemd-sysusers /usr/lib/sysusers.d/xlb.conf
	else
		useradd --system --no-create-home --home-dir / --shell /usr/sbin/nologin --user-group xlb
	fi
fi
chgrp xlb /etc/xlb /etc/xlb/xlb.yaml 2>/dev/null || true
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
