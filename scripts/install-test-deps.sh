#!/usr/bin/env bash
# Installs what esmd's integration tests start (see internal/testenv) into
# the test cache, $ESMD_TEST_CACHE (default <repo>/.cache/testenv):
#   fauxqs/node_modules/fauxqs   npm fauxqs (SQS + SNS + S3 emulator), pinned
#   kinesis/node_modules/kinesis-local  npm kinesis-local (kinesis-mock), pinned
#   kinesalite/node_modules/kinesalite  npm kinesalite, pinned (Kinesis benchmarks only)
#   jssdk/node_modules/@aws-sdk/client-lambda  npm, pinned (API client tests)
#   bin/aws-lambda-rie           the Lambda Runtime Interface Emulator, built
#                                from its pinned Go pseudo-version
# and, system-wide with apt (Debian; as root), awscli when no `aws` is on
# PATH (the API client tests drive esmd with it), rabbitmq-server, which
# internal/testenv runs as a plain process (the service is never started),
# and activemq (ActiveMQ 5.17 and a JRE), whose jar internal/testenv runs
# with its own config (internal/testenv/activemq), and postgresql-15, which
# internal/testenv runs as a plain process with its own data directory,
# and chromium, which the test of esmd bench's HTML report runs headless.
# Idempotent: a second run only checks versions and exits.
# Needs: node >= 20 and npm, go; apt-get for RabbitMQ and ActiveMQ.
set -euo pipefail

FAUXQS_VERSION=1.9.2                                 # keep in sync with internal/testenv
KINESIS_LOCAL_VERSION=0.6.2                          # internal/testenv KinesisLocalVersion
KINESALITE_VERSION=3.3.3                             # internal/testenv KinesaliteVersion
JS_LAMBDA_VERSION=3.1164.0                           # internal/testenv JSLambdaVersion
RIE_VERSION=v0.0.0-20261030222936-bef5c4ba774d       # (FauxQSVersion, RIEVersion)

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${ESMD_TEST_CACHE:-$ROOT/.cache/testenv}
mkdir -p "$CACHE/bin" "$CACHE/fauxqs" "$CACHE/kinesis" "$CACHE/kinesalite" "$CACHE/jssdk"

# fauxqs
have=$(node -p "require('$CACHE/fauxqs/node_modules/fauxqs/package.json').version" 2>/dev/null || true)
if [ "$have" != "$FAUXQS_VERSION" ]; then
  echo "install-test-deps: npm install fauxqs@$FAUXQS_VERSION into $CACHE/fauxqs"
  [ -f "$CACHE/fauxqs/package.json" ] || echo '{"name":"esmd-testenv","private":true}' > "$CACHE/fauxqs/package.json"
  npm install --prefix "$CACHE/fauxqs" --no-audit --no-fund --loglevel=error "fauxqs@$FAUXQS_VERSION"
fi

# kinesis-local
have=$(node -p "require('$CACHE/kinesis/node_modules/kinesis-local/package.json').version" 2>/dev/null || true)
if [ "$have" != "$KINESIS_LOCAL_VERSION" ]; then
  echo "install-test-deps: npm install kinesis-local@$KINESIS_LOCAL_VERSION into $CACHE/kinesis"
  [ -f "$CACHE/kinesis/package.json" ] || echo '{"name":"esmd-testenv","private":true}' > "$CACHE/kinesis/package.json"
  npm install --prefix "$CACHE/kinesis" --no-audit --no-fund --loglevel=error "kinesis-local@$KINESIS_LOCAL_VERSION"
fi

# kinesalite (fast Kinesis for the throughput benchmarks; no lineage, no lag)
have=$(node -p "require('$CACHE/kinesalite/node_modules/kinesalite/package.json').version" 2>/dev/null || true)
if [ "$have" != "$KINESALITE_VERSION" ]; then
  echo "install-test-deps: npm install kinesalite@$KINESALITE_VERSION into $CACHE/kinesalite"
  [ -f "$CACHE/kinesalite/package.json" ] || echo '{"name":"esmd-testenv","private":true}' > "$CACHE/kinesalite/package.json"
  npm install --prefix "$CACHE/kinesalite" --no-audit --no-fund --loglevel=error "kinesalite@$KINESALITE_VERSION"
fi

# @aws-sdk/client-lambda (the JavaScript SDK v3 client of esmd's API tests)
have=$(node -p "require('$CACHE/jssdk/node_modules/@aws-sdk/client-lambda/package.json').version" 2>/dev/null || true)
if [ "$have" != "$JS_LAMBDA_VERSION" ]; then
  echo "install-test-deps: npm install @aws-sdk/client-lambda@$JS_LAMBDA_VERSION into $CACHE/jssdk"
  [ -f "$CACHE/jssdk/package.json" ] || echo '{"name":"esmd-testenv","private":true}' > "$CACHE/jssdk/package.json"
  npm install --prefix "$CACHE/jssdk" --no-audit --no-fund --loglevel=error "@aws-sdk/client-lambda@$JS_LAMBDA_VERSION"
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
# The AWS CLI (the API client tests drive esmd with it): the machine image
# has pip's awscli; elsewhere Debian's package.
if ! command -v aws >/dev/null; then
  if ! command -v apt-get >/dev/null; then
    echo "install-test-deps: the AWS CLI (aws) is missing and apt-get is not available; install the AWS CLI" >&2
    exit 1
  fi
  SUDO=
  [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "install-test-deps: apt-get install awscli"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends awscli >/dev/null
fi

# apt_no_service PACKAGE WHAT SERVICE... installs a Debian package whose
# service the tests never use (internal/testenv runs the server itself, on
# loopback, with its own directories): a policy-rc.d that refuses service
# starts keeps the package from starting it (listening on every interface)
# for the length of the install, and should one have started anyway
# (systemd socket activation) it is stopped and disabled. WHAT says what to
# install by hand where apt-get is missing.
apt_no_service() {
  local pkg=$1 what=$2; shift 2
  if ! command -v apt-get >/dev/null; then
    echo "install-test-deps: $pkg is missing and apt-get is not available; $what" >&2
    exit 1
  fi
  local SUDO=
  [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "install-test-deps: apt-get install $pkg"
  local policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    trap "$SUDO rm -f $policy" EXIT
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null
  if [ -n "$policy" ]; then $SUDO rm -f "$policy"; trap - EXIT; fi
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now "$@" >/dev/null 2>&1 || true
  fi
}

# rabbitmq-server (Debian's package, with Erlang).
if [ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
  apt_no_service rabbitmq-server "install RabbitMQ 3.10+ so that /usr/lib/rabbitmq/bin/rabbitmq-server exists" \
    rabbitmq-server.service epmd.socket epmd.service
fi

# activemq (Debian's package, ActiveMQ 5.17 with a headless JRE):
# internal/testenv runs the broker's jar with its own config
# (internal/testenv/activemq), ports and data directory.
if [ ! -f /usr/share/activemq/bin/activemq.jar ] || ! command -v java >/dev/null; then
  apt_no_service activemq "install ActiveMQ 5.17 so that /usr/share/activemq/bin/activemq.jar exists, and a JRE" \
    activemq.service
fi

# postgresql-15 (Debian's PostgreSQL 15): internal/testenv runs initdb and
# postgres itself, as the postgres user the package creates when the tests
# run as root; the package's cluster is not used.
if [ ! -x /usr/lib/postgresql/15/bin/postgres ]; then
  apt_no_service postgresql-15 "install PostgreSQL 15 so that /usr/lib/postgresql/15/bin/postgres exists" \
    postgresql.service
fi

# chromium (Debian's package): the test of esmd bench's HTML report opens
# it headless (--dump-dom) to check that the charts render.
if ! command -v chromium >/dev/null; then
  if ! command -v apt-get >/dev/null; then
    echo "install-test-deps: chromium is missing and apt-get is not available; install Chromium so that 'chromium' is on PATH" >&2
    exit 1
  fi
  SUDO=
  [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "install-test-deps: apt-get install chromium"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

echo "install-test-deps: ready in $CACHE"
