"""The store's tables, in SQL both SQLite and PostgreSQL run (a few words differ: see
``ddl``). eventsourcing adds its own (the tracking table the positions live in)."""

from __future__ import annotations

__all__ = [
    "READ_SIDE_INDEXES",
    "SEARCH_DDL",
    "SEARCH_TRIGGERS",
    "TIMELINE_INDEX",
    "ddl",
    "index_ddl",
    "timeline_ddl",
]

# {serial}: a row id that never changes (SQLite's search index points at it; PostgreSQL's
# search needs none, so there is no such column there); {blob}: bytes; {compact}: on SQLite,
# a table stored in its primary key's b-tree (WITHOUT ROWID) instead of a row table plus a
# second b-tree for the key: for the small rows of the query tables, half the bytes.
# {ff}: on PostgreSQL, an index (a key's too) built full: a B-tree leaves 10 % of each leaf
# free by default, room for inserts between entries that a store's inserts mostly do not
# need (a rebuild packs the store with VACUUM FULL, which builds each index anew, and a page
# that fills splits as it would anyway). SQLite builds its indexes full already.
# Columns of fixed width come first: PostgreSQL aligns each to its width, and a varying one
# before an 8-byte integer costs up to 7 bytes of padding per row.
_COMMON = [
    # What this store is (a journey store, which schema): a foreign or outdated store is
    # refused at open with the remedy instead of failing later (projections/integrity.py).
    """CREATE TABLE IF NOT EXISTS journey_store_meta (
        key TEXT PRIMARY KEY{ff}, value TEXT NOT NULL){compact}""",
    # One compact row per touchpoint: the timeline entry (summary, deflated against its
    # words and the customer's id: projections/facts.py; case; what was said, verbatim),
    # the content hash (the same event_id with other content is a conflicting
    # duplicate: read from the fact, stored only in a row without one, an erased one),
    # where it came from on the log (partition, offset), and the fact itself
    # (its wire envelope, deflated without the head these columns hold: projections/
    # facts.py) for the rare refold a late fact causes and for a cold read's tail after the
    # customer's snapshot. type is a number (projections/facts.py: TYPE_CODES). event_id and
    # content_hash are 16 bytes, at is microseconds since the epoch. seq numbers a
    # customer's touchpoints in the order folded. An erasure empties summary, text and fact
    # of the generations before it. logged_at is when the
    # log received the touchpoint (the record's timestamp, microseconds): what the engine
    # knew at a moment (known-at views, projections/travel.py) is every row logged by then.
    # The rows are appended in the order recorded, so their pages are full; the two indexes
    # are all the rest: the event_id one is the de-duplication check (on PostgreSQL a hash
    # index, through an exclusion constraint that keeps event_id unique: 4 bytes of hash an
    # entry, ~25 bytes a touchpoint where a B-tree's 16-byte key takes ~37).
    """CREATE TABLE IF NOT EXISTS touchpoints (
        {serial}at BIGINT NOT NULL, logged_at BIGINT NOT NULL, "offset" BIGINT NOT NULL,
        seq INTEGER NOT NULL, generation INTEGER NOT NULL, partition SMALLINT NOT NULL,
        type SMALLINT NOT NULL,
        event_id {blob} NOT NULL{unique_event}, content_hash {blob},
        customer_id TEXT NOT NULL, summary {blob} NOT NULL, case_id TEXT,
        text TEXT, fact {blob}{exclude_event})""",
    # The timeline, newest first, a page at a time (a tie on at, rare within one customer,
    # is ordered by event_id among the tied rows only); with seq in it, a cold read finds
    # the rows folded since the snapshot without visiting the others. generation after at:
    # a customer's rows are nearly all of one generation, and on PostgreSQL an entry of
    # (customer_id, generation, at, seq) pads to 48 bytes, this order to 40.
    """CREATE INDEX IF NOT EXISTS touchpoints_timeline
        ON touchpoints (customer_id, at, generation, seq){ff}""",
    # Each customer's folded state as of ``touchpoints`` folded (eventsourcing Snapshot
    # through its Mapper: topic + state). A cold read is this row plus the touchpoints
    # rows folded since.
    """CREATE TABLE IF NOT EXISTS snapshots (
        customer_id TEXT PRIMARY KEY{ff}, generation INTEGER NOT NULL,
        touchpoints BIGINT NOT NULL, topic TEXT NOT NULL, state {blob} NOT NULL)""",
    # A row table: updated in place at every batch of the customer, and its id_norm index
    # would repeat the key (measured: a compact one is 4 % larger).
    """CREATE TABLE IF NOT EXISTS customers (
        touchpoints BIGINT NOT NULL, generation INTEGER NOT NULL, partition INTEGER NOT NULL,
        customer_id TEXT PRIMARY KEY{ff}, id_norm TEXT NOT NULL, name TEXT, email TEXT,
        phone TEXT, last_seen TEXT, erased_at TEXT,
        topic TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS customers_id_norm ON customers (id_norm){ff}",
    # verified = 1: checked by its producer (see domain.journey.Identity); only those merge
    # customers and answer lookups, the others are claims shown as possible matches. The
    # key leads with the customer: it is also the index of a customer's identities. (A row
    # table: a compact one would repeat its whole key in the norm index.)
    """CREATE TABLE IF NOT EXISTS identities (
        verified SMALLINT NOT NULL DEFAULT 0, customer_id TEXT NOT NULL, kind TEXT NOT NULL,
        value TEXT NOT NULL, norm TEXT NOT NULL, PRIMARY KEY (customer_id, kind, value){ff})""",
    "CREATE INDEX IF NOT EXISTS identities_norm ON identities (norm){ff}",
    # A verified IdentityLinked of kind customer_id: customer_id's stream says other_id is
    # the same person (read in both directions).
    """CREATE TABLE IF NOT EXISTS links (
        customer_id TEXT NOT NULL, other_id TEXT NOT NULL,
        PRIMARY KEY (customer_id, other_id){ff}){compact}""",
    "CREATE INDEX IF NOT EXISTS links_other ON links (other_id){ff}",
    # Running clocks (reply targets, pending promises). due_us is the promise keeper's:
    # the deadline by its rules in microseconds since the epoch (sortable, whatever offset
    # the times came in), rows.PENDING until it has worked it out, NULL once the breach is
    # on the log (projections/due.py). Only non-NULL rows are in its index: a keeper's tick
    # reads what is due, never the open clocks that are not, nor those already recorded.
    """CREATE TABLE IF NOT EXISTS clocks (
        due_us BIGINT, customer_id TEXT NOT NULL, kind TEXT NOT NULL, ref TEXT NOT NULL,
        channel TEXT, team TEXT, country TEXT, started_at TEXT NOT NULL, due_at TEXT,
        label TEXT, case_kind TEXT,
        PRIMARY KEY (customer_id, kind, ref){ff}){compact}""",
    """CREATE INDEX IF NOT EXISTS clocks_due ON clocks (due_us){ff}
        WHERE due_us IS NOT NULL""",
    # Reply clocks that stopped with no ReplyOverdue recorded in their span: the keeper
    # records those that stopped after their target (which the rules give). due_us as in
    # clocks; NULL as well once worked out as stopped in time.
    """CREATE TABLE IF NOT EXISTS stopped_clocks (
        due_us BIGINT, customer_id TEXT NOT NULL, kind TEXT NOT NULL,
        ref TEXT NOT NULL, channel TEXT, team TEXT, country TEXT, started_at TEXT NOT NULL,
        stopped_at TEXT NOT NULL, case_kind TEXT,
        PRIMARY KEY (customer_id, kind, ref, started_at){ff}){compact}""",
    """CREATE INDEX IF NOT EXISTS stopped_clocks_due ON stopped_clocks (due_us){ff}
        WHERE due_us IS NOT NULL""",
    """CREATE TABLE IF NOT EXISTS breaches (
        customer_id TEXT NOT NULL, kind TEXT NOT NULL, ref TEXT NOT NULL, due_at TEXT NOT NULL,
        recorded_at TEXT NOT NULL, channel TEXT, team TEXT,
        PRIMARY KEY (customer_id, kind, ref, due_at){ff}){compact}""",
    """CREATE TABLE IF NOT EXISTS owned_products (
        pos INTEGER NOT NULL, customer_id TEXT NOT NULL, product TEXT NOT NULL, batch TEXT,
        serial TEXT, PRIMARY KEY (customer_id, pos){ff}){compact}""",
    "CREATE INDEX IF NOT EXISTS owned_products_product ON owned_products (product){ff}",
    """CREATE TABLE IF NOT EXISTS defects (
        defect_id TEXT PRIMARY KEY{ff}, product TEXT NOT NULL, batch TEXT, description TEXT,
        remedy TEXT, registered_at TEXT NOT NULL, registered_by TEXT NOT NULL){compact}""",
    """CREATE TABLE IF NOT EXISTS outreach (
        customer_id TEXT NOT NULL, defect_id TEXT NOT NULL, sent_at TEXT NOT NULL,
        PRIMARY KEY (customer_id, defect_id){ff}){compact}""",
    # Per partition, the latest occurred_at folded on it (UTC, fixed-width ISO text, so text
    # order is time order): the event-time clock the promise keeper decides deadlines by.
    # Written with the partition's position, so a restart or a rebuild sees the same clock.
    """CREATE TABLE IF NOT EXISTS partition_clocks (
        topic TEXT NOT NULL, partition INTEGER NOT NULL, event_time TEXT NOT NULL,
        PRIMARY KEY (topic, partition){ff}){compact}""",
    # Every dead letter, recorded in the batch's transaction. It is also the outbox of the
    # dead-letter topic: ``published`` = 0 rows still hold the message to produce (key, value,
    # headers as JSON [name, base64]) and are produced after the commit, then marked, so a
    # dead letter reaches the DLQ once even when the batch is retried after a failure.
    """CREATE TABLE IF NOT EXISTS dead_letters (
        topic TEXT NOT NULL, partition INTEGER NOT NULL, "offset" BIGINT NOT NULL,
        reason TEXT NOT NULL, error TEXT, published INTEGER NOT NULL DEFAULT 1,
        dlq_key {blob}, dlq_value {blob}, dlq_headers TEXT,
        PRIMARY KEY (topic, partition, "offset"){ff})""",
    """CREATE INDEX IF NOT EXISTS dead_letters_unpublished ON dead_letters (published){ff}
        WHERE published = 0""",
]

# The search over what was said: any 3+ character substring, any case, without a scan.
_SQLITE_SEARCH = [
    # Trigram FTS5 over touchpoints.text, without a copy of the text (external content),
    # kept by triggers so it changes in the same transaction as the rows.
    """CREATE VIRTUAL TABLE IF NOT EXISTS touchpoints_fts USING fts5(
        text, content = 'touchpoints', content_rowid = 'id', tokenize = 'trigram')""",
    """CREATE TRIGGER IF NOT EXISTS touchpoints_indexed AFTER INSERT ON touchpoints
        WHEN new.text IS NOT NULL BEGIN
        INSERT INTO touchpoints_fts (rowid, text) VALUES (new.id, new.text);
        END""",
    """CREATE TRIGGER IF NOT EXISTS touchpoints_reindexed AFTER UPDATE OF text ON touchpoints
        BEGIN
        INSERT INTO touchpoints_fts (touchpoints_fts, rowid, text)
            SELECT 'delete', old.id, old.text WHERE old.text IS NOT NULL;
        INSERT INTO touchpoints_fts (rowid, text)
            SELECT new.id, new.text WHERE new.text IS NOT NULL;
        END""",
    """CREATE TRIGGER IF NOT EXISTS touchpoints_unindexed AFTER DELETE ON touchpoints
        WHEN old.text IS NOT NULL BEGIN
        INSERT INTO touchpoints_fts (touchpoints_fts, rowid, text)
            VALUES ('delete', old.id, old.text);
        END""",
]
# The triggers that keep the search index with the rows (a rebuild's new store goes without
# them until every row is written, then builds the index in one pass: projections/backends.py).
SEARCH_TRIGGERS = ("touchpoints_indexed", "touchpoints_reindexed", "touchpoints_unindexed")
SEARCH_DDL = [s for s in _SQLITE_SEARCH if "CREATE TRIGGER" in s]
# pg_trgm is installed once per database, into public (else into the first store's own
# schema, where a store in another schema — a rebuild's, a ?schema= store — would not find
# its operator class); the index names the class by the schema it is really in.
_POSTGRES_SEARCH = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public",
    """CREATE INDEX IF NOT EXISTS touchpoints_text_trgm ON touchpoints
        USING gin (lower(text) "{trgm_schema}".gin_trgm_ops) WHERE text IS NOT NULL""",
]
TRGM_SCHEMA = (
    "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
    " WHERE e.extname = 'pg_trgm'"
)


# The timeline index: a rebuild's new SQLite store builds it in one sorted pass once every
# row is written, or when a read by customer first needs it (projections/backends.py).
TIMELINE_INDEX = "touchpoints_timeline"


# Indexes only the query side reads (a customer by its normalised id or an identity, the
# owners of a product), never a writer: a rebuild's new SQLite store builds them in one
# sorted pass each once every row is written. Row by row, each customer's rows went into
# them at a random place (customer ids, identities), a page journalled and written back
# per row once the tables outgrew the page cache (docs/BENCHMARKS.md, "Rebuild: the SQL a
# touchpoint at 100k and at 1M").
READ_SIDE_INDEXES = ("customers_id_norm", "identities_norm", "owned_products_product")


def index_ddl(kind: str, name: str) -> str:
    """The statement that creates the index ``name`` on ``kind`` (as ``ddl`` makes it)."""
    made = ["CREATE", "INDEX", "IF", "NOT", "EXISTS", name]
    (statement,) = (s for s in ddl(kind) if s.split()[:6] == made)
    return statement


def timeline_ddl(kind: str) -> str:
    """The statement that creates the timeline index on ``kind`` (as ``ddl`` makes it)."""
    return index_ddl(kind, TIMELINE_INDEX)


def ddl(kind: str) -> list[str]:
    """The statements that create the store's tables on ``kind`` (sqlite or postgresql)."""
    if kind == "sqlite":
        words = {
            "serial": "id INTEGER PRIMARY KEY, ",
            "blob": "BLOB",
            "compact": " WITHOUT ROWID",
            "ff": "",
            "unique_event": " UNIQUE",
            "exclude_event": "",
        }
        return [s.format(**words) for s in _COMMON] + _SQLITE_SEARCH
    words = {
        "serial": "",
        "blob": "BYTEA",
        "compact": "",
        "ff": " WITH (fillfactor = 100)",
        "unique_event": "",
        "exclude_event": (
            ",\n        CONSTRAINT touchpoints_event_id_key"
            " EXCLUDE USING hash (event_id WITH =) WITH (fillfactor = 100)"
        ),
    }
    return [s.format(**words) for s in _COMMON] + _POSTGRES_SEARCH
