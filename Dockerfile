# Settle engine image: one image, four roles (`start`, `serve`, `worker`, `listen`) plus `migrate`.
# Node 24 runs the TypeScript sources directly (type stripping), so there is no build stage.
FROM node:24-bookworm-slim

ENV NODE_ENV=production \
    SETTLE_HOST=0.0.0.0 \
    SETTLE_PORT=8080 \
    SETTLE_DATA_DIR=/app/data \
    SETTLE_CONFIG_DIR=/app

WORKDIR /app

# Dependencies first so source edits reuse this layer.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund \
 && npm cache clean --force

# Application files stay owned by root (read-only to the runtime user);
# only the data directory is writable.
COPY bin/ ./bin/
COPY src/ ./src/
COPY connectors/ ./connectors/
COPY mappings/ ./mappings/
COPY policies/ ./policies/
COPY fhir-profiles/ ./fhir-profiles/
RUN mkdir -p /app/data && chown node:node /app/data && chmod 0750 /app/data

# The `node` user (uid 1000) ships with the official image.
USER node

# The HTTP API; the MLLP listener of connectors/pm-hl7v2.json (`settle listen`).
EXPOSE 8080 2575

# Liveness of the HTTP API. The slim image has no curl, so use Node's fetch.
# Worker and migrate containers have no HTTP listener: docker-compose.yml disables this check for them,
# and gives the listener container a check of its MLLP port instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.SETTLE_PORT||8080)+'/healthz',{signal:AbortSignal.timeout(4000)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]

# A 16 MB young generation (V8's default grows to 128 MB under a fast allocator such as a Bulk import) keeps
# peak memory flat at the same speed; README "Syncing".
ENTRYPOINT ["node", "--max-semi-space-size=16", "src/cli/main.ts"]
CMD ["start"]
