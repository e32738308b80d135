-- Keys that seal personal data, one per owner (an incident's caller details). A destroyed
-- key leaves its row with no key, so that the owner never gets a new one.
CREATE TABLE data_keys (
    owner uuid PRIMARY KEY,
    key bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    destroyed_at timestamptz
);
