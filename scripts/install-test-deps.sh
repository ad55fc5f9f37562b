#!/usr/bin/env bash
# Installs what esmd's integration tests start (see internal/testenv) into
# the test cache, $ESMD_TEST_CACHE (default <repo>/.cache/testenv):
#   fauxqs/node_modules/fauxqs   npm fauxqs (SQS + SNS + S3 emulator), pinned
#   bin/aws-lambda-rie           the Lambda Runtime Interface Emulator, built
#                                from its pinned Go pseudo-version
# Idempotent: a second run only checks versions and exits.
# Needs: node >= 20 and npm, go.
set -euo pipefail

FAUXQS_VERSION=1.9.2                                 # keep in sync with internal/testenv
RIE_VERSION=v0.0.0-20261030222936-bef5c4ba774d       # (FauxQSVersion, RIEVersion)

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${ESMD_TEST_CACHE:-$ROOT/.cache/testenv}
mkdir -p "$CACHE/bin" "$CACHE/fauxqs"

# fauxqs
have=$(node -p "require('$CACHE/fauxqs/node_modules/fauxqs/package.json').version" 2>/dev/null || true)
if [ "$have" != "$FAUXQS_VERSION" ]; then
  echo "install-test-deps: npm install fauxqs@$FAUXQS_VERSION into $CACHE/fauxqs"
  [ -f "$CACHE/fauxqs/package.json" ] || echo '{"name":"esmd-testenv","private":true}' > "$CACHE/fauxqs/package.json"
  npm install --prefix "$CACHE/fauxqs" --no-audit --no-fund --loglevel=error "fauxqs@$FAUXQS_VERSION"
fi

# aws-lambda-rie
stamp="$CACHE/bin/aws-lambda-rie.version"
if [ ! -x "$CACHE/bin/aws-lambda-rie" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$RIE_VERSION" ]; then
  echo "install-test-deps: go install aws-lambda-rie@$RIE_VERSION into $CACHE/bin"
  # Outside the module so esmd's go.mod is not involved.
  (cd "$CACHE" && GOBIN="$CACHE/bin" GOFLAGS= CGO_ENABLED=0 \
    go install "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@$RIE_VERSION")
  echo "$RIE_VERSION" > "$stamp"
fi
echo "install-test-deps: ready in $CACHE"
