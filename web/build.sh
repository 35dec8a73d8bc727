#!/usr/bin/env bash
# Rebuilds the embedded GraphiQL page: web/graphiql -> web/graphiql/dist.
# Needs Node.js (^20.19 or >=22.12) and npm with access to the npm registry.
# Commit the resulting web/graphiql/dist; the Go build embeds it (web.go).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/graphiql"
npm ci --no-audit --no-fund
npm run build
echo "built $(pwd)/dist:"
du -sh dist
