# syntax=docker/dockerfile:1
# musig2-signer: multi-stage image.
#
#   build stage    npm ci (native modules pkcs11js and better-sqlite3 compiled from source,
#                  see .npmrc), the project's libsecp256k1 addon (native/, npm's node-gyp against
#                  Debian's libsecp256k1-dev), npm run build (tsc -> dist/), then prune to
#                  runtime dependencies
#   runtime stage  the base image plus SoftHSM2 (for evaluation) and Debian's libsecp256k1-1, no
#                  compilers, no npm, runs as the non-root user musig2; HEALTHCHECK through
#                  grpc.health.v1
#
# BASE_IMAGE must be Debian bookworm with Node 20 in /usr/local (bin/node, include/node for
# native builds; npm under lib/node_modules/npm for the build stage). node:20-bookworm-slim is
# such an image; scripts/build-image.sh builds one without a Docker engine (debootstrap
# minbase + the build host's Node 20). See docs/container.md.
ARG BASE_IMAGE=node:20-bookworm-slim

# ---------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS build
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ ca-certificates libsecp256k1-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Node's own headers for node-gyp, so nothing is downloaded from nodejs.org.
ENV npm_config_nodedir=/usr/local \
    npm_config_update_notifier=false \
    npm_config_fund=false \
    npm_config_audit=false
# Behind a TLS-intercepting proxy the build passes its CA bundle (mounted for the RUN steps
# only, see scripts/build-image.sh); a build ARG, so it never reaches the runtime stage.
ARG NPM_CONFIG_CAFILE
COPY package.json package-lock.json .npmrc ./
RUN npm ci
COPY tsconfig.json tsconfig.build.json ./
COPY proto ./proto
COPY src ./src
COPY bin ./bin
COPY softhsm ./softhsm
COPY docker ./docker
COPY native/binding.gyp ./native/
COPY native/src ./native/src
# --ignore-scripts: the packages are installed above; prebuild's ensure-deps is for plain clones.
RUN (cd native && node /usr/local/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js rebuild --nodedir=/usr/local) \
 && npm run --ignore-scripts build \
 && npm prune --omit=dev \
 && npm cache clean --force \
 && node -e "require('better-sqlite3'); require('pkcs11js'); require('./native/build/Release/musig2_secp256k1.node')"

# ---------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS runtime
ENV DEBIAN_FRONTEND=noninteractive
# SoftHSM2 for evaluation (a vendor module can be mounted instead, see MUSIG2_PKCS11_MODULE);
# libsecp256k1-1 for the native curve backend (the addon links it);
# tini reaps children and forwards signals so SIGTERM drains the daemon. npm, npx, corepack
# and yarn are removed: nothing installs packages at run time.
RUN apt-get update \
 && apt-get install -y --no-install-recommends softhsm2 tini libsecp256k1-1 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
 && rm -rf /usr/local/lib/node_modules /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack \
           /usr/local/bin/yarn /usr/local/bin/yarnpkg /opt/yarn-* /usr/local/include/node \
 && (getent passwd node >/dev/null && userdel -r node 2>/dev/null || true) \
 && groupadd --system --gid 10001 musig2 \
 && useradd --system --uid 10001 --gid musig2 --home-dir /var/lib/musig2 --shell /usr/sbin/nologin musig2 \
 && install -d -o musig2 -g musig2 -m 0700 /var/lib/musig2

WORKDIR /app
COPY --from=build /src/package.json /src/package-lock.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY --from=build /src/bin ./bin
COPY --from=build /src/proto ./proto
COPY --from=build /src/native/build/Release/musig2_secp256k1.node ./native/build/Release/
# softhsm/init-token.sh provisions the demo token through src/keystore/softhsm-provision.ts
# (run by tsx, a runtime dependency); the daemon itself runs dist/.
COPY --from=build /src/softhsm ./softhsm
COPY --from=build /src/src ./src
COPY --from=build /src/docker/entrypoint.sh /usr/local/bin/musig2-entrypoint
RUN chmod 0755 /usr/local/bin/musig2-entrypoint \
 && ln -s /app/bin/musig2-signer.js /usr/local/bin/musig2-signer \
 && chmod -R a+rX,go-w /app

# Configuration: every serve setting also reads an environment variable (musig2-signer serve
# --help). Off loopback the daemon refuses to start without TLS, access rules and an audit log
# (or an explicit --insecure), so the defaults below are safe to publish.
ENV NODE_ENV=production \
    MUSIG2_LISTEN=0.0.0.0:50051 \
    MUSIG2_LEDGER=sqlite:/var/lib/musig2/ledger.sqlite \
    MUSIG2_CURVE_BACKEND=native \
    MUSIG2_PKCS11_MODULE=/usr/lib/softhsm/libsofthsm2.so
VOLUME ["/var/lib/musig2"]
EXPOSE 50051
USER musig2:musig2
HEALTHCHECK --interval=15s --timeout=6s --start-period=20s --retries=3 \
  CMD ["musig2-signer", "health", "--timeout-ms", "5000"]
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/musig2-entrypoint"]
CMD ["serve"]
