-- Accounts of the login guard. The hash is a PHC string (Argon2id, with its parameters and
-- salt), so parameters can change without a migration: old hashes still verify.
CREATE TABLE users (
    name          TEXT   NOT NULL PRIMARY KEY,
    password_hash TEXT   NOT NULL,
    created_ms    BIGINT NOT NULL
);
