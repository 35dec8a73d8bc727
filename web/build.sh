#!/usr/bin/env bash
# Rebuilds the embedded browser UIs:
#   web/graphiql -> web/graphiql/dist  (GraphiQL at /)
#   web/app      -> web/app/dist       (the web chat at /app/)
# Needs Node.js (^20.19 or >=22.12) and npm with access to the npm registry.
# Commit the resulting dist directories; the Go build embeds them (web.go).
set -euo pipefail

web="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
for ui in graphiql app; do
  echo "--- web/$ui"
  cd "$web/$ui"
  npm ci --no-audit --no-fund
  npm run build
  echo "built $(pwd)/dist:"
  du -sh dist
done
