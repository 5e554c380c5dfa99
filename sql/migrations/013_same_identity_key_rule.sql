-- The duplicate rule `feed_guid` meant "same feed, same identity key" (the guid, or the
-- link under the feed's `link` rule, or title and date under `title_date`), not only
-- the guid: it is renamed `same_identity_key`.
ALTER TABLE duplicates DROP CONSTRAINT IF EXISTS duplicates_rule_check;
UPDATE duplicates SET rule = 'same_identity_key' WHERE rule = 'feed_guid';
ALTER TABLE duplicates ADD CONSTRAINT duplicates_rule_check
    CHECK (rule IN ('same_identity_key', 'canonical_url', 'content_hash'));
