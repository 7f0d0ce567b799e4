#!/bin/sh
# One-shot job (temporalio/admin-tools image): wait for the frontend, create the namespace, then register the
# search attributes the transfer workflow sets. Idempotent: whatever exists already is left alone.
#   TEMPORAL_ADDRESS   host:port of the frontend
#   NAMESPACE          the namespace the workers use (TPT_TEMPORAL_NAMESPACE)
#   RETENTION          how long closed transfers stay in Temporal (the audit history in Postgres is forever)
#   SEARCH_ATTRIBUTES  "Name=Type ..." — exactly tpt/search_attributes.py (tests/deploy checks it)
set -eu
: "${TEMPORAL_ADDRESS:?}" "${NAMESPACE:?}" "${SEARCH_ATTRIBUTES:?}"

t() { temporal "$@" --address "$TEMPORAL_ADDRESS"; }

retry() {  # the frontend, and a namespace just created, take a few seconds to be usable
  n=0
  until "$@"; do
    n=$((n + 1))
    if [ "$n" -ge 30 ]; then echo "gave up after $n attempts: $*" >&2; return 1; fi
    sleep 2
  done
}

namespace() {
  t operator namespace describe --namespace "$NAMESPACE" >/dev/null 2>&1 ||
    t operator namespace create --namespace "$NAMESPACE" --retention "${RETENTION:-30d}"
}

search_attribute() {  # NAME TYPE
  t operator search-attribute list --namespace "$NAMESPACE" | grep -qw "$1" ||
    t operator search-attribute create --namespace "$NAMESPACE" --name "$1" --type "$2"
}

retry t operator cluster health
retry namespace
for pair in $SEARCH_ATTRIBUTES; do
  retry search_attribute "${pair%%=*}" "${pair#*=}"
done
echo "namespace $NAMESPACE is ready: $SEARCH_ATTRIBUTES"
