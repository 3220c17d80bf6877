#!/bin/sh
# One-shot job (temporalio/admin-tools): waits for the server to serve, creates TEMPORAL_NAMESPACE (retention
# TEMPORAL_RETENTION) if it does not exist, and registers Bazaar's custom search attributes in it.
# Idempotent: a namespace or attribute that already exists is left alone, so the job can run on every
# `docker compose up`. The list here must match bazaar/temporal.py ORDER_SEARCH_ATTRIBUTES (tests/test_compose.py
# checks it). Against a cluster whose namespace someone else creates (Temporal Cloud), the create step is skipped.
set -eu

: "${TEMPORAL_ADDRESS:?TEMPORAL_ADDRESS must be set}"
: "${TEMPORAL_NAMESPACE:=default}"
: "${TEMPORAL_RETENTION:=168h}"

ATTRIBUTES="OrderStatus=Keyword BuyerId=Keyword SellerId=Keyword ListingId=Keyword OrderAmount=Int PaymentState=Keyword NeedsAttention=Bool"

tries=0
until temporal operator cluster health --address "$TEMPORAL_ADDRESS" 2>/dev/null | grep -q SERVING; do
    tries=$((tries + 1))
    if [ "$tries" -ge 120 ]; then
        echo "Temporal at $TEMPORAL_ADDRESS not serving after 120 s" >&2
        exit 1
    fi
    echo "waiting for Temporal at $TEMPORAL_ADDRESS"
    sleep 1
done

if temporal operator namespace describe --address "$TEMPORAL_ADDRESS" --namespace "$TEMPORAL_NAMESPACE" >/dev/null 2>&1; then
    echo "namespace $TEMPORAL_NAMESPACE exists"
else
    echo "creating namespace $TEMPORAL_NAMESPACE (retention $TEMPORAL_RETENTION)"
    temporal operator namespace create --address "$TEMPORAL_ADDRESS" --namespace "$TEMPORAL_NAMESPACE" \
        --retention "$TEMPORAL_RETENTION"
fi

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
