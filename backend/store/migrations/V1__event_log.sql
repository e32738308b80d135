-- Muster's event log on PostgreSQL.
--
-- position: the event's place in $all, (transaction id << 16) + its index in the append, so
-- that $all is in commit-safe order: readers take only rows below their snapshot's xmin
-- horizon (see docs/adr/0005-postgres-all-below-the-xmin-horizon.md).

-- A stream's revision is its last event's; this table keeps only what metadata events set:
-- events before truncate_before are not readable (a soft delete sets it to the stream's end).
-- Appends lock their streams with transaction-level advisory locks on the names' hashes.
CREATE TABLE streams (
    name            text PRIMARY KEY,
    truncate_before bigint NOT NULL DEFAULT 0
);

CREATE TABLE events (
    position       bigint PRIMARY KEY,
    stream         text NOT NULL,
    revision       bigint NOT NULL,
    id             uuid NOT NULL UNIQUE,
    type           text NOT NULL,
    schema_version integer NOT NULL,
    data           bytea NOT NULL,
    metadata       bytea NOT NULL,
    recorded_at    timestamptz NOT NULL,
    UNIQUE (stream, revision)
);
