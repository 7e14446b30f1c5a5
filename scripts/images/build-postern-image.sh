#!/usr/bin/env bash
# `npm run image`: builds the Postern image (Dockerfile) as postern:latest and postern:<version>.
#
#   npm run image                  build unless the image already holds exactly this tree
#   npm run image -- --check       exit 0 when it does, 1 (saying why) when it is missing or stale
#
# The build context is staged in a temporary folder: the files the processes run (below; no tests)
# and their production node_modules, installed here with `npm ci --omit=dev --omit=optional` from
# package-lock.json (patches/ applied by postinstall). The Dockerfile's header says why npm runs on
# the build host and not in a build container. The image is labelled with a hash of its inputs (the
# staged files, the lock, the Dockerfile, this script and the base image's id), so a second run with
# nothing changed only says so, and the e2e suite can tell a stale image from a fresh one.
#
# Environment:
#   POSTERN_IMAGE_NODE   base image (default node:24-bookworm-slim; without a registry:
#                        . scripts/images/local-images.env selects local/postern-node:24)
#   POSTERN_IMAGE        name to tag besides postern:<version> (default postern:latest)
#   POSTERN_IMAGE_REBUILD=1  build even when the inputs are unchanged
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo_root"

say() { echo "image: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

check_only=0
case "${1:-}" in
  '') ;;
  --check) check_only=1 ;;
  *) die "usage: npm run image [-- --check]" ;;
esac

base="${POSTERN_IMAGE_NODE:-node:24-bookworm-slim}"
image="${POSTERN_IMAGE:-postern:latest}"
version="$(node -p 'require("./package.json").version')"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
source_url="$(git config --get remote.origin.url 2>/dev/null || echo unknown)"

# What the image runs, relative to the repository root. Tests (*.test.ts) stay out.
runtime_paths=(
  package.json package-lock.json patches
  bin
  packages/shared/package.json packages/shared/src
  apps/mta/package.json apps/mta/src
  apps/core/package.json apps/core/src
  apps/api/package.json apps/api/src
  migrations templates scripts/migrate.ts
)

command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 || die "no Docker engine answers (bash scripts/ci/ensure-docker.sh starts one)"
base_id="$(docker image inspect --format '{{.Id}}' "$base" 2>/dev/null || true)"
if [ -z "$base_id" ]; then
  if [ "$check_only" = 1 ]; then
    say "base image $base is not in the Docker store"
    exit 1
  fi
  say "pulling the base image $base"
  docker pull "$base" >/dev/null || die "cannot pull $base; without a registry: npm run images:local, then . scripts/images/local-images.env"
  base_id="$(docker image inspect --format '{{.Id}}' "$base")"
fi

staging="$(mktemp -d "${TMPDIR:-/tmp}/postern-image.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
context="$staging/context"
mkdir -p "$context"
tar -C "$repo_root" --exclude='*.test.ts' -cf - "${runtime_paths[@]}" | tar -C "$context" -xf -

# Sorted names and contents, owner and times left out: the same tree gives the same hash anywhere.
inputs="$({
  echo "base $base_id"
  sha256sum Dockerfile scripts/images/build-postern-image.sh
  (cd "$context" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
} | sha256sum | cut -c1-32)"

have="$(docker image inspect --format '{{index .Config.Labels "org.postern.inputs"}}' "$image" 2>/dev/null || true)"
if [ "$check_only" = 1 ]; then
  if [ "$have" = "$inputs" ]; then
    say "$image is up to date (inputs $inputs)"
    exit 0
  fi
  if [ -n "$have" ]; then
    say "$image is stale (built from inputs $have, this tree is $inputs): npm run image builds it"
  else
    say "$image is missing: npm run image builds it"
  fi
  exit 1
fi
if [ "$have" = "$inputs" ] && [ "${POSTERN_IMAGE_REBUILD:-0}" != 1 ]; then
  say "$image is up to date (inputs $inputs); POSTERN_IMAGE_REBUILD=1 builds it anyway"
  exit 0
fi

start=$SECONDS
say "installing the production dependencies (npm ci --omit=dev --omit=optional)"
install_log="$staging/npm.log"
if ! (cd "$context" && npm ci --omit=dev --omit=optional --no-audit --no-fund --loglevel=error) >"$install_log" 2>&1; then
  # As in .ci/run: npm ci refuses a lock whose other platforms' optional binaries the registry mirror
  # lacks (EUSAGE); npm install resolves the same locked versions. Any other failure is fatal.
  grep -q 'EUSAGE' "$install_log" || { cat "$install_log" >&2; die "npm ci failed"; }
  say "npm ci refused the lock file (EUSAGE); npm install --no-save installs the same locked versions"
  (cd "$context" && rm -rf node_modules && npm install --no-save --omit=dev --omit=optional --no-audit --no-fund --loglevel=error) >&2
fi
native="$(find "$context/node_modules" \( -name '*.node' -o -name binding.gyp \) -print -quit)"
[ -z "$native" ] || die "a dependency brings native code ($native): it would be built for this host, not for the image"

say "building $image and postern:$version from $base"
old_id="$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)"
docker build --quiet -f Dockerfile \
  --build-arg "POSTERN_NODE_IMAGE=$base" \
  --build-arg "POSTERN_VERSION=$version" \
  --build-arg "POSTERN_REVISION=$revision" \
  --build-arg "POSTERN_SOURCE=$source_url" \
  --label "org.postern.inputs=$inputs" \
  -t "$image" -t "postern:$version" \
  "$context" >/dev/null
new_id="$(docker image inspect --format '{{.Id}}' "$image")"
# The first stage's image is left untagged by the classic builder: only the runtime stage is kept.
docker image prune --force --filter label=org.postern.stage=app >/dev/null 2>&1 || true
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
  # The replaced image is now untagged; drop it unless a container still uses it.
  docker rmi "$old_id" >/dev/null 2>&1 || true
fi
say "built $image (postern:$version, $(docker image inspect --format '{{.Size}}' "$image" | awk '{printf "%d MB", $1/1e6}')) in $((SECONDS - start))s"
