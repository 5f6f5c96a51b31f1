#!/usr/bin/env bash
# Installs or upgrades the relay on a Debian server. Idempotent: run it again
# after building a new binary. Run as root from the checkout:
#
#   make build && sudo deploy/install.sh [path/to/relay]
#
# It creates the system user "relay", copies the binary to /usr/local/bin,
# the unit to /etc/systemd/system, and relay.env to /etc/relay/relay.env only
# if that file does not exist yet (your settings are never overwritten), then
# reloads systemd and enables the service. It does not start or restart it:
# set RELAY_ADMIN_PASSWORD first, then `systemctl restart relay`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="${1:-$here/../bin/relay}"

if [[ $EUID -ne 0 ]]; then
	echo "install.sh: run as root" >&2
	exit 1
fi
if [[ ! -x $bin ]]; then
	echo "install.sh: no executable relay binary at $bin (run make build)" >&2
	exit 1
fi

if ! getent group relay >/dev/null; then
	groupadd --system relay
fi
if ! id -u relay >/dev/null 2>&1; then
	useradd --system --gid relay --home-dir /var/lib/relay --no-create-home \
		--shell /usr/sbin/nologin --comment "AT Protocol relay" relay
fi

# install(1) writes to a temporary name and renames, so a running relay keeps
# its old binary until the restart.
install -D -m 0755 -o root -g root "$bin" /usr/local/bin/relay
install -D -m 0644 -o root -g root "$here/relay.service" /etc/systemd/system/relay.service
install -d -m 0750 -o root -g relay /etc/relay
# The env file holds the admin token; systemd reads it as root before
# starting the relay, so nobody else needs to (an older install's 0640
# root:relay is tightened too).
if [[ ! -e /etc/relay/relay.env ]]; then
	install -m 0600 -o root -g root "$here/relay.env" /etc/relay/relay.env
	echo "install.sh: wrote /etc/relay/relay.env; set RELAY_ADMIN_PASSWORD in it"
else
	chown root:root /etc/relay/relay.env
	chmod 0600 /etc/relay/relay.env
	echo "install.sh: kept existing /etc/relay/relay.env (compare with $here/relay.env)"
fi

systemctl daemon-reload
systemctl enable relay.service
echo "install.sh: relay installed and enabled; start it with: systemctl restart relay"
