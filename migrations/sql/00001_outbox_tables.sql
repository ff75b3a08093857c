-- txoutbox schema, version 1.
--
-- The tables below are a public contract (docs/schema.md): a producer in any
-- language may INSERT INTO outbox_entries (topic, payload) VALUES (...) and
-- every other column takes its default.

-- +goose Up
-- +goose StatementBegin
CREATE TABLE outbox_entries (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic         text        NOT NULL CHECK (topic <> '' AND length(topic) <= 255),
    payload       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    key           text        NOT NULL DEFAULT gen_random_uuid()::text
                              CHECK (key <> '' AND length(key) <= 255),
    ordering_key  text        CHECK (ordering_key IS NULL OR (ordering_key <> '' AND length(ordering_key) <= 255)),
    queue         text        NOT NULL DEFAULT 'default' CHECK (queue <> '' AND length(queue) <= 64),
    priority      smallint    NOT NULL DEFAULT 0,
    state         text        NOT NULL DEFAULT 'pending'
                              CHECK (state IN ('pending', 'running', 'done', 'dead')),
    attempt       integer     NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    attempt_base  integer     NOT NULL DEFAULT 0 CHECK (attempt_base >= 0),
    max_attempts  integer     NOT NULL DEFAULT 25 CHECK (max_attempts > 0),
    run_at        timestamptz NOT NULL DEFAULT now(),
    lease_until   timestamptz,
    lease_owner   text,
    last_error    text,
    headers       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    result        jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    CONSTRAINT outbox_entries_topic_key_uniq UNIQUE (topic, key)
);
-- +goose StatementEnd

COMMENT ON TABLE outbox_entries IS 'txoutbox entries; see docs/schema.md for the contract.';
COMMENT ON COLUMN outbox_entries.attempt IS 'Claims so far; never decreases; the fencing token of the current lease.';
COMMENT ON COLUMN outbox_entries.attempt_base IS 'Claims that do not count against max_attempts (hand-backs at shutdown, replays).';

-- What the claimer reads: pending entries of a queue in priority and time order.
CREATE INDEX outbox_entries_claim_idx ON outbox_entries (queue, priority DESC, run_at, id)
    WHERE state = 'pending';

-- What the rescuer reads: running entries by lease expiry.
CREATE INDEX outbox_entries_lease_idx ON outbox_entries (lease_until)
    WHERE state = 'running';

-- What the per-key ordering check reads: unfinished entries of an ordering key.
CREATE INDEX outbox_entries_ordering_idx ON outbox_entries (ordering_key, id)
    WHERE ordering_key IS NOT NULL AND state <> 'done';

-- What retention and the dead-letter tools read.
CREATE INDEX outbox_entries_finished_idx ON outbox_entries (state, finished_at)
    WHERE state IN ('done', 'dead');

-- +goose StatementBegin
CREATE TABLE outbox_processed_keys (
    scope         text        NOT NULL,
    key           text        NOT NULL,
    entry_id      bigint,
    processed_at  timestamptz NOT NULL DEFAULT now(),
    result        jsonb,
    PRIMARY KEY (scope, key)
);
-- +goose StatementEnd

CREATE INDEX outbox_processed_keys_processed_at_idx ON outbox_processed_keys (processed_at);

-- Wake relays on every insert, whoever inserts (Go or plain SQL). One
-- notification per statement and queue; Postgres folds duplicates within a
-- transaction and delivers them only at commit.
-- +goose StatementBegin
CREATE FUNCTION outbox_entries_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    q text;
BEGIN
    FOR q IN SELECT DISTINCT n.queue FROM new_entries n LOOP
        PERFORM pg_notify('txoutbox', q);
    END LOOP;
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER outbox_entries_notify_insert
    AFTER INSERT ON outbox_entries
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_entries_notify();

-- +goose Down
DROP TRIGGER IF EXISTS outbox_entries_notify_insert ON outbox_entries;
DROP FUNCTION IF EXISTS outbox_entries_notify();
DROP TABLE IF EXISTS outbox_processed_keys;
DROP TABLE IF EXISTS outbox_entries;
