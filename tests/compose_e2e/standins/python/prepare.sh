#!/usr/bin/env bash
# Finish the debootstrapped Debian bookworm tree ($1) as a stand-in for the official python:3.11-slim image:
# Debian's Python 3.11 with `python`, `python3`, `pip` on PATH, and `pip install` allowed for root (the
# official image installs into /usr/local too; Debian marks its own Python as externally managed instead).
set -euo pipefail
root="$1"
rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED
# The apt and dpkg settings of Debian's official slim images, which python:3.11-slim is built on: no package
# caches or downloaded .debs left in a layer, no docs, man pages or translations installed.
cat > "$root"/etc/apt/apt.conf.d/docker-clean <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
echo 'Acquire::Languages "none";' > "$root"/etc/apt/apt.conf.d/docker-no-languages
echo 'Acquire::GzipIndexes "true";' > "$root"/etc/apt/apt.conf.d/docker-gzip-indexes
cat > "$root"/etc/dpkg/dpkg.cfg.d/docker <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
DPKG
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
# Trust the CAs this machine trusts (a machine behind a TLS-inspecting proxy needs them to reach PyPI).
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$root"/usr/local/share/ca-certificates/
fi
chroot "$root" update-ca-certificates >/dev/null 2>&1
chroot "$root" python --version >/dev/null
chroot "$root" pip --version >/dev/null
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
