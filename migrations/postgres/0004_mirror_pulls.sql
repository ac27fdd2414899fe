-- When each mirrored repository was last pulled (any manifest or blob read
-- through the mirror). The registry batches these in memory and writes them
-- every few seconds; GC deletes the manifests and tags of a mirrored
-- repository not pulled for its upstream's keep_for.
CREATE TABLE mirror_pulls (
    repo      TEXT PRIMARY KEY,
    pulled_at BIGINT NOT NULL
);
