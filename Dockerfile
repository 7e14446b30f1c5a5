# The Postern image: one image for every process, `postern mta | core | api | migrate | token ...`
# (docs/deploy.md, "Container image"). Build it with `npm run image`
# (scripts/images/build-postern-image.sh), which stages the build context: the files the processes
# run (no tests) and their production node_modules, installed by `npm ci --omit=dev --omit=optional`
# from package-lock.json, patches/ applied, on the build host. The build itself reaches no network:
# the build host has the npm registry it installs from (and its trust store), a build container may
# not, and the dependencies are pure JavaScript (the script refuses native addons), so where npm ran
# does not change what the image holds. Written for the classic builder as well as BuildKit.
#
# The base is a build argument: the public Node image by default; a machine that reaches no
# container registry builds from the local one (local/postern-node:24, npm run images:local).
ARG POSTERN_NODE_IMAGE=node:24-bookworm-slim

FROM ${POSTERN_NODE_IMAGE} AS app
# The classic builder keeps this stage as an untagged image; the label lets npm run image prune it.
LABEL org.postern.stage=app
WORKDIR /opt/postern
COPY . .
# Fail the build rather than the first deployment: each process must load its whole module graph on
# this Node. Without configuration each stops at its first step with exit 2 and the missing DSN,
# after every import has resolved (a missing file or dependency exits 1 instead).
RUN chmod -R a+rX,go-w /opt/postern \
 && for process in mta core api migrate; do \
      out="$(MAIL_POSTGRES_PRIMARY_DSN= node bin/postern.ts "$process" 2>&1)"; code=$?; \
      if [ "$process" = migrate ]; then want=1; else want=2; fi; \
      case "$code:$out" in "$want:"*MAIL_POSTGRES_PRIMARY_DSN*) ;; *) echo "postern $process does not load (exit $code): $out"; exit 1 ;; esac; \
    done \
 && node bin/postern.ts token --help >/dev/null

FROM ${POSTERN_NODE_IMAGE}
ARG POSTERN_VERSION=unknown
ARG POSTERN_REVISION=unknown
ARG POSTERN_SOURCE=unknown
LABEL org.opencontainers.image.title="Postern" \
      org.opencontainers.image.description="Postern mail platform: SMTP edge, delivery engine, GraphQL API (postern mta|core|api|migrate|token)" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${POSTERN_VERSION}" \
      org.opencontainers.image.revision="${POSTERN_REVISION}" \
      org.opencontainers.image.source="${POSTERN_SOURCE}"

# A fixed, unprivileged uid: orchestrators can check runAsNonRoot, volumes can be chowned to it.
RUN groupadd --system --gid 10001 postern \
 && useradd --system --uid 10001 --gid postern --home-dir /opt/postern --no-create-home --shell /usr/sbin/nologin postern
COPY --from=app /opt/postern /opt/postern
RUN ln -s /opt/postern/bin/postern.ts /usr/local/bin/postern
WORKDIR /opt/postern

# In a container the listeners must be reachable from the container network; the code's defaults
# (127.0.0.1) suit a host install. Production behaviour (masked errors, no GraphiQL) unless told
# otherwise.
ENV MAIL_ENV=production \
    MAIL_SMTP_LISTEN_ADDR=0.0.0.0:2525 \
    MAIL_MTA_HTTP_ADDR=0.0.0.0:4002 \
    MAIL_INTERNAL_HTTP_ADDR=0.0.0.0:4001 \
    MAIL_API_HTTP_ADDR=0.0.0.0:4000
# Node keeps the code it compiled (and the TypeScript it stripped) here and reuses it at the next
# start of the same file: the HEALTHCHECK, a new process every 15 s, costs about half the CPU
# (0.21 s against 0.39 s a probe over ten, measured in this image), and a restarted process starts sooner.
# Where /tmp is not writable (a read-only root file system), Node goes on without it, silently.
ENV NODE_COMPILE_CACHE=/tmp/postern-node-compile-cache
EXPOSE 2525 4000 4001 4002

USER 10001:10001
# The process this container runs answers /readyz on its own address (bin/healthcheck.ts).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/node", "/opt/postern/bin/postern.ts", "healthcheck"]
# The process itself is PID 1 and handles SIGTERM: it finishes or releases its work within
# MAIL_SHUTDOWN_TIMEOUT (give `docker stop` a longer --time, compose a longer stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/node", "/opt/postern/bin/postern.ts"]
CMD ["--help"]
