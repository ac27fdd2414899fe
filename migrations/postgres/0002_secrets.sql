-- Secrets shared by every replica, such as the token signing key.
CREATE TABLE secrets (
    name  TEXT COLLATE "C" PRIMARY KEY,
    value TEXT NOT NULL
);
