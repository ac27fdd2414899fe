-- What [[retention]] judges by, besides tags.updated_at (push time).
--
-- manifest_pulls: when each manifest was last pulled (a GET of it). The
-- registry batches pulls in memory and writes them every few seconds, one
-- transaction a batch, so a busy registry does not write once per pull.
CREATE TABLE manifest_pulls (
    repo      TEXT NOT NULL,
    digest    TEXT NOT NULL,
    pulled_at INTEGER NOT NULL,
    PRIMARY KEY (repo, digest)
) STRICT;

-- manifests.untagged_at: when a manifest lost its last tag (a tag deleted or
-- moved to another manifest); NULL while tagged, and for a manifest that was
-- never tagged (pushed by digest), whose untagged time is its created_at.
-- Kept by triggers, so every path that changes tags keeps it right.
ALTER TABLE manifests ADD COLUMN untagged_at INTEGER;

CREATE TRIGGER tags_tagged AFTER INSERT ON tags BEGIN
    UPDATE manifests SET untagged_at = NULL
    WHERE repo = NEW.repo AND digest = NEW.digest;
END;

CREATE TRIGGER tags_moved AFTER UPDATE OF digest ON tags
WHEN OLD.digest <> NEW.digest BEGIN
    UPDATE manifests SET untagged_at = NULL
    WHERE repo = NEW.repo AND digest = NEW.digest;
    UPDATE manifests SET untagged_at = CAST(strftime('%s', 'now') AS INTEGER)
    WHERE repo = OLD.repo AND digest = OLD.digest
      AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo = OLD.repo AND t.digest = OLD.digest);
END;

CREATE TRIGGER tags_untagged AFTER DELETE ON tags BEGIN
    UPDATE manifests SET untagged_at = CAST(strftime('%s', 'now') AS INTEGER)
    WHERE repo = OLD.repo AND digest = OLD.digest
      AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo = OLD.repo AND t.digest = OLD.digest);
END;
