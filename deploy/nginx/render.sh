#!/bin/sh
# Render the balancer template (drimbox-viewer.conf) from the environment, then run the
# command (nginx). Every marker NAME is taken from BALANCER_NAME; one left unset stops here.
set -eu
template=${DRIMBOX_BALANCER_TEMPLATE:-/etc/drimbox/drimbox-viewer.conf.template}
out=${DRIMBOX_BALANCER_CONF:-/etc/drimbox/nginx.conf}
cp "$template" "$out.tmp"
for name in $(grep -o '@[A-Z_]*@' "$template" | sort -u | tr -d @); do
  value=$(printenv "BALANCER_$name" || true)
  if [ -z "$value" ] && [ "$name" != EXTRA ]; then
    echo "drimbox-balancer: BALANCER_$name is not set" >&2
    exit 1
  fi
  # Several lines (REPLICAS) are written as one: 'server a:8080 ...; server b:8080 ...;'.
  escaped=$(printf '%s' "$value" | sed -e 's/[\/&|]/\\&/g')
  sed -i "s|@$name@|$escaped|g" "$out.tmp"
done
mv "$out.tmp" "$out"
exec "$@"
