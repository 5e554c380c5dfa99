-- Which parser read each fetched body (issue: a parse path five times faster than
-- feedparser): 'lxml' (the fast path, pipeline/fastparse.py), 'feedparser' (the reference,
-- and the fallback for every body the fast path does not vouch for), 'jsonfeed'. NULL when
-- no body was parsed (not modified, failed, or a body the parser could not read).
ALTER TABLE fetch_log ADD COLUMN parser text;
