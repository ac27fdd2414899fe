-- A counter per repository, bumped whenever one of its tags appears or goes
-- (re-pointing a tag keeps the list of names, so it does not count). Tag
-- lists are cached by this version: one small lookup tells a cache, in any
-- replica, whether its copy is current.
CREATE TABLE tag_versions (
    repo    TEXT PRIMARY KEY,
    version BIGINT NOT NULL
);

CREATE FUNCTION bump_tag_version() RETURNS trigger AS $$
DECLARE
    r TEXT;
BEGIN
    IF TG_OP = 'DELETE' THEN
        r := OLD.repo;
    ELSE
        r := NEW.repo;
    END IF;
    INSERT INTO tag_versions (repo, version) VALUES (r, 1)
    ON CONFLICT (repo) DO UPDATE SET version = tag_versions.version + 1;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER tags_changed AFTER INSERT OR DELETE ON tags
    FOR EACH ROW EXECUTE FUNCTION bump_tag_version();
