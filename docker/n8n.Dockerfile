# n8n 2.41.1 (the newest line the workflow tests run, its pinned version: tests/n8n_server.py,
# scripts/install_n8n_newest.sh) with the
# n8n-nodes-tunebridge community node package built from n8n_nodes/ and installed as n8n's own
# installer lays it out: <user folder>/.n8n/nodes/node_modules/n8n-nodes-tunebridge plus
# <user folder>/.n8n/nodes/package.json, so node types read `n8n-nodes-tunebridge.tunebridge` as in
# the exports in workflows/.
#
#   docker build -f docker/n8n.Dockerfile -t tunebridge-n8n .        (from the repository root)
#
# n8n's state lives in its database (compose.yaml: PostgreSQL), not in a volume over ~/.n8n: such a
# volume would hide the package below, or keep an old copy of it after the image is rebuilt.

# Build and pack the node package on Node 24, as `make test-n8n` does (@n8n/node-cli 0.48 needs Node 22+).
FROM node:24-bookworm-slim AS node-package
WORKDIR /src
COPY n8n_nodes/package.json n8n_nodes/package-lock.json ./
RUN npm ci --yes --no-audit --no-fund --loglevel=error
COPY n8n_nodes/ ./
RUN npm run build \
 && npm pack --pack-destination /tmp \
 && mkdir -p /out/nodes/node_modules/n8n-nodes-tunebridge \
 && tar -xzf /tmp/n8n-nodes-tunebridge-*.tgz --strip-components=1 -C /out/nodes/node_modules/n8n-nodes-tunebridge \
 && node -e "const v = require('./package.json').version; require('fs').writeFileSync('/out/nodes/package.json', \
      JSON.stringify({name: 'installed-nodes', private: true, dependencies: {'n8n-nodes-tunebridge': v}}, null, 2))"

FROM n8nio/n8n:2.41.1
ENV N8N_USER_FOLDER=/home/node \
    N8N_COMMUNITY_PACKAGES_ENABLED=true
COPY --from=node-package --chown=node:node /out/nodes /home/node/.n8n/nodes
# The intake workflows' default store_dir (their Settings node), inside n8n's allowed file folder
# (N8N_RESTRICT_FILE_ACCESS_TO, default ~/.n8n-files); a new volume mounted there starts with it.
RUN mkdir -p /home/node/.n8n-files/tunebridge
