#!/bin/sh
# First start of the bundled PostgreSQL only (docker-entrypoint-initdb.d): creates one role and database for Bazaar
# and one role with its two databases for Temporal (persistence + visibility), each owned by its role.
# Passwords come from the container's environment (BAZAAR_DB_PASSWORD, TEMPORAL_DB_PASSWORD); the entrypoint may
# source this file rather than execute it, so it sets no shell options of its own.
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v bazaar_password="$BAZAAR_DB_PASSWORD" \
    -v temporal_password="$TEMPORAL_DB_PASSWORD" <<'SQL'
CREATE ROLE bazaar LOGIN PASSWORD :'bazaar_password';
CREATE ROLE temporal LOGIN PASSWORD :'temporal_password';
CREATE DATABASE bazaar OWNER bazaar;
CREATE DATABASE temporal OWNER temporal;
CREATE DATABASE temporal_visibility OWNER temporal;
SQL
