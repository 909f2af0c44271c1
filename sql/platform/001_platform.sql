-- Platform schema kh: the tenant list, the item catalogue (items, their field
-- layouts, code tables) and replay protection. Shared by every tenant; holds
-- no personal data. Run by tools/khdb migrate inside one transaction.

CREATE SCHEMA IF NOT EXISTS kh;

CREATE TABLE IF NOT EXISTS kh.tenant (
    org_code    text PRIMARY KEY CHECK (org_code ~ '^[0-9A-Z]{6}$'),
    schema_name text NOT NULL UNIQUE,
    role_name   text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- An item (特定個人情報) and its current layout version.
CREATE TABLE IF NOT EXISTS kh.item (
    item_code      text PRIMARY KEY CHECK (item_code ~ '^[A-Z0-9]{1,15}$'),
    name           text NOT NULL,
    layout_version int  NOT NULL CHECK (layout_version > 0)
);

-- The fields of every layout version of an item, in order (seq).
CREATE TABLE IF NOT EXISTS kh.item_field (
    item_code      text NOT NULL REFERENCES kh.item,
    layout_version int  NOT NULL,
    seq            int  NOT NULL,
    name           text NOT NULL CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    type           text NOT NULL CHECK (type IN ('X', '9', 'S9', 'DATE', 'CODE')),
    length         int  NOT NULL CHECK (length > 0),
    mandatory      bool NOT NULL DEFAULT false,
    code_table     text NULL,
    PRIMARY KEY (item_code, layout_version, seq),
    UNIQUE (item_code, layout_version, name),
    CHECK ((type = 'CODE') = (code_table IS NOT NULL))
);

CREATE TABLE IF NOT EXISTS kh.code_value (
    code_table text NOT NULL,
    code       text NOT NULL,
    meaning    text NOT NULL,
    PRIMARY KEY (code_table, code)
);

-- Every role may read the catalogue: it is the same public table for all
-- tenants and holds no personal data.
GRANT USAGE ON SCHEMA kh TO PUBLIC;
GRANT SELECT ON kh.tenant, kh.item, kh.item_field, kh.code_value TO PUBLIC;
