-- Initial schema (SQLite). Append-only: never edit once landed.

-- One row per stored content, whatever the number of repositories using it.
CREATE TABLE blobs (
    digest      TEXT PRIMARY KEY,
    size        INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    last_access INTEGER NOT NULL
) STRICT;

-- Which repository may see which blob. A cross-repository mount is a row here.
CREATE TABLE repo_blobs (
    repo       TEXT NOT NULL,
    digest     TEXT NOT NULL REFERENCES blobs (digest),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (repo, digest)
) STRICT;
CREATE INDEX repo_blobs_digest ON repo_blobs (digest);

-- Manifests per repository; their bytes are also stored as a blob.
CREATE TABLE manifests (
    repo          TEXT NOT NULL,
    digest        TEXT NOT NULL,
    media_type    TEXT NOT NULL,
    size          INTEGER NOT NULL,
    artifact_type TEXT,
    subject       TEXT,
    annotations   TEXT,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (repo, digest)
) STRICT;
CREATE INDEX manifests_subject ON manifests (repo, subject);

-- What each manifest references (blobs and child manifests): GC marks from here.
CREATE TABLE manifest_refs (
    repo     TEXT NOT NULL,
    manifest TEXT NOT NULL,
    child    TEXT NOT NULL,
    PRIMARY KEY (repo, manifest, child)
) STRICT;
CREATE INDEX manifest_refs_child ON manifest_refs (child);

CREATE TABLE tags (
    repo       TEXT NOT NULL,
    name       TEXT NOT NULL,
    digest     TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (repo, name)
) STRICT;
CREATE INDEX tags_digest ON tags (repo, digest);

-- Open upload sessions. `size` is the number of bytes received so far.
CREATE TABLE uploads (
    id         TEXT PRIMARY KEY,
    repo       TEXT NOT NULL,
    size       INTEGER NOT NULL,
    parts      INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

-- The appended chunks of an upload, in order.
CREATE TABLE upload_parts (
    upload  TEXT NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
    seq     INTEGER NOT NULL,
    part_id TEXT NOT NULL,
    size    INTEGER NOT NULL,
    PRIMARY KEY (upload, seq)
) STRICT;
