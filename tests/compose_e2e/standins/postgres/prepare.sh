#!/usr/bin/env bash
# Finish the debootstrapped Debian trixie tree ($1) as a stand-in for the official postgres:17 image.
set -euo pipefail
root="$1"
here="$(cd "$(dirname "$0")" && pwd)"
# The package's postinst created a 17/main cluster; the image initialises $PGDATA itself on first start.
rm -rf "$root"/etc/postgresql/17 "$root"/var/lib/postgresql/17
install -d -m 0700 "$root"/var/lib/postgresql/data
install -d -m 3777 "$root"/var/run/postgresql
chroot "$root" chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql
install -m 0755 "$here/docker-entrypoint.sh" "$root"/usr/local/bin/docker-entrypoint.sh
chroot "$root" /usr/lib/postgresql/17/bin/postgres --version >/dev/null
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
