-- A counter per repository, bumped whenever one of its tags appears or goes
-- (re-pointing a tag keeps the list of names, so it does not count). Tag
-- lists are cached by this version: one small lookup tells a cache, in any
-- process, whether its copy is current.
CREATE TABLE tag_versions (
    repo    TEXT PRIMARY KEY,
    version INTEGER NOT NULL
) STRICT;

CREATE TRIGGER tags_inserted AFTER INSERT ON tags BEGIN
    INSERT INTO tag_versions (repo, version) VALUES (NEW.repo, 1)
    ON CONFLICT (repo) DO UPDATE SET version = version + 1;
END;

CREATE TRIGGER tags_deleted AFTER DELETE ON tags BEGIN
    INSERT INTO tag_versions (repo, version) VALUES (OLD.repo, 1)
    ON CONFLICT (repo) DO UPDATE SET version = version + 1;
END;
