"""The schema, as forward migrations: `PRAGMA user_version` counts the ones applied.

Append a migration to change the schema, never edit one that has shipped. Each migration is a
list of statements (not a script: executescript would COMMIT the writer's transaction), and
`prepare` runs the pending ones inside one write job, so a migration applies completely or not
at all.

Every query the repositories make is served by an index here; the comments name the query.
"""

from __future__ import annotations

import sqlite3

_V1 = (
    """
    CREATE TABLE users (
        id TEXT PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,            -- by_username, Duplicate("username")
        display_name TEXT NOT NULL,
        display_name_fold TEXT NOT NULL,          -- casefolded display_name, for search
        password_hash TEXT NOT NULL,
        status_message TEXT NOT NULL DEFAULT '',
        avatar_url TEXT,
        avatar_upload_id TEXT,
        created_at INTEGER NOT NULL
    )
    """,
    "CREATE INDEX users_display_name ON users (display_name_fold)",  # prefix search
    """
    CREATE TABLE refresh_tokens (
        id TEXT PRIMARY KEY,                      -- the jti
        user_id TEXT NOT NULL,
        family TEXT NOT NULL,
        issued_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        used_at INTEGER,
        revoked INTEGER NOT NULL DEFAULT 0
    )
    """,
    "CREATE INDEX refresh_tokens_family ON refresh_tokens (family)",  # revoke_family
    "CREATE INDEX refresh_tokens_expiry ON refresh_tokens (expires_at)",  # purging
    """
    CREATE TABLE rooms (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,                       -- 'group' or 'direct'
        name TEXT,
        name_fold TEXT,                           -- casefolded name, for the public list
        private INTEGER NOT NULL,
        dm_key TEXT UNIQUE,                       -- NULL for groups; NULLs never collide
        created_by TEXT,
        created_at INTEGER NOT NULL,
        last_activity_at INTEGER NOT NULL,
        version INTEGER NOT NULL DEFAULT 0
    )
    """,
    # public(): public groups, most recently active first.
    """
    CREATE INDEX rooms_public ON rooms (last_activity_at)
    WHERE kind = 'group' AND private = 0
    """,
    """
    CREATE TABLE memberships (
        user_id TEXT NOT NULL,
        room_id TEXT NOT NULL,
        role TEXT NOT NULL,
        joined_at INTEGER NOT NULL,
        last_read_message_id TEXT,
        last_read_at INTEGER,
        read_log TEXT NOT NULL DEFAULT '[]',      -- JSON [[message_id, ms], ...], newest last
        UNIQUE (user_id, room_id)                 -- get (the membership check), for_user
    )
    """,
    # Members in joining order; the user id breaks ties the same way on every backend (and
    # after a copy between them).
    "CREATE INDEX memberships_room ON memberships (room_id, joined_at, user_id)",  # of_room, count
    # seq is the rowid: it grows with id (new ids are issued by the writer, in order), so
    # the full-text index can walk newest-first in rowid order.
    """
    CREATE TABLE messages (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,                  -- get, many, transfer order
        room_id TEXT NOT NULL,
        sender_id TEXT NOT NULL,
        type TEXT NOT NULL,
        text TEXT NOT NULL DEFAULT '',
        attachments TEXT NOT NULL DEFAULT '[]',   -- JSON list of attachment views
        call TEXT,                                -- JSON, call entries only
        client_msg_id TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        edited_at INTEGER,
        deleted INTEGER NOT NULL DEFAULT 0,
        deleted_at INTEGER,
        reaction_kinds INTEGER NOT NULL DEFAULT 0,  -- distinct emoji in reactions
        version INTEGER NOT NULL DEFAULT 0,
        announced INTEGER NOT NULL DEFAULT 1,
        UNIQUE (sender_id, client_msg_id)         -- idempotent send, by_client_id
    )
    """,
    "CREATE INDEX messages_room ON messages (room_id, id)",  # page
    "CREATE INDEX messages_room_version ON messages (room_id, version)",  # changed
    # count_unread and latest_visible, from the index alone.
    "CREATE INDEX messages_live ON messages (room_id, id, sender_id) WHERE deleted = 0",
    # One row per (message, emoji, user). kind_seq orders the emoji (when each first appeared
    # on the message), seq orders the users of one emoji (when each reacted).
    """
    CREATE TABLE reactions (
        message_id TEXT NOT NULL,
        emoji TEXT NOT NULL,
        user_id TEXT NOT NULL,
        kind_seq INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (message_id, emoji, user_id)
    ) WITHOUT ROWID
    """,
    # shares_upload: which messages carry an upload; kept from messages.attachments by
    # triggers, so every write path (send, tombstone, import) keeps it right.
    """
    CREATE TABLE message_attachments (
        upload_id TEXT NOT NULL,
        message_id TEXT NOT NULL,
        room_id TEXT NOT NULL,
        PRIMARY KEY (upload_id, message_id)
    ) WITHOUT ROWID
    """,
    """
    CREATE TRIGGER messages_attachments_insert AFTER INSERT ON messages
    WHEN new.attachments <> '[]' BEGIN
        INSERT OR IGNORE INTO message_attachments (upload_id, message_id, room_id)
        SELECT json_extract(value, '$.id'), new.id, new.room_id FROM json_each(new.attachments)
        WHERE type = 'object' AND json_extract(value, '$.id') IS NOT NULL;
    END
    """,
    """
    CREATE TRIGGER messages_attachments_update AFTER UPDATE OF attachments, room_id ON messages
    BEGIN
        DELETE FROM message_attachments WHERE message_id = old.id AND upload_id IN
            (SELECT json_extract(value, '$.id') FROM json_each(old.attachments)
             WHERE type = 'object');
        INSERT OR IGNORE INTO message_attachments (upload_id, message_id, room_id)
        SELECT json_extract(value, '$.id'), new.id, new.room_id FROM json_each(new.attachments)
        WHERE type = 'object' AND json_extract(value, '$.id') IS NOT NULL;
    END
    """,
    """
    CREATE TRIGGER messages_children_delete AFTER DELETE ON messages BEGIN
        DELETE FROM message_attachments WHERE message_id = old.id AND upload_id IN
            (SELECT json_extract(value, '$.id') FROM json_each(old.attachments)
             WHERE type = 'object');
        DELETE FROM reactions WHERE message_id = old.id;
    END
    """,
    # Full-text search over messages.text (external content: the text is stored once). The
    # room id is indexed too, as one token, so that a search in a few rooms intersects their
    # doclists inside FTS5 instead of walking every match of a common word (search.py).
    # Empty texts (tombstones, attachment-only messages) are not indexed. The prefix indexes
    # let 1-3 character prefix queries read one doclist instead of merging every term.
    """
    CREATE VIRTUAL TABLE messages_fts USING fts5(
        text, room_id, content = 'messages', content_rowid = 'seq',
        tokenize = 'unicode61 remove_diacritics 2', prefix = '1 2 3'
    )
    """,
    """
    CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages WHEN new.text <> '' BEGIN
        INSERT INTO messages_fts (rowid, text, room_id) VALUES (new.seq, new.text, new.room_id);
    END
    """,
    """
    CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages WHEN old.text <> '' BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, text, room_id)
        VALUES ('delete', old.seq, old.text, old.room_id);
    END
    """,
    """
    CREATE TRIGGER messages_fts_update AFTER UPDATE OF text, room_id ON messages BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, text, room_id)
        SELECT 'delete', old.seq, old.text, old.room_id WHERE old.text <> '';
        INSERT INTO messages_fts (rowid, text, room_id)
        SELECT new.seq, new.text, new.room_id WHERE new.text <> '';
    END
    """,
    """
    CREATE TABLE deliveries (
        message_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        delivered_at INTEGER NOT NULL,
        PRIMARY KEY (message_id, user_id)         -- record (first only), for_message
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE uploads (
        id TEXT PRIMARY KEY,
        owner_id TEXT NOT NULL,
        name TEXT NOT NULL,
        content_type TEXT NOT NULL,
        size INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        attached INTEGER NOT NULL DEFAULT 0,
        avatar INTEGER NOT NULL DEFAULT 0,
        width INTEGER,
        height INTEGER,
        thumbnail_size INTEGER
    )
    """,
    # unattached_before: the garbage collector's sweep.
    "CREATE INDEX uploads_unattached ON uploads (created_at) WHERE attached = 0",
    """
    CREATE TABLE calls (
        id TEXT PRIMARY KEY,
        room_id TEXT NOT NULL,
        kind TEXT NOT NULL DEFAULT 'direct',
        media TEXT NOT NULL,
        caller_id TEXT NOT NULL,
        callee_id TEXT NOT NULL,
        state TEXT NOT NULL,
        outcome TEXT,
        end_reason TEXT,
        created_at INTEGER,
        answered_at INTEGER,
        ended_at INTEGER,
        duration_s INTEGER NOT NULL DEFAULT 0
    )
    """,
    "CREATE INDEX calls_room ON calls (room_id, id)",  # page
)

# Group calls: `callee_id` becomes nullable (a group call has none), which SQLite can only do
# by rebuilding the table (create, copy, drop, rename); plus the worker registry.
_V2 = (
    """
    CREATE TABLE calls_v2 (
        id TEXT PRIMARY KEY,
        room_id TEXT NOT NULL,
        kind TEXT NOT NULL DEFAULT 'direct',      -- 'direct' (1:1) or 'group'
        media TEXT NOT NULL,
        caller_id TEXT NOT NULL,                  -- a group call's starter
        callee_id TEXT,                           -- NULL for group calls
        state TEXT NOT NULL,
        outcome TEXT,
        end_reason TEXT,
        created_at INTEGER,
        answered_at INTEGER,
        ended_at INTEGER,
        duration_s INTEGER NOT NULL DEFAULT 0,
        worker_id TEXT,                           -- group calls: the SFU worker hosting it
        participant_ids TEXT NOT NULL DEFAULT '[]',  -- JSON ids, everyone who joined
        present_ids TEXT NOT NULL DEFAULT '[]',   -- JSON ids, in the call now
        moved_at INTEGER
    )
    """,
    """
    INSERT INTO calls_v2 (id, room_id, kind, media, caller_id, callee_id, state, outcome,
        end_reason, created_at, answered_at, ended_at, duration_s)
    SELECT id, room_id, kind, media, caller_id, callee_id, state, outcome,
        end_reason, created_at, answered_at, ended_at, duration_s FROM calls
    """,
    "DROP TABLE calls",  # and its index
    "ALTER TABLE calls_v2 RENAME TO calls",
    "CREATE INDEX calls_room ON calls (room_id, id)",  # page
    # start_group (one live group call per room: Duplicate("room_id")), live_group(s)(_in).
    """
    CREATE UNIQUE INDEX calls_live_group ON calls (room_id)
    WHERE kind = 'group' AND state = 'active'
    """,
    # live_on_worker
    """
    CREATE INDEX calls_live_worker ON calls (worker_id, id)
    WHERE kind = 'group' AND state = 'active'
    """,
    # Ephemeral: not copied by `fastsock migrate` (workers register again).
    """
    CREATE TABLE sfu_workers (
        id TEXT PRIMARY KEY,                      -- the worker's id, new at each start
        url TEXT NOT NULL,
        health_url TEXT,
        version TEXT NOT NULL,
        capacity INTEGER NOT NULL,
        state TEXT NOT NULL,                      -- 'up' or 'lost'
        peers INTEGER NOT NULL DEFAULT 0,
        tracks INTEGER NOT NULL DEFAULT 0,
        rooms INTEGER NOT NULL DEFAULT 0,
        cpu REAL NOT NULL DEFAULT 0,
        draining INTEGER NOT NULL DEFAULT 0,
        pending INTEGER NOT NULL DEFAULT 0,       -- admissions sent since the last heartbeat
        registered_at INTEGER NOT NULL,
        heartbeat_at INTEGER NOT NULL
    )
    """,
    "CREATE INDEX sfu_workers_state ON sfu_workers (state, heartbeat_at)",  # live, prune
)

# Version 3 (conversations: mentions, replies, system lines, moderation, receipt pointers),
# one part per concern.
# Messages: mentions (user ids, JSON) and `@room`, the replied-to message, a history line's
# event (JSON, system lines only). Unread counts (messages.py, "Counting") read messages_live
# (now with the type, to leave history lines out), message_mentions and messages_room_mention,
# each within one member's unread range: never the room's whole history per member.
_V3_MESSAGES: tuple[str, ...] = (
    "ALTER TABLE messages ADD COLUMN mentions TEXT NOT NULL DEFAULT '[]'",
    "ALTER TABLE messages ADD COLUMN mention_room INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE messages ADD COLUMN reply_to_id TEXT",
    "ALTER TABLE messages ADD COLUMN system TEXT",
    "DROP INDEX messages_live",
    "CREATE INDEX messages_live ON messages (room_id, id, sender_id, type) WHERE deleted = 0",
    # Live messages with `@room`.
    """
    CREATE INDEX messages_room_mention ON messages (room_id, id, sender_id)
    WHERE deleted = 0 AND mention_room = 1
    """,
    # Who each message mentions, kept from messages.mentions by triggers (as attachments).
    """
    CREATE TABLE message_mentions (
        room_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        message_id TEXT NOT NULL,
        PRIMARY KEY (room_id, user_id, message_id)  -- a member's mentions after their pointer
    ) WITHOUT ROWID
    """,
    """
    CREATE TRIGGER messages_mentions_insert AFTER INSERT ON messages
    WHEN new.mentions <> '[]' BEGIN
        INSERT OR IGNORE INTO message_mentions (room_id, user_id, message_id)
        SELECT new.room_id, value, new.id FROM json_each(new.mentions);
    END
    """,
    """
    CREATE TRIGGER messages_mentions_update AFTER UPDATE OF mentions, room_id ON messages
    BEGIN
        DELETE FROM message_mentions WHERE room_id = old.room_id AND message_id = old.id
            AND user_id IN (SELECT value FROM json_each(old.mentions));
        INSERT OR IGNORE INTO message_mentions (room_id, user_id, message_id)
        SELECT new.room_id, value, new.id FROM json_each(new.mentions);
    END
    """,
    """
    CREATE TRIGGER messages_mentions_delete AFTER DELETE ON messages
    WHEN old.mentions <> '[]' BEGIN
        DELETE FROM message_mentions WHERE room_id = old.room_id AND message_id = old.id
            AND user_id IN (SELECT value FROM json_each(old.mentions));
    END
    """,
)
# Moderation: deactivated accounts, server admins granted by `fastsock admin grant`, and who
# may not rejoin a group (removed by an admin).
_V3_MODERATION: tuple[str, ...] = (
    "ALTER TABLE users ADD COLUMN deactivated_at INTEGER",
    "ALTER TABLE users ADD COLUMN server_admin INTEGER NOT NULL DEFAULT 0",
    # revoke_user: a deactivated account's logins.
    "CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id) WHERE revoked = 0",
    """
    CREATE TABLE bans (
        room_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        banned_by TEXT NOT NULL,
        banned_at INTEGER NOT NULL,
        PRIMARY KEY (room_id, user_id)            -- get, remove, of_room, transfer order
    ) WITHOUT ROWID
    """,
)
# Receipt pointers: the newest message of the room each member's client confirmed
# (memberships.advance_delivered), beside the read pointer; read with the membership row.
_V3_RECEIPTS: tuple[str, ...] = (
    "ALTER TABLE memberships ADD COLUMN last_delivered_message_id TEXT",
    "ALTER TABLE memberships ADD COLUMN last_delivered_at INTEGER",
)
_V3 = (*_V3_MESSAGES, *_V3_MODERATION, *_V3_RECEIPTS)

MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2, _V3)
VERSION = len(MIGRATIONS)

_PURGE_BATCH = 1000


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the migrations this file is missing; returns the schema version."""
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    if current > VERSION:
        raise RuntimeError(
            f"the database has schema version {current}, newer than this FastSock ({VERSION})"
        )
    for version in range(current + 1, VERSION + 1):
        for statement in MIGRATIONS[version - 1]:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {version}")  # transactional, like the DDL
    return VERSION


def purge_expired_tokens(conn: sqlite3.Connection, now_ms: int) -> int:
    """Delete up to a batch of expired refresh tokens (what Mongo's TTL index does)."""
    cursor = conn.execute(
        "DELETE FROM refresh_tokens WHERE id IN "
        "(SELECT id FROM refresh_tokens WHERE expires_at <= ? LIMIT ?)",
        (now_ms, _PURGE_BATCH),
    )
    return cursor.rowcount


def prepare(conn: sqlite3.Connection, now_ms: int) -> int:
    version = migrate(conn)
    while purge_expired_tokens(conn, now_ms) == _PURGE_BATCH:
        pass
    return version
