-- The PostgreSQL schema that releases before the shared query layer (server/store_sql.py) created
-- in their single migration and recorded as schema_version 1 (it is today's version 3).
CREATE TABLE scans (
    scan_id TEXT COLLATE "C" PRIMARY KEY,
    row_id BIGINT GENERATED ALWAYS AS IDENTITY,
    ts DOUBLE PRECISION NOT NULL,
    url TEXT COLLATE "C" NOT NULL,
    domain TEXT COLLATE "C" NOT NULL DEFAULT '',
    rdomain TEXT COLLATE "C" NOT NULL DEFAULT '',
    gateway_id TEXT COLLATE "C" NOT NULL DEFAULT '',
    title TEXT COLLATE "C",
    method TEXT COLLATE "C" NOT NULL,
    status TEXT COLLATE "C" NOT NULL DEFAULT 'pending',
    risk_score DOUBLE PRECISION,
    threat_level TEXT COLLATE "C",
    classification TEXT COLLATE "C",
    blocked BOOLEAN NOT NULL DEFAULT false,
    top_indicator TEXT,
    duration_ms DOUBLE PRECISION,
    content_hash TEXT,
    verdict TEXT,
    error TEXT,
    completed_ts DOUBLE PRECISION
);
CREATE INDEX scans_ts ON scans(ts, row_id);
CREATE INDEX scans_level_ts ON scans(threat_level, ts, row_id);
CREATE INDEX scans_method_ts ON scans(method, ts, row_id);
CREATE INDEX scans_domain_ts ON scans(domain, ts, row_id);
CREATE INDEX scans_rdomain_ts ON scans(rdomain, ts, row_id);
CREATE INDEX scans_gateway_ts ON scans(gateway_id, ts, row_id);
CREATE INDEX scans_ts_level ON scans(ts, threat_level);
CREATE INDEX scans_level_domain ON scans(threat_level, domain);
CREATE INDEX scans_blocked ON scans(blocked) WHERE blocked;
CREATE INDEX scans_pending ON scans(gateway_id) WHERE status = 'pending';
CREATE TABLE scan_indicators (
    scan_id TEXT COLLATE "C" NOT NULL,
    ts DOUBLE PRECISION NOT NULL,
    indicator_id TEXT COLLATE "C" NOT NULL,
    title TEXT COLLATE "C" NOT NULL,
    category TEXT COLLATE "C" NOT NULL,
    severity TEXT COLLATE "C" NOT NULL
);
CREATE INDEX scan_indicators_ts ON scan_indicators(ts);
CREATE INDEX scan_indicators_scan ON scan_indicators(scan_id);
CREATE INDEX scan_indicators_id ON scan_indicators(indicator_id, category, title);
CREATE INDEX scan_indicators_category ON scan_indicators(category);
CREATE TABLE events (
    seq BIGINT PRIMARY KEY,
    ts DOUBLE PRECISION NOT NULL,
    scan_id TEXT,
    body TEXT NOT NULL
);
CREATE INDEX events_ts ON events(ts);
CREATE TABLE lists (
    list TEXT COLLATE "C" NOT NULL,
    entry TEXT COLLATE "C" NOT NULL,
    kind TEXT COLLATE "C" NOT NULL,
    note TEXT COLLATE "C" NOT NULL DEFAULT '',
    ts DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (list, entry)
);
CREATE TABLE meta (key TEXT COLLATE "C" PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE counters (name TEXT COLLATE "C" PRIMARY KEY, value BIGINT NOT NULL);
CREATE TABLE store_writers (
    writer_id TEXT PRIMARY KEY,
    batch_no BIGINT NOT NULL,
    ts DOUBLE PRECISION NOT NULL
);
