-- 0001: identity — users, password credentials, API keys, teams and memberships, the login
-- throttle, and the platform audit log. Applied once, inside the migration transaction.

CREATE TABLE users (
    id          uuid PRIMARY KEY,
    email       text NOT NULL,
    role        text NOT NULL CHECK (role IN ('admin', 'user')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_email_lowercase CHECK (email = lower(email))
);
CREATE UNIQUE INDEX users_email ON users (email);

-- One password per user: an argon2id PHC string (algorithm, parameters and salt included).
CREATE TABLE password_credentials (
    user_id     uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    hash        text NOT NULL CHECK (hash LIKE '$argon2id$%'),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- A key is `<prefix>_<secret>`; only the prefix (to find the row and to show in lists) and the
-- SHA-256 of the whole key are stored.
CREATE TABLE api_keys (
    id            uuid PRIMARY KEY,
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name          text NOT NULL,
    prefix        text NOT NULL UNIQUE,
    key_sha256    bytea NOT NULL CHECK (length(key_sha256) = 32),
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);
CREATE INDEX api_keys_user ON api_keys (user_id);

CREATE TABLE teams (
    id            uuid PRIMARY KEY,
    slug          text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$'),
    display_name  text NOT NULL,
    created_by    uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE team_memberships (
    team_id     uuid NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        text NOT NULL CHECK (role IN ('owner', 'member')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX team_memberships_user ON team_memberships (user_id);

-- Failed logins per (email, client address): consecutive failures and the lockout they earned.
-- A successful login removes the row.
CREATE TABLE login_throttle (
    email         text NOT NULL,
    client_ip     text NOT NULL,
    failures      integer NOT NULL,
    locked_until  timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (email, client_ip)
);

-- Who did what to what, when, and how it ended. Append-only for the API.
CREATE TABLE audit_log (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    actor_id     uuid,
    actor_email  text,
    action       text NOT NULL,
    target       text NOT NULL,
    outcome      text NOT NULL CHECK (outcome IN ('ok', 'denied', 'failed')),
    detail       text,
    client_ip    text
);
CREATE INDEX audit_log_action ON audit_log (action, id);
CREATE INDEX audit_log_actor ON audit_log (actor_email, id);
