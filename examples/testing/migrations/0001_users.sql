-- The application's own schema, next to txoutbox's tables.
CREATE TABLE users (
    id         bigserial PRIMARY KEY,
    email      text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audit_log (
    user_id bigint NOT NULL REFERENCES users (id),
    event   text NOT NULL,
    at      timestamptz NOT NULL DEFAULT now()
);
