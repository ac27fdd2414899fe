-- What [[retention]] judges by, besides tags.updated_at (push time).
--
-- manifest_pulls: when each manifest was last pulled (a GET of it). The
-- registry batches pulls in memory and writes them every few seconds, one
-- transaction a batch, so a busy registry does not write once per pull.
CREATE TABLE manifest_pulls (
    repo      TEXT COLLATE "C" NOT NULL,
    digest    TEXT COLLATE "C" NOT NULL,
    pulled_at BIGINT NOT NULL,
    PRIMARY KEY (repo, digest)
);

-- manifests.untagged_at: when a manifest lost its last tag (a tag deleted or
-- moved to another manifest); NULL while tagged, and for a manifest that was
-- never tagged (pushed by digest), whose untagged time is its created_at.
-- Kept by a trigger, so every path that changes tags keeps it right.
ALTER TABLE manifests ADD COLUMN untagged_at BIGINT;

CREATE FUNCTION track_untagged() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND OLD.digest <> NEW.digest) THEN
        UPDATE manifests SET untagged_at = NULL
        WHERE repo = NEW.repo AND digest = NEW.digest;
    END IF;
    IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND OLD.digest <> NEW.digest) THEN
        UPDATE manifests SET untagged_at = CAST(EXTRACT(EPOCH FROM now()) AS BIGINT)
        WHERE repo = OLD.repo AND digest = OLD.digest
          AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo = OLD.repo AND t.digest = OLD.digest);
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER tags_untagged AFTER INSERT OR UPDATE OF digest OR DELETE ON tags
    FOR EACH ROW EXECUTE FUNCTION track_untagged();
