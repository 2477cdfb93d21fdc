-- Stream entries that PostgreSQL refused to record (a value it cannot store, a field
-- missing), set aside by the recorder so that one bad entry does not hold up every
-- entry read with it (chalicelib/service/recorder.py). The entry is deleted from its stream
-- once its row here commits; an operator reads it here (docs/architecture.md).
-- Independent of 0002 and 0003: it only adds this table.
CREATE TABLE IF NOT EXISTS dtq_parked_events (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The Redis stream (P:{queue}:events) and the queue it belongs to.
    stream    text NOT NULL,
    queue     text NOT NULL,
    -- The stream entry id (ms-seq): with the stream, it keys the row, so an entry
    -- parked again (a crash between this commit and the XDEL) is stored once.
    entry_id  text NOT NULL,
    -- The entry's text as the script wrote it (one JSON array of events); bytes that
    -- are not UTF-8 and NUL characters, which text cannot hold, are escaped as \xNN.
    entry     text NOT NULL,
    -- PostgreSQL's error for the entry (or the decoder's, for an entry not JSON).
    error     text NOT NULL,
    parked_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream, entry_id)
);
