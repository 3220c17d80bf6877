#!/bin/sh
# One-shot job (temporalio/admin-tools): registers Bazaar's custom search attributes in TEMPORAL_NAMESPACE.
# Idempotent: an attribute that already exists is left alone, so the job can run on every `docker compose up`.
# The list here must match bazaar/temporal.py ORDER_SEARCH_ATTRIBUTES (tests/test_compose.py checks it).
set -eu

: "${TEMPORAL_ADDRESS:?TEMPORAL_ADDRESS must be set}"
: "${TEMPORAL_NAMESPACE:=default}"

ATTRIBUTES="OrderStatus=Keyword BuyerId=Keyword SellerId=Keyword ListingId=Keyword OrderAmount=Int PaymentState=Keyword NeedsAttention=Bool"

tries=0
until temporal operator namespace describe --address "$TEMPORAL_ADDRESS" --namespace "$TEMPORAL_NAMESPACE" >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -ge 120 ]; then
        echo "namespace $TEMPORAL_NAMESPACE not available at $TEMPORAL_ADDRESS after 120 s" >&2
        exit 1
    fi
    echo "waiting for namespace $TEMPORAL_NAMESPACE at $TEMPORAL_ADDRESS"
    sleep 1
done

for pair in $ATTRIBUTES; do
    name="${pair%%=*}"
    type="${pair#*=}"
    if temporal operator search-attribute list --address "$TEMPORAL_ADDRESS" --namespace "$TEMPORAL_NAMESPACE" \
        | grep -qw "$name"; then
        echo "search attribute $name already registered"
    else
        echo "registering search attribute $name ($type)"
        temporal operator search-attribute create --address "$TEMPORAL_ADDRESS" \
            --namespace "$TEMPORAL_NAMESPACE" --name "$name" --type "$type"
    fi
done
echo "search attributes ready in namespace $TEMPORAL_NAMESPACE"
