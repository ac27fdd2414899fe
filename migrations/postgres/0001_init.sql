-- Initial schema (PostgreSQL). Append-only: never edit once landed.

-- One row per stored content, whatever the number of repositories using it.
CREATE TABLE blobs (
    digest      TEXT COLLATE "C" PRIMARY KEY,
    size        BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    last_access BIGINT NOT NULL
);

-- Which repository may see which blob. A cross-repository mount is a row here.
CREATE TABLE repo_blobs (
    repo       TEXT COLLATE "C" NOT NULL,
    digest     TEXT COLLATE "C" NOT NULL REFERENCES blobs (digest),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX repo_blobs_digest ON repo_blobs (digest);

-- Manifests per repository; their bytes are also stored as a blob.
CREATE TABLE manifests (
    repo          TEXT COLLATE "C" NOT NULL,
    digest        TEXT COLLATE "C" NOT NULL,
    media_type    TEXT COLLATE "C" NOT NULL,
    size          BIGINT NOT NULL,
    artifact_type TEXT COLLATE "C",
    subject       TEXT COLLATE "C",
    annotations   TEXT COLLATE "C",
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX manifests_subject ON manifests (repo, subject);

-- What each manifest references (blobs and child manifests): GC marks from here.
CREATE TABLE manifest_refs (
    repo     TEXT COLLATE "C" NOT NULL,
    manifest TEXT COLLATE "C" NOT NULL,
    child    TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (repo, manifest, child)
);
CREATE INDEX manifest_refs_child ON manifest_refs (child);

CREATE TABLE tags (
    repo       TEXT COLLATE "C" NOT NULL,
    name       TEXT COLLATE "C" NOT NULL,
    digest     TEXT COLLATE "C" NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (repo, name)
);
CREATE INDEX tags_digest ON tags (repo, digest);

-- Open upload sessions. `size` is the number of bytes received so far.
CREATE TABLE uploads (
    id         TEXT COLLATE "C" PRIMARY KEY,
    repo       TEXT COLLATE "C" NOT NULL,
    size       BIGINT NOT NULL,
    parts      BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- The appended chunks of an upload, in order.
CREATE TABLE upload_parts (
    upload  TEXT COLLATE "C" NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
    seq     BIGINT NOT NULL,
    part_id TEXT COLLATE "C" NOT NULL,
    size    BIGINT NOT NULL,
    PRIMARY KEY (upload, seq)
);
